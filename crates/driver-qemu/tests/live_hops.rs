//! A VM live-migrated twice in a row the way the daemon does it (targets started paused,
//! resumed once the stream arrived, the source ended), with the guest agent used on every
//! host before it leaves: the agent answers after each hop.

mod common;

use std::time::Duration;

use drover_driver_qemu::{MigrationParams, QemuDriver};

async fn exec(d: &QemuDriver, id: &str) {
    for i in 0..20 {
        let t = std::time::Instant::now();
        let agent = d
            .agent(id, Duration::from_secs(30))
            .await
            .expect("agent connects");
        let out = agent
            .run(
                "cat /proc/sys/kernel/random/boot_id",
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|e| panic!("exec {i}: {e} after {:?}", t.elapsed()));
        assert_eq!(out.code, 0);
        assert_eq!(
            out.stdout.len(),
            37,
            "exec {i}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

async fn hop(src: &QemuDriver, dst: &QemuDriver, id: &str, sock: &std::path::Path) {
    let cfg = src.vm_config(id).await.expect("config");
    dst.prepare_incoming_paused(id, &cfg).await.expect("target");
    let qmp = dst.qmp(id).await.expect("qmp");
    qmp.migrate_set_capabilities(&[("late-block-activate", true)])
        .await
        .expect("late-block-activate");
    let uri = format!("unix:{}", sock.display());
    dst.accept_migration(id, &uri).await.expect("incoming");
    let stats = src
        .migrate_out(id, &uri, &MigrationParams::default(), |_| {})
        .await
        .expect("migrate");
    eprintln!("hop: {stats:?}");
    let status = dst
        .wait_arrived(id, Duration::from_secs(30))
        .await
        .expect("arrived");
    assert_eq!(status, "paused");
    dst.attach_agent(id).await.expect("agent port attached");
    assert!(dst.resume(id).await.expect("resume"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    src.discard(id).await.expect("source ends");
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_after_each_hop() {
    let Some(qemu) = common::qemu_or_skip("the_agent_answers_after_each_hop") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = common::volume(tmp.path());
    let roots: Vec<_> = ["a", "b", "c"].iter().map(|n| tmp.path().join(n)).collect();
    let _guard = common::KillOnDrop(roots.clone());
    let a = common::driver(&qemu, &roots[0]).await;
    let b = common::driver(&qemu, &roots[1]).await;
    let c = common::driver(&qemu, &roots[2]).await;
    let spec = common::spec("hops", &vol, "256MiB");
    let id = spec.id.clone();
    drivers::InstanceDriver::start(&a, &spec)
        .await
        .expect("start");
    exec(&a, &id).await;
    let agent = a.agent(&id, Duration::from_secs(30)).await.expect("agent");
    let out = agent
        .run(
            "setsid sh -c 'i=0; while :; do i=$((i+1)); echo \"COUNT $i\" >/dev/ttyS0; echo $i >/root/count; sync; sleep 0.2; done' </dev/null >/dev/null 2>&1 &",
            Duration::from_secs(20),
        )
        .await
        .expect("counter");
    assert_eq!(out.code, 0);
    drop(agent);
    exec(&a, &id).await;
    hop(&a, &b, &id, &tmp.path().join("h1.sock")).await;
    exec(&b, &id).await;
    hop(&b, &c, &id, &tmp.path().join("h2.sock")).await;
    exec(&c, &id).await;
}

/// The disk moves with the VM (block migration) to a separate copy of the volume, and the
/// guest goes on writing to it on the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_moves_with_the_vm() {
    let Some(qemu) = common::qemu_or_skip("the_disk_moves_with_the_vm") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol_a = common::volume(&tmp.path().join("va"));
    let vol_b = common::volume(&tmp.path().join("vb"));
    let roots: Vec<_> = ["a", "b"].iter().map(|n| tmp.path().join(n)).collect();
    let _guard = common::KillOnDrop(roots.clone());
    let a = common::driver(&qemu, &roots[0]).await;
    let b = common::driver(&qemu, &roots[1]).await;
    let spec = common::spec("disk", &vol_a, "256MiB");
    let id = spec.id.clone();
    drivers::InstanceDriver::start(&a, &spec)
        .await
        .expect("start");
    let agent = a.agent(&id, Duration::from_secs(60)).await.expect("agent");
    let out = agent
        .run(
            "echo before > /root/before; setsid sh -c 'i=0; while :; do i=$((i+1)); echo \"COUNT $i\" >/dev/ttyS0; echo $i >/root/count; sync; sleep 0.2; done' </dev/null >/dev/null 2>&1 &",
            Duration::from_secs(20),
        )
        .await
        .expect("counter");
    assert_eq!(out.code, 0);
    drop(agent);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cfg = a.vm_config(&id).await.expect("config");
    let cfg_b = drover_driver_qemu::VmConfig {
        disk: vol_b.join("root.img"),
        kernel: vol_b.join("boot/vmlinuz"),
        initrd: vol_b.join("boot/initrd.img"),
        ..cfg
    };
    b.prepare_incoming_paused(&id, &cfg_b)
        .await
        .expect("target");
    if std::env::var_os("NO_LATE").is_none() {
        let qmp = b.qmp(&id).await.expect("qmp");
        qmp.migrate_set_capabilities(&[("late-block-activate", true)])
            .await
            .expect("late-block-activate");
    }
    let sock = tmp.path().join("d.sock");
    let uri = format!("unix:{}", sock.display());
    b.accept_migration(&id, &uri).await.expect("incoming");
    let params = MigrationParams {
        block: true,
        ..MigrationParams::default()
    };
    let stats = a
        .migrate_out(&id, &uri, &params, |_| {})
        .await
        .expect("migrate");
    eprintln!("with the disk: {stats:?}");
    let status = b
        .wait_arrived(&id, Duration::from_secs(30))
        .await
        .expect("arrived");
    assert_eq!(status, "paused");
    b.attach_agent(&id).await.expect("agent port");
    assert!(b.resume(&id).await.expect("resume"));
    a.discard(&id).await.expect("source ends");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = b.run_state(&id).await.expect("target still runs");
    assert_eq!(st, "running");
    exec(&b, &id).await;
    let c = common::counts(&b.console_log(&id));
    eprintln!(
        "counts on the target: {:?}",
        c.iter().take(3).collect::<Vec<_>>()
    );
    assert!(c.len() >= 5, "{c:?}");
}
