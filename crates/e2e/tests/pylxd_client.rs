//! pylxd drives droverd unchanged: `python/pylxd_smoke.py` against a real daemon.

use drover_e2e::{Member, require_pylxd};

/// What does this test do?
///
/// Runs `crates/e2e/python/pylxd_smoke.py <socket> <busybox image>`, which through pylxd:
///
/// 1. imports the busybox image, aliases it `busybox`, lists images and aliases;
/// 2. lists instances (none), creates `py1` from the alias (`wait=True`), lists it;
/// 3. starts it and reads its state (Running, a host pid);
/// 4. executes commands over the exec websockets: output, exit code 5 and stderr, stdin;
/// 5. reads its snapshots (none), the networks (the host's, unmanaged), the projects
///    (`default`), the member's resources and the default pool's;
/// 6. stops and deletes it.
///
/// The script prints one `ok:` line per step and exits non-zero at the first mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_drives_droverd_unchanged() {
    require_pylxd();
    let m = Member::start().await;
    tracing::info!("--- run pylxd_smoke.py");
    m.run_pylxd_script("pylxd_smoke.py", "pylxd smoke: all steps passed")
        .await;
}
