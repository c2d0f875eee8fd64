//! Every store a guest makes while it is live-migrated reaches the target.
//!
//! Under TCG, QEMU 7.2 drops such stores when the guest's RAM block is a multiple of 256 KiB
//! (see `Accel::ram_pad_kib`). The guest here runs `guest/memcheck.c`, which rewrites 64
//! pages without pause and reports any page that lost a store. A 1 ms downtime limit makes
//! each move take several passes while the guest runs, which is when stores were lost: with
//! an unpadded machine the first few moves printed `LOST` and the program soon died.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use drivers::{InstanceDriver, StopOutcome};
use drover_driver_qemu::{MigrationParams, QemuDriver};

/// Moves through which the checker must see every store.
const MOVES: usize = 10;

/// Builds the checker for the guest (static, no libc).
fn build_memcheck(dir: &Path) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/memcheck.c");
    let out = dir.join("memcheck");
    let status = std::process::Command::new("cc")
        .args([
            "-Os",
            "-static",
            "-nostdlib",
            "-fno-stack-protector",
            "-fno-pie",
            "-no-pie",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to build {}", src.display());
    std::fs::read(&out).expect("memcheck binary")
}

/// One live move of `id` from `src` to `dst`; the source's QEMU is gone after it.
async fn move_live(src: &QemuDriver, dst: &QemuDriver, id: &str, sock: &Path) -> u64 {
    let cfg = src.vm_config(id).await.expect("config");
    dst.prepare_incoming_config(id, &cfg).await.expect("target");
    let uri = format!("unix:{}", sock.display());
    dst.accept_migration(id, &uri).await.expect("incoming");
    let params = MigrationParams {
        downtime_limit: Duration::from_millis(1),
        ..MigrationParams::default()
    };
    let stats = src
        .migrate_out(id, &uri, &params, |_| {})
        .await
        .expect("migrate");
    dst.wait_running(id, Duration::from_secs(10))
        .await
        .expect("target runs");
    let outcome = src
        .stop(id, 30, Duration::from_secs(5), true)
        .await
        .expect("source stop");
    assert_eq!(outcome, StopOutcome::Killed);
    stats.dirty_sync_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_made_during_live_moves_all_arrive() {
    let Some(qemu) = common::qemu_or_skip("stores_made_during_live_moves_all_arrive") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let memcheck = build_memcheck(tmp.path());
    let vol = common::volume(tmp.path());
    let roots = [tmp.path().join("m1"), tmp.path().join("m2")];
    let _guard = common::KillOnDrop(roots.to_vec());
    let members = [
        common::driver(&qemu, &roots[0]).await,
        common::driver(&qemu, &roots[1]).await,
    ];
    let spec = common::spec("memcheck", &vol, "256MiB");
    let id = spec.id.clone();
    members[0].start(&spec).await.expect("start");
    let agent = members[0]
        .agent(&id, Duration::from_secs(60))
        .await
        .expect("agent");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&memcheck);
    let out = agent
        .run(
            &format!(
                "echo {b64} | base64 -d >/root/memcheck && chmod +x /root/memcheck && \
                 setsid /root/memcheck </dev/null >/dev/null 2>&1 &"
            ),
            Duration::from_secs(20),
        )
        .await
        .expect("start memcheck");
    assert_eq!(out.code, 0, "{out:?}");
    drop(agent);
    common::wait_for_text(
        &members[0].console_log(&id),
        "MEMCHECK round",
        Duration::from_secs(30),
    )
    .await;

    let mut passes = Vec::new();
    for i in 0..MOVES {
        let (src, dst) = (&members[i % 2], &members[(i + 1) % 2]);
        passes.push(move_live(src, dst, &id, &tmp.path().join(format!("m{i}.sock"))).await);
        // Long enough for the checker to finish a round of all its pages on the target.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = std::fs::read_to_string(dst.console_log(&id)).unwrap_or_default();
        let lost: Vec<&str> = log.lines().filter(|l| l.contains("LOST")).collect();
        assert!(
            lost.is_empty(),
            "move {i} lost guest stores (dirty-bitmap syncs per move so far: {passes:?}):\n{}",
            lost.join("\n")
        );
    }
    eprintln!("dirty-bitmap syncs per move: {passes:?}");
    // The checker still runs on the last target: no store lost made it crash either.
    let last = &members[MOVES % 2];
    let agent = last
        .agent(&id, Duration::from_secs(20))
        .await
        .expect("agent");
    let out = agent
        .run("pidof memcheck", Duration::from_secs(20))
        .await
        .expect("exec");
    assert_eq!(out.code, 0, "memcheck no longer runs in the guest");
    drop(agent);
    last.stop(&id, 30, Duration::from_secs(5), true)
        .await
        .expect("stop");
}
