//! End-to-end tests of drover: real `droverd` daemons, real containers, real clients.
//!
//! The harness gives each test its own world:
//!
//! - [`Member`] spawns `droverd` (the binary `cargo build --workspace --bins` made, or
//!   `$DROVER_BIN`) in a fresh temp dir, waits until `GET /1.0` answers, and on drop stops
//!   the containers the test left, SIGTERMs the daemon and prints its log when the test
//!   failed. [`Member::restart`] restarts the daemon on the same state dir. Its log filter
//!   is `info`, or `$DROVER_E2E_LOG` (say `info,drover_driver_qemu::agent=trace`).
//! - [`busybox_image`] builds the built-in busybox image once (shared by the test processes
//!   through a lock file under `target/`), [`Member::import_busybox`] imports it as `busybox`.
//! - [`Member::raw`] sends raw HTTP (malformed bodies, exact error envelopes);
//!   [`Member::client`] is the typed client; [`Member::lxc`] runs LXD's own `lxc`.
//! - [`HttpsClient`] speaks HTTPS to a daemon's `core.https_address` with or without a
//!   client certificate, pinning the server; [`lxc_remote`] runs `lxc` as a remote client.
//! - [`wait_until`] waits on a condition with a deadline; tests never sleep.
//!
//! Missing prerequisites (the `droverd` binary, `lxc`, pylxd, root) fail the test with a
//! message saying what to install or build; nothing is skipped silently.

mod cluster;
mod evacuation;
mod events;
mod https;
mod image;
mod lxc;
mod member;
mod placement;
mod prereq;
mod raw;
mod vm;
mod wait;

pub use cluster::{
    CLUSTER_SETTLE, enable, form_cluster, form_cluster_with, join_body, join_token, printed_token,
};
pub use evacuation::{member_status, plan_of, post_member_state};
pub use events::expect_lifecycle;
pub use https::{HttpsClient, free_address};
pub use image::busybox_image;
pub use lxc::{
    Output, collect_output, disk_add, lxc_member_states, lxc_remote, lxc_state_location,
};
pub use member::{ExecOutput, Member, busybox_request};
pub use placement::{create_on, instance_list, local_pool, location, wait_op};
pub use prereq::{droverd_bin, require_lxc, require_pylxd, workspace_root};
pub use raw::RawResponse;
pub use vm::{KillVms, busybox_vm_image, import_busybox_vm, qemu_installed, vm_request};
pub use wait::{wait_until, within};

/// Installs the test log subscriber once per process (`RUST_LOG` overrides `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
