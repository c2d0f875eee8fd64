//! pylxd drives droverd unchanged: `python/pylxd_smoke.py` against a real daemon.

use drover_e2e::{Member, require_pylxd, workspace_root};

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
    let image = tokio::task::spawn_blocking(drover_e2e::busybox_image)
        .await
        .expect("build the busybox image");
    let script = workspace_root().join("crates/e2e/python/pylxd_smoke.py");
    let socket = m.socket();

    tracing::info!("--- run pylxd_smoke.py");
    let out = m
        .command(
            "python3",
            &[
                script.to_str().expect("utf-8 path"),
                socket.to_str().expect("utf-8 path"),
                image.to_str().expect("utf-8 path"),
            ],
        )
        .await;
    tracing::info!(stdout = %out.stdout, "pylxd_smoke.py finished");
    out.success();
    assert!(
        out.stdout.contains("pylxd smoke: all steps passed"),
        "{}",
        out.stdout
    );
}
