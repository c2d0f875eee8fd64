//! Local live migration between two QEMU processes (two drivers with their own runtime
//! roots, as two members would have), and the convergence deadline that leaves the VM on the
//! source.

mod common;

use std::time::{Duration, Instant};

use drivers::{InstanceDriver, RuntimeStatus, StopOutcome};
use drover_driver_qemu::{MigrationParams, QemuDriver};

const COUNTER: &str = "i=0; while :; do echo \"COUNT $i\" >/dev/ttyS0; i=$((i+1)); sleep 0.1; done";

async fn wait_counts(d: &QemuDriver, id: &str, more_than: u64, timeout: Duration) -> Vec<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = common::counts(&d.console_log(id));
        if c.last().is_some_and(|&n| n > more_than) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "counter stuck at {:?} on {id}",
            c.last()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_consecutive(c: &[u64]) {
    for w in c.windows(2) {
        assert_eq!(w[1], w[0] + 1, "counter jumped: {c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_keeps_the_counter_going() {
    let Some(qemu) = common::qemu_or_skip("live_migration_keeps_the_counter_going") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = common::volume(tmp.path());
    let _guard = common::KillOnDrop(vec![tmp.path().join("m1"), tmp.path().join("m2")]);
    let src = common::driver(&qemu, &tmp.path().join("m1")).await;
    let dst = common::driver(&qemu, &tmp.path().join("m2")).await;
    let spec = common::spec("mig", &vol, "192MiB");
    let id = spec.id.clone();

    src.start(&spec).await.expect("start");
    let agent = src
        .agent(&id, Duration::from_secs(60))
        .await
        .expect("agent");
    let out = agent
        .run(
            &format!("setsid sh -c '{COUNTER}' >/dev/null 2>&1 </dev/null &"),
            Duration::from_secs(20),
        )
        .await
        .expect("start counter");
    assert_eq!(out.code, 0);
    drop(agent);
    wait_counts(&src, &id, 5, Duration::from_secs(20)).await;

    // 1. A migration that cannot converge in time (1 MiB/s for a 192 MiB guest, 1.5 s
    //    deadline) is cancelled; the VM keeps running and counting on the source.
    let cfg = src.vm_config(&id).await.expect("config");
    dst.prepare_incoming_config(&id, &cfg)
        .await
        .expect("target");
    let sock = tmp.path().join("mig1.sock");
    let uri = format!("unix:{}", sock.display());
    dst.accept_migration(&id, &uri).await.expect("incoming");
    let slow = MigrationParams {
        max_bandwidth: 1 << 20,
        deadline: Duration::from_millis(1500),
        ..MigrationParams::default()
    };
    let mut seen = 0;
    let err = src
        .migrate_out(&id, &uri, &slow, |_| seen += 1)
        .await
        .expect_err("must not converge");
    eprintln!("slow migration: {err}");
    assert!(err.to_string().contains("did not converge"), "{err}");
    assert!(seen > 0, "no progress reported");
    assert_eq!(src.run_state(&id).await.expect("status"), "running");
    let before = common::counts(&src.console_log(&id));
    let last = *before.last().expect("counts");
    wait_counts(&src, &id, last + 5, Duration::from_secs(20)).await;
    // The half-fed target is cleaned up.
    dst.stop(&id, 30, Duration::from_secs(1), true)
        .await
        .expect("target cleanup");
    assert_eq!(dst.state(&id).await.expect("state"), RuntimeStatus::Stopped);

    // 2. A real one: the counter goes on on the target with no reset and no gap.
    dst.prepare_incoming_config(&id, &cfg)
        .await
        .expect("target");
    let sock = tmp.path().join("mig2.sock");
    let uri = format!("unix:{}", sock.display());
    dst.accept_migration(&id, &uri).await.expect("incoming");
    let stats = src
        .migrate_out(&id, &uri, &MigrationParams::default(), |_| {})
        .await
        .expect("migrate");
    eprintln!("migration: {stats:?}");
    assert!(stats.downtime_ms < 1000, "{stats:?}");
    dst.wait_running(&id, Duration::from_secs(10))
        .await
        .expect("target runs");
    assert_eq!(src.run_state(&id).await.expect("status"), "postmigrate");
    let outcome = src
        .stop(&id, 30, Duration::from_secs(5), true)
        .await
        .expect("source stop");
    assert_eq!(outcome, StopOutcome::Killed);
    let on_src = common::counts(&src.console_log(&id));
    let last_src = *on_src.last().expect("counts on source");
    let on_dst = wait_counts(&dst, &id, last_src + 10, Duration::from_secs(30)).await;
    eprintln!(
        "source ended at {last_src}, target went from {:?} to {:?}",
        on_dst.first(),
        on_dst.last()
    );
    assert!(
        on_dst.first() == Some(&(last_src + 1)),
        "target's first count {:?} does not follow the source's last {last_src}",
        on_dst.first()
    );
    assert_consecutive(&on_src);
    assert_consecutive(&on_dst);

    // The guest's agent answers on the target.
    let agent = dst
        .agent(&id, Duration::from_secs(20))
        .await
        .expect("agent");
    let out = agent
        .run("cat /proc/uptime", Duration::from_secs(20))
        .await
        .expect("exec on target");
    assert_eq!(out.code, 0);
    drop(agent);
    let outcome = dst
        .stop(&id, 30, Duration::from_secs(20), false)
        .await
        .expect("stop");
    assert_eq!(outcome, StopOutcome::Clean);
}

#[tokio::test]
async fn accel_probe_answers_within_its_deadline() {
    let Some(qemu) = common::qemu_or_skip("accel_probe_answers_within_its_deadline") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = common::volume(tmp.path());
    let t = Instant::now();
    let p = drover_driver_qemu::probe_accel(
        &qemu,
        &vol.join("boot/vmlinuz"),
        &vol.join("boot/initrd.img"),
        Duration::from_secs(4),
    )
    .await;
    eprintln!("accelerator: {p:?} in {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(8));
    assert!(
        p.detail
            .starts_with(p.accel.as_str().to_uppercase().as_str()),
        "{p:?}"
    );
}
