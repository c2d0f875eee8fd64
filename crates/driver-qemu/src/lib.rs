//! Virtual machines on QEMU: the VM [`drivers::InstanceDriver`].
//!
//! - One QEMU process per VM (`qemu-system-x86_64`, daemonized, so VMs outlive the daemon),
//!   booting the image's kernel and initramfs directly on a raw root disk
//!   ([`vm::qemu_args`]); its files (QMP, agent and console sockets, console log, pid
//!   file, machine config) in one directory per VM.
//! - [`qmp::Qmp`]: a small asynchronous QMP client, every call with a deadline.
//! - [`agent::Agent`]: exec through the guest agent over virtio-serial.
//! - [`probe_accel`]: KVM only when a real tiny guest boots with it, else TCG.
//! - Stop = ACPI power button (`system_powerdown`), wait, then `quit`; clean or not is the
//!   [`drivers::StopOutcome`].
//! - Live migration: [`QemuDriver::prepare_incoming`] (`-incoming defer`),
//!   [`QemuDriver::accept_migration`], [`QemuDriver::migrate_out`] with bandwidth,
//!   downtime limit, auto-converge and a convergence deadline.
//! - [`ByType`]: one driver for a daemon with containers and VMs, routing by instance type.
//!
//! ```no_run
//! # async fn f() -> drivers::Result<()> {
//! use drover_driver_qemu::{QemuDriver, find_qemu, probe_accel};
//! let qemu = find_qemu().ok_or(drivers::DriverError::NotRunning)?;
//! let accel = probe_accel(
//!     &qemu,
//!     "/var/lib/drover/vm/boot/vmlinuz".as_ref(),
//!     "/var/lib/drover/vm/boot/initrd.img".as_ref(),
//!     std::time::Duration::from_secs(6),
//! )
//! .await;
//! let driver = QemuDriver::new(qemu, "/run/drover/vms", accel).await?;
//! # let _ = driver; Ok(()) }
//! ```

pub mod agent;
mod dispatch;
mod driver;
pub mod image;
mod migrate;
mod probe;
pub mod qmp;
pub mod vm;

pub use dispatch::ByType;
pub use driver::{AGENT_TIMEOUT, QemuDriver, QemuExec, exec_script, find_qemu, qemu_available};
pub use image::install_image;
pub use migrate::{MigrationParams, MigrationProgress, MigrationStats};
pub use probe::{AccelProbe, PROBE_MARKER, probe_accel};
pub use vm::{Accel, VmConfig, VmPaths};
