//! Two droverd on one host do not touch each other's instances, even with equal names.
//!
//! Fails today: every droverd puts its containers in the cgroup `/drover/<project>_<name>`,
//! so equal names on two daemons share one cgroup, and stopping one kills the other.

use api::InstanceStatus;
use drover_e2e::Member;

/// What does this test do?
///
/// 1. Starts two members, each with the busybox image and a running instance `iso1`.
/// 2. Force-stops `iso1` on the first member.
/// 3. `iso1` on the second member is still Running with the same PID 1, and exec works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_names_on_two_daemons_are_independent() {
    let (a, b) = tokio::join!(Member::start(), Member::start());
    tokio::join!(a.import_busybox(), b.import_busybox());

    tracing::info!("--- launch iso1 on both members");
    a.launch("iso1", &[]).await;
    b.launch("iso1", &[]).await;
    let pid_b = b.pid("iso1").await;

    tracing::info!("--- force stop iso1 on the first member");
    a.change_state("iso1", "stop", true)
        .await
        .expect("force stop on a");
    assert_eq!(a.status("iso1").await, InstanceStatus::Stopped);

    tracing::info!("--- iso1 on the second member is untouched");
    assert_eq!(
        b.status("iso1").await,
        InstanceStatus::Running,
        "stopping a's iso1 stopped b's iso1 (shared cgroup /drover/default_iso1)"
    );
    assert_eq!(b.pid("iso1").await, pid_b);
    let out = b
        .exec("iso1", &["cat", "/etc/hostname"])
        .await
        .expect("exec on b");
    assert_eq!((out.code, out.stdout.as_str()), (0, "iso1\n"));
}
