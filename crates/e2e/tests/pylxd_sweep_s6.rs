//! What a Python script driving a drover cluster through pylxd 2.4 runs into when a member
//! crashes under it: `python/pylxd_sweep_s6.py` against real daemons, with the test
//! killing and restarting a member when the script asks for it.
//!
//! Members listen on 127.0.52.1–3 (free ports).

use std::process::Stdio;
use std::time::Duration;

use drover_e2e::{form_cluster, require_pylxd, workspace_root};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long the whole script may take.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(600);

/// What does this test do?
///
/// Forms a cluster of three members, imports the busybox image on m1, and runs
/// `crates/e2e/python/pylxd_sweep_s6.py` with the three sockets and the image tarball. The
/// script exports the image through m3 (which must fetch it first; the bytes must be the
/// tarball), puts six instances on m2, evacuates m2 and waits on the operation with
/// `operations.wait_for_operation` in a thread. When the plan is under way it prints
/// `KILL m2`: the test then SIGKILLs m2's droverd, starts it again on the same state dir
/// and answers `RESTARTED`. The wait must end with the evacuation's `Success` (before,
/// the member answering for the down coordinator returned the operation still `Running`
/// after 2 s, which pylxd raises as an error with an empty message), every instance must
/// be listed once, off m2, in its power state, and a restore must bring them all back
/// with their data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_waits_on_an_evacuation_across_a_coordinator_crash() {
    require_pylxd();
    let mut members = form_cluster(&["127.0.52.1", "127.0.52.2", "127.0.52.3"]).await;
    members[0].import_busybox().await;
    let image = tokio::task::spawn_blocking(drover_e2e::busybox_image)
        .await
        .expect("build the busybox image");
    let script = workspace_root().join("crates/e2e/python/pylxd_sweep_s6.py");
    let mut args: Vec<String> = vec![script.to_str().expect("utf-8 path").to_string()];
    args.extend(
        members
            .iter()
            .map(|m| m.socket().to_str().expect("utf-8 path").to_string()),
    );
    args.push(image.to_str().expect("utf-8 path").to_string());

    tracing::info!("--- run pylxd_sweep_s6.py");
    let mut child = tokio::process::Command::new("python3")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let mut printed = String::new();
    let mut killed = false;
    drover_e2e::within("pylxd_sweep_s6.py", SCRIPT_DEADLINE, async {
        while let Some(line) = stdout.next_line().await.expect("read the script's output") {
            tracing::info!(line = %line, "script");
            printed.push_str(&line);
            printed.push('\n');
            if line == "KILL m2" {
                members[1].kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                members[1].start_again().await;
                killed = true;
                stdin
                    .write_all(b"RESTARTED\n")
                    .await
                    .expect("answer the script");
                stdin.flush().await.expect("flush");
            }
        }
    })
    .await;
    let status = child.wait().await.expect("python3 exits");
    let err = err_task.await.unwrap_or_default();
    assert!(
        status.success() && printed.contains("pylxd sweep s6: all steps passed"),
        "pylxd_sweep_s6.py failed ({status}):\n{printed}\n--- stderr\n{err}"
    );
    assert!(killed, "the script never asked for the kill:\n{printed}");
}
