//! pylxd drives a three-member drover cluster: `python/pylxd_cluster.py` against real
//! daemons.
//!
//! Members listen on 127.0.0.27–29 (free ports).

use drover_e2e::{form_cluster, require_pylxd, workspace_root};

/// What does this test do?
///
/// Forms a cluster of three members (tokens, `PUT /1.0/cluster` joins), imports the
/// busybox image on m1, and runs `crates/e2e/python/pylxd_cluster.py` with the three
/// sockets, which through pylxd reads the cluster and its members, creates `pyc1` on m2,
/// executes in it through m3, moves it running to m3, evacuates m3 (creation there
/// refused) and restores it (the instance back, running), and checks a bad action is a 400.
/// The script prints one `ok:` line per step and exits non-zero at the first mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_drives_a_drover_cluster() {
    require_pylxd();
    let members = form_cluster(&["127.0.0.27", "127.0.0.28", "127.0.0.29"]).await;
    members[0].import_busybox().await;
    let script = workspace_root().join("crates/e2e/python/pylxd_cluster.py");
    let sockets: Vec<String> = members
        .iter()
        .map(|m| m.socket().to_str().expect("utf-8 path").to_string())
        .collect();
    let mut args = vec![script.to_str().expect("utf-8 path")];
    args.extend(sockets.iter().map(String::as_str));

    tracing::info!("--- run pylxd_cluster.py");
    let out = members[0].command("python3", &args).await;
    tracing::info!(stdout = %out.stdout, stderr = %out.stderr, "pylxd_cluster.py finished");
    out.success();
    assert!(
        out.stdout.contains("pylxd cluster: all steps passed"),
        "{}",
        out.stdout
    );
}
