//! What a Python script trusting itself to a drover cluster through pylxd 2.4 runs into:
//! `python/pylxd_sweep_s7.py` against real daemons.
//!
//! Members listen on 127.0.63.1–3, 127.0.63.4–6 and 127.0.63.7–9 (free ports).

use drover_e2e::{form_cluster, require_pylxd, workspace_root};

/// Forms a cluster of three members on `ips` (the busybox image imported on m1 when
/// `image`) and runs the script's `name` scenario with their sockets.
///
/// # Panics
///
/// When the script fails (with its output).
async fn scenario(ips: &[&str], name: &str, image: bool) {
    require_pylxd();
    let members = form_cluster(ips).await;
    if image {
        members[0].import_busybox().await;
    }
    let script = workspace_root().join("crates/e2e/python/pylxd_sweep_s7.py");
    let sockets: Vec<String> = members
        .iter()
        .map(|m| m.socket().to_str().expect("utf-8 path").to_string())
        .collect();
    let mut args = vec![script.to_str().expect("utf-8 path"), name];
    args.extend(sockets.iter().map(String::as_str));
    tracing::info!(name, "--- run pylxd_sweep_s7.py");
    let out = members[0].command("python3", &args).await;
    tracing::info!(stdout = %out.stdout, stderr = %out.stderr, "pylxd_sweep_s7.py finished");
    out.success();
    assert!(
        out.stdout.contains("pylxd sweep s7: all steps passed"),
        "{}",
        out.stdout
    );
}

/// What does this test do?
///
/// Forms a cluster of three members and runs the script's `trust` scenario: pylxd's
/// `certificates.create("", pem)` through m1's socket (pylxd sends the PEM body with its
/// line breaks, which LXD's base64 skips; drover refused it as invalid material) must
/// trust that client over HTTPS on m3; `core.trust_password` set through m1 (drover
/// refused the key) must be shown as `true` on m2 and survive a `PUT` of what `GET`
/// showed; a second client's `authenticate()` with a wrong password must be a 403, with
/// the password it must be trusted on every member; unset, the key is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_authenticates_with_the_trust_password_and_adds_pem_certificates() {
    scenario(&["127.0.63.1", "127.0.63.2", "127.0.63.3"], "trust", false).await;
}

/// What does this test do?
///
/// Forms a cluster of three members (the image on m1) and runs the script's `restore`
/// scenario: two running instances on m2, m2 evacuated, one of them then stopped by hand,
/// m3 and m1 evacuated as well (m1's evacuation stops both in place, nowhere being left).
/// Restoring m2 must bring both home: the one the evacuation stopped running (it used to
/// come home stopped although `volatile.last_state.power` said `RUNNING`), the one
/// stopped by hand stopped. After m1 and m3 are restored, all three are `Online` and the
/// instances are unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_sees_a_restore_start_what_a_later_evacuation_stopped() {
    scenario(&["127.0.63.4", "127.0.63.5", "127.0.63.6"], "restore", true).await;
}

/// What does this test do?
///
/// Forms a cluster of three members (the image on m1) and runs the script's `twice`
/// scenario: while m2's evacuation of an instance slow to stop runs (m2 `Evacuating`), a
/// second evacuation of m2 must fail with `Cluster member is already evacuated` (it used
/// to run a second plan of m2 alongside the first and succeed), and the first succeed; the
/// same for a second restore during the restore (`Cannot restore "m2" while a restore
/// operation is in progress`). The instance ends home and running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_sees_a_second_evacuation_of_a_member_refused_while_the_first_runs() {
    scenario(&["127.0.63.7", "127.0.63.8", "127.0.63.9"], "twice", true).await;
}
