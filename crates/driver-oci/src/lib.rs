//! OCI system containers on crun or runc: the container [`drivers::InstanceDriver`].
//!
//! - [`bundle`] turns an [`drivers::InstanceSpec`] into an OCI `config.json` (oci-spec):
//!   PID 1 = the instance's init, own pid/mount/uts/ipc/net namespaces, hostname = name,
//!   `/proc`, `/sys`, `/dev` with the standard devices, cgroup limits from `limits.*`.
//! - [`Runtime`] wraps the command line runc and crun share; every call has a deadline and
//!   passes `--root`, so several daemons on one machine never see each other's containers.
//! - [`probe`] picks the runtime at start-up by running a real tiny container.
//! - [`OciDriver`] implements the driver on top, stateless across daemon restarts.
//!
//! # Start-up, in the daemon
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // First thing in main, still single-threaded (crun needs it on hybrid cgroups):
//! let isolated = drover_driver_oci::prepare_mount_namespace()?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let driver = drover_driver_oci::probe(
//!         drover_driver_oci::RuntimeKind::Crun,
//!         "/var/lib/drover/runtime",
//!         "/var/lib/drover/scratch",
//!     )
//!     .await?;
//!     # let _ = (isolated, driver);
//!     Ok::<_, drivers::DriverError>(())
//! })?;
//! # Ok(()) }
//! ```

pub mod bundle;
pub mod cgroup;
mod driver;
mod exec;
pub mod hotplug;
pub mod limits;
mod namespace;
mod pid_watch;
mod probe;
mod runtime;
mod signal;

pub use driver::{CONSOLE_LOG, DEFAULT_CGROUP_PARENT, OciDriver, PID_FILE};
pub use exec::OciExec;
pub use limits::{CpuLimit, parse_cpu_limit, parse_memory_limit};
pub use namespace::{HYBRID_CGROUP2, hybrid_cgroup2_mounted, prepare_mount_namespace};
pub use pid_watch::PidWatch;
pub use probe::{BUSYBOX, probe, probe_runtimes};
pub use runtime::{ContainerState, DEFAULT_TIMEOUT, ExecArgs, Isolation, Runtime, RuntimeKind};
pub use signal::signal_from_name;
