//! What a Python script driving a drover cluster through pylxd 2.4 runs into when a member
//! crashes under it: `python/pylxd_sweep_s6.py` against real daemons, with the test
//! killing and restarting a member when the script asks for it.
//!
//! Members listen on 127.0.52.1–3, 127.0.52.4–6 and 127.0.52.7–9 (free ports).

use std::process::Stdio;
use std::time::Duration;

use drover_e2e::{Member, form_cluster, require_pylxd, workspace_root};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long the whole script may take.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(600);

/// Runs `crates/e2e/python/pylxd_sweep_s6.py <scenario>` with the members' sockets and the
/// busybox image tarball, doing what it asks on its stdout: `KILL mN` (SIGKILL of that
/// member's droverd) and `START mN` (started again on the same state dir), each answered
/// `DONE <request>` on its stdin. Returns the requests done.
///
/// # Panics
///
/// When the script fails, does not finish in time or asks for something unknown.
async fn run_script(members: &mut [Member], scenario: &str) -> Vec<String> {
    require_pylxd();
    let image = tokio::task::spawn_blocking(drover_e2e::busybox_image)
        .await
        .expect("build the busybox image");
    let script = workspace_root().join("crates/e2e/python/pylxd_sweep_s6.py");
    let mut args: Vec<String> = vec![
        script.to_str().expect("utf-8 path").to_string(),
        scenario.to_string(),
    ];
    args.extend(
        members
            .iter()
            .map(|m| m.socket().to_str().expect("utf-8 path").to_string()),
    );
    args.push(image.to_str().expect("utf-8 path").to_string());

    tracing::info!(scenario, "--- run pylxd_sweep_s6.py");
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
    let mut done = Vec::new();
    drover_e2e::within("pylxd_sweep_s6.py", SCRIPT_DEADLINE, async {
        while let Some(line) = stdout.next_line().await.expect("read the script's output") {
            tracing::info!(line = %line, "script");
            printed.push_str(&line);
            printed.push('\n');
            let request = match line.split_once(' ') {
                Some((verb @ ("KILL" | "START"), name)) => (verb, name),
                _ => continue,
            };
            let index: usize = request
                .1
                .strip_prefix('m')
                .and_then(|n| n.parse().ok())
                .filter(|n| (1..=members.len()).contains(n))
                .unwrap_or_else(|| panic!("the script asked for {line:?}"));
            let m = &mut members[index - 1];
            if request.0 == "KILL" {
                m.kill();
            } else {
                m.start_again().await;
            }
            done.push(line.clone());
            stdin
                .write_all(format!("DONE {line}\n").as_bytes())
                .await
                .expect("answer the script");
            stdin.flush().await.expect("flush");
        }
    })
    .await;
    let status = child.wait().await.expect("python3 exits");
    let err = err_task.await.unwrap_or_default();
    assert!(
        status.success() && printed.contains("pylxd sweep s6: all steps passed"),
        "pylxd_sweep_s6.py {scenario} failed ({status}):\n{printed}\n--- stderr\n{err}"
    );
    done
}

/// Forms a cluster of three members on `ips`, imports the busybox image on m1 and runs the
/// script's `name` scenario ([`run_script`]); the requests it made.
async fn scenario(ips: &[&str], name: &str) -> Vec<String> {
    require_pylxd();
    let mut members = form_cluster(ips).await;
    members[0].import_busybox().await;
    run_script(&mut members, name).await
}

/// What does this test do?
///
/// Forms a cluster of three members, imports the busybox image on m1, and runs the
/// script's `evacuation` scenario. It exports the image through m3 (which must fetch it
/// first; the bytes must be the tarball), puts six instances on m2, pushes an 8 MiB file
/// into one through m1 (refused by a 2 MiB body limit before) and reads it back through
/// m3, evacuates m2 and waits on the operation with `operations.wait_for_operation` in a
/// thread. When the plan is under way it has the test SIGKILL m2's droverd and, 2 s
/// later, start it again. The wait must end with the evacuation's `Success` (before, the
/// member answering for the down coordinator returned the operation still `Running`
/// after 2 s, which pylxd raises as an error with an empty message), every instance must
/// be listed once, off m2, in its power state, and a restore must bring them all back
/// with their data (the 8 MiB file's checksum included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_waits_on_an_evacuation_across_a_coordinator_crash() {
    let done = scenario(&["127.0.52.1", "127.0.52.2", "127.0.52.3"], "evacuation").await;
    assert_eq!(done, ["KILL m2", "START m2"]);
}

/// What does this test do?
///
/// Forms a cluster of three members (the image on m1) and runs the script's `leader`
/// scenario: pylxd's `ClusterMember.save()` (a `PUT {}`) must be refused with LXD's
/// words and leave m2 in group `default` (it used to leave it in no group); then the test
/// SIGKILLs the Raft leader's droverd when the script asks, and the
/// script lists the members (`cluster.members.all()` and `.get()`) through each live
/// member every 200 ms until one of them is listed as the new leader. A live member must
/// never be listed `Offline` in that window (before, each follower fell back to its own
/// view, in which the other follower, never heard from directly, was `Offline` until the
/// election ended, about 5 s here). Then the dead member is started again and all three
/// must be `Online`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_sees_live_members_online_while_a_leader_is_elected() {
    let done = scenario(&["127.0.52.4", "127.0.52.5", "127.0.52.6"], "leader").await;
    assert_eq!(done.len(), 2, "{done:?}");
}

/// What does this test do?
///
/// Forms a cluster of three members, imports the busybox image on m1, and runs the
/// script's `reboot` scenario: three running instances with `boot.autostart=true` on m2,
/// then m2's droverd SIGKILLed and the instances' init processes killed (a power loss),
/// then m2 started again. m2 must answer within 8 s and every instance must run again,
/// recorded `RUNNING` (before, each autostart waited 10 s for a DB write m2 could not
/// apply, its Raft endpoint not listening until the autostarts were done, and failed;
/// 30 s for three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_sees_a_restarted_member_autostart_its_instances_at_once() {
    let done = scenario(&["127.0.52.7", "127.0.52.8", "127.0.52.9"], "reboot").await;
    assert_eq!(done, ["KILL m2", "START m2"]);
}
