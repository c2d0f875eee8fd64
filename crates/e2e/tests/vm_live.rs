//! Live migration of running virtual machines between members
//! (`POST /1.0/instances/{name}?target=m2` with `live: true`, `lxc move v1 --target m2`),
//! with three real members and real QEMU (TCG here, 256 MiB guests).
//!
//! What does this test do?
//! - a VM on a `shared-fs` pool runs a counter that prints to its serial console and
//!   writes to its disk; it moves live m1 → m2 (asked through m3): the counter goes on
//!   where it was (same boot id, the ticks on m2's console continue the ones before, no
//!   reset), the move reports its downtime, it runs on m2 and nothing of it is left on m1;
//!   then `lxc move` (the 5.0.2 client) takes it on to m3 the same way
//! - a VM on a member-local `dir` pool moves live m1 → m2: its disk moves while it runs
//!   (a file written before and the counter file written during the move read back), the
//!   source's volume is gone
//! - killing the target daemon (SIGKILL) while the VM migrates to it fails the move with
//!   the cause and leaves the VM running on the source (same boot id, counting); once the
//!   target is back nothing of the VM is left there (no QEMU, no runtime files, no
//!   volume), and a new live move succeeds
//!
//! - evacuating a member with two running VMs (`shared-fs` and `dir`) and two running
//!   containers live-migrates the VMs (they never stop: their counters go on in the same
//!   boot) and cold-migrates the containers; restore brings all four home the same way;
//!   a third VM set to `cluster.evacuate=migrate` leaves stopped (restarted on its target:
//!   a new boot id) and comes home the same way (another new boot id), not live
//!
//! - the hand-over's crash window: the source daemon dies right after the target resumed
//!   the VM (before the ownership switch), and later the target daemon dies right after
//!   resuming it (before answering): each time the VM keeps counting on the target in the
//!   same boot, never resumes on the source, and once the dead daemon is back the move is
//!   finished (owner the target, no QEMU left on the source)
//!
//! Skipped, saying so, only when qemu-system-x86_64 is not installed. Members listen on
//! 127.0.31.1–127.0.31.12 (free ports).

use std::path::Path;
use std::time::{Duration, Instant};

use drover_e2e::{
    KillVms, Member, create_on, import_busybox_vm, local_pool, location, plan_of,
    post_member_state, qemu_installed, vm_request, wait_op, wait_until,
};
use serde_json::{Value, json};

/// How long a create (a VM boot under TCG on a loaded machine) may take.
const CREATE: Duration = Duration::from_secs(300);
/// How long a live move may take.
const MOVE: Duration = Duration::from_secs(240);
/// How long the guest may take to show progress.
const GUEST: Duration = Duration::from_secs(120);
/// How long one exec into a booted VM may take (well under a second when all is well).
const EXEC: Duration = Duration::from_secs(30);

/// A counter in the guest: every 0.2 s a `tick N BOOT-ID` line on the serial console, N in
/// `/root/count` on the root disk (synced).
const COUNTER: &str = "setsid sh -c 'b=$(cat /proc/sys/kernel/random/boot_id); i=0; while :; do i=$((i+1)); \
     echo \"tick $i $b\" >/dev/ttyS0; echo $i >/root/count; sync; sleep 0.2; done' </dev/null >/dev/null 2>&1 &";

/// Three members with a member-local `dir` pool `local` and a `shared-fs` pool `shared`,
/// and the busybox-vm image on m1.
async fn cluster(ips: [&str; 3], root: &Path) -> (Vec<Member>, KillVms) {
    let ms = drover_e2e::form_cluster(&ips).await;
    let kill = KillVms::of(&ms);
    local_pool(&ms, root, "local").await;
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).expect("shared dir");
    let body = json!({"name": "shared", "driver": "shared-fs",
        "config": {"source": shared.display().to_string()}});
    let r = ms[0]
        .raw("POST", "/1.0/storage-pools", Some(&body.to_string()))
        .await;
    assert!(r.status < 300, "create pool shared: {}", r.text);
    import_busybox_vm(&ms[0]).await;
    (ms, kill)
}

/// Launches VM `name` (256 MiB) on member `target` with its root disk on `pool`, and starts
/// the counter in it.
async fn launch_on(m: &Member, target: &str, name: &str, pool: &str) {
    let body = serde_json::to_string(&vm_request(name, "256MiB", pool)).expect("json");
    let r = m
        .raw(
            "POST",
            &format!("/1.0/instances?target={target}"),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 202, "create {name}: {}", r.text);
    wait_op(m, r.metadata(), CREATE)
        .await
        .unwrap_or_else(|(e, _)| panic!("create {name}: {e}"));
    sh(m, name, "echo written-before-the-move > /root/before; sync").await;
    sh(m, name, COUNTER).await;
    wait_until("the counter counts", GUEST, || async {
        ticks(m, name).await.len() >= 3
    })
    .await;
}

/// The last tick of `name`'s counter and the boot id it prints (from its console log).
async fn last_tick(m: &Member, name: &str) -> (u64, String) {
    ticks(m, name)
        .await
        .last()
        .cloned()
        .expect("the counter printed ticks")
}

/// Runs `sh -c script` in `name` through `m`, once (an exec must not hang, also right
/// after a move); its stdout.
async fn sh(m: &Member, name: &str, script: &str) -> String {
    let out = tokio::time::timeout(EXEC, m.exec(name, &["sh", "-c", script]))
        .await
        .unwrap_or_else(|_| panic!("exec in {name} hung (more than {EXEC:?}): {script}"))
        .unwrap_or_else(|e| panic!("exec in {name}: {script}: {e}"));
    assert_eq!(out.code, 0, "{script}: {}", out.stderr);
    out.stdout
}

/// `POST /1.0/instances/{name}?target=` through `m` with the body `lxc move` sends for a
/// running instance (`live: true`).
async fn post_live_move(m: &Member, name: &str, target: &str) -> drover_e2e::RawResponse {
    let body = json!({
        "name": name, "migration": true, "live": true, "instance_only": false,
        "container_only": false, "target": null, "pool": "", "project": "",
        "allow_inconsistent": false,
    });
    m.raw(
        "POST",
        &format!("/1.0/instances/{name}?target={target}"),
        Some(&body.to_string()),
    )
    .await
}

/// Whether a QEMU of runtime `id` of member `m` runs (its command line names its QMP
/// socket under `m`'s state dir).
fn qemu_runs(m: &Member, id: &str) -> bool {
    let needle = m.state_dir().join("vms").join(id).join("qmp.sock");
    let needle = needle.display().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// Whether anything named `volume` is in the `local` pool of member `i` (1-based) under
/// `root` (two levels deep: the pool's own layout).
fn local_volume_exists(root: &Path, i: usize, volume: &str) -> bool {
    let pool = root.join(format!("m{i}")).join("local");
    let Ok(top) = std::fs::read_dir(&pool) else {
        return false;
    };
    top.flatten().any(|e| {
        e.file_name() == volume
            || std::fs::read_dir(e.path())
                .map(|inner| inner.flatten().any(|f| f.file_name() == volume))
                .unwrap_or(false)
    })
}

/// The `tick N BOOT-ID` lines the console log of `name` shows (through `m`).
async fn ticks(m: &Member, name: &str) -> Vec<(u64, String)> {
    let r = m
        .raw("GET", &format!("/1.0/instances/{name}/console"), None)
        .await;
    assert_eq!(r.status, 200, "console log: {}", r.text);
    r.text
        .lines()
        .filter_map(|l| {
            let mut w = l.trim().strip_prefix("tick ")?.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.to_string()))
        })
        .collect()
}

/// Checks that `name`, which had counted up to `before` in the boot `boot` before its move,
/// now runs on `target` without having restarted: its console there carries on from
/// where the source's stopped, consecutively, in the same boot, and an exec answers.
async fn goes_on_counting(m: &Member, name: &str, target: &str, before: u64, boot: &str) {
    assert_eq!(location(m, name).await, target);
    let r = m.raw("GET", &format!("/1.0/instances/{name}"), None).await;
    assert_eq!(r.metadata()["status"], "Running", "{}", r.text);
    let deadline = Instant::now() + GUEST;
    while ticks(m, name).await.len() < 5 {
        if Instant::now() >= deadline {
            let r = m
                .raw("GET", &format!("/1.0/instances/{name}/console"), None)
                .await;
            let tail: String = r.text.chars().rev().take(600).collect();
            let tail: String = tail.chars().rev().collect();
            panic!("{name}'s counter does not go on on {target}; its console ends with {tail:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = ticks(m, name).await;
    let (first, _) = seen[0];
    assert!(
        first > before,
        "the target's console starts at tick {first}, the source had counted {before}"
    );
    for w in seen.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "ticks not consecutive: {seen:?}");
    }
    assert!(
        seen.iter().all(|(_, b)| b == boot),
        "the guest rebooted: {seen:?}"
    );
    let up = sh(m, name, "cat /proc/sys/kernel/random/boot_id").await;
    assert_eq!(up.trim(), boot);
}

/// Moves `name` live to `target` through `m`, waits and checks the report.
async fn move_live(m: &Member, name: &str, target: &str) -> Value {
    let t = Instant::now();
    let r = post_live_move(m, name, target).await;
    assert_eq!(r.status, 202, "live move of {name}: {}", r.text);
    assert_eq!(r.metadata()["description"], "Migrating instance");
    let done = wait_op(m, r.metadata(), MOVE)
        .await
        .unwrap_or_else(|(e, _)| panic!("live move of {name} to {target}: {e}"));
    let report = done["metadata"].clone();
    eprintln!(
        "live move of {name} to {target} in {:?}: {report}",
        t.elapsed()
    );
    assert_eq!(report["running"], true, "{report}");
    assert!(report["downtime_ms"].as_u64().is_some(), "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_vms_move_live_between_members() {
    drover_e2e::init_tracing();
    if !qemu_installed() {
        eprintln!(
            "SKIPPED running_vms_move_live_between_members: qemu-system-x86_64 is not installed"
        );
        return;
    }
    drover_e2e::require_lxc();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ms, _kill) = cluster(["127.0.31.1", "127.0.31.2", "127.0.31.3"], tmp.path()).await;

    tracing::info!("--- shared-fs: lv1 on m1 counts");
    launch_on(&ms[0], "m1", "lv1", "shared").await;

    tracing::info!("--- shared-fs: live move m1 -> m2 (asked through m3)");
    let (before, boot) = last_tick(&ms[0], "lv1").await;
    let report = move_live(&ms[2], "lv1", "m2").await;
    assert_eq!(report["copied_data"], false, "{report}");
    goes_on_counting(&ms[0], "lv1", "m2", before, &boot).await;
    assert!(
        !qemu_runs(&ms[0], "default_lv1"),
        "a QEMU of lv1 is left on m1"
    );
    assert!(!ms[0].state_dir().join("vms/default_lv1").exists());
    assert!(qemu_runs(&ms[1], "default_lv1"));

    tracing::info!("--- shared-fs: lxc move lv1 --target m3 (lxc 5.0.2, running: live)");
    let (before, _) = last_tick(&ms[0], "lv1").await;
    let out = ms[0].lxc(&["move", "lv1", "--target", "m3"]).await;
    out.success();
    goes_on_counting(&ms[0], "lv1", "m3", before, &boot).await;
    assert!(
        !qemu_runs(&ms[1], "default_lv1"),
        "a QEMU of lv1 is left on m2"
    );
    let out = ms[1].lxc(&["list", "-f", "csv", "-c", "nsL"]).await;
    assert!(
        out.stdout.lines().any(|l| l == "lv1,RUNNING,m3"),
        "{}",
        out.stdout
    );

    tracing::info!("--- dir: lv2 on m1 counts, its disk moves while it runs");
    launch_on(&ms[0], "m1", "lv2", "local").await;
    assert!(local_volume_exists(tmp.path(), 1, "default_lv2"));
    let (before, boot) = last_tick(&ms[0], "lv2").await;
    let report = move_live(&ms[0], "lv2", "m2").await;
    assert_eq!(report["copied_data"], true, "{report}");
    goes_on_counting(&ms[0], "lv2", "m2", before, &boot).await;
    assert_eq!(
        sh(&ms[0], "lv2", "cat /root/before").await.trim(),
        "written-before-the-move"
    );
    // The disk's counter file was written during the move, and is written on m2 now.
    let on_disk: u64 = sh(&ms[0], "lv2", "sync; cat /root/count")
        .await
        .trim()
        .parse()
        .expect("counter on disk");
    assert!(
        on_disk > before,
        "disk counter {on_disk}, before the move {before}"
    );
    assert!(
        !qemu_runs(&ms[0], "default_lv2"),
        "a QEMU of lv2 is left on m1"
    );
    assert!(
        !local_volume_exists(tmp.path(), 1, "default_lv2"),
        "m1 kept lv2's volume"
    );
    assert!(local_volume_exists(tmp.path(), 2, "default_lv2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_migration_leaves_the_vm_on_the_source() {
    drover_e2e::init_tracing();
    if !qemu_installed() {
        eprintln!(
            "SKIPPED a_target_killed_mid_migration_leaves_the_vm_on_the_source: qemu-system-x86_64 is not installed"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut ms, _kill) = cluster(["127.0.31.4", "127.0.31.5", "127.0.31.6"], tmp.path()).await;
    launch_on(&ms[0], "m1", "lvk", "local").await;
    // Some data in the guest's memory, so that the migration takes a while.
    sh(
        &ms[0],
        "lvk",
        "dd if=/dev/urandom of=/run/fill bs=1M count=48 2>/dev/null; true",
    )
    .await;
    let (_, boot) = last_tick(&ms[0], "lvk").await;

    tracing::info!("--- live move m1 -> m2; kill m2's daemon once its QEMU waits for the VM");
    let r = post_live_move(&ms[0], "lvk", "m2").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.metadata().clone();
    let target_pid = ms[1].state_dir().join("vms/default_lvk/qemu.pid");
    wait_until("the target QEMU starts", MOVE, || async {
        target_pid.exists()
    })
    .await;
    ms[1].kill();
    let (err, _) = wait_op(&ms[0], &op, MOVE)
        .await
        .expect_err("the move must fail");
    eprintln!("move failed as it should: {err}");
    assert!(err.contains("m2"), "the cause names the target: {err}");

    tracing::info!("--- the VM runs on m1 as before");
    assert_eq!(location(&ms[0], "lvk").await, "m1");
    let (before, same) = last_tick(&ms[0], "lvk").await;
    assert_eq!(same, boot, "the guest rebooted");
    wait_until("the counter goes on", GUEST, || async {
        last_tick(&ms[0], "lvk").await.0 >= before + 3
    })
    .await;
    assert!(ticks(&ms[0], "lvk").await.iter().all(|(_, b)| *b == boot));
    assert!(qemu_runs(&ms[0], "default_lvk"));
    let up = sh(&ms[0], "lvk", "cat /proc/sys/kernel/random/boot_id").await;
    assert_eq!(up.trim(), boot);

    tracing::info!("--- m2 back: nothing of lvk is left there");
    ms[1].start_again().await;
    let m2 = &ms[1];
    wait_until("m2 drops what it held of lvk", MOVE, || async {
        !qemu_runs(m2, "default_lvk")
            && !m2.state_dir().join("vms/default_lvk").exists()
            && !local_volume_exists(tmp.path(), 2, "default_lvk")
    })
    .await;

    tracing::info!("--- a new live move succeeds");
    let (before, _) = last_tick(&ms[0], "lvk").await;
    move_live(&ms[0], "lvk", "m2").await;
    goes_on_counting(&ms[0], "lvk", "m2", before, &boot).await;
}

/// Evacuates (or restores) `member` through `m` with `lxc`'s body and waits; the operation.
async fn evacuation(m: &Member, member: &str, action: &str) -> Value {
    let op = post_member_state(m, member, &json!({"action": action, "mode": ""})).await;
    wait_op(m, &op, MOVE * 2)
        .await
        .unwrap_or_else(|(e, _)| panic!("{action} {member}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuation_moves_running_vms_live_and_restore_brings_them_home() {
    drover_e2e::init_tracing();
    if !qemu_installed() {
        eprintln!(
            "SKIPPED evacuation_moves_running_vms_live_and_restore_brings_them_home: qemu-system-x86_64 is not installed"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ms, _kill) = cluster(["127.0.31.7", "127.0.31.8", "127.0.31.9"], tmp.path()).await;
    ms[0].import_busybox().await;

    tracing::info!("--- on m2: three running VMs with counters, two running containers");
    launch_on(&ms[0], "m2", "ev1", "shared").await;
    launch_on(&ms[0], "m2", "ev2", "local").await;
    // And one that moves stopped (`cluster.evacuate=migrate`), both ways.
    launch_on(&ms[0], "m2", "ev3", "shared").await;
    let r = ms[0]
        .raw(
            "PATCH",
            "/1.0/instances/ev3",
            Some(r#"{"config": {"cluster.evacuate": "migrate"}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let boot_id = "cat /proc/sys/kernel/random/boot_id";
    let ev3_boot = sh(&ms[0], "ev3", boot_id).await;
    create_on(&ms[0], "m2", "ec1", "local", &[], true).await;
    create_on(&ms[0], "m2", "ec2", "shared", &[], true).await;
    let mut before = Vec::new();
    for vm in ["ev1", "ev2"] {
        before.push((vm, last_tick(&ms[0], vm).await));
    }

    tracing::info!("--- evacuate m2: ev1 and ev2 live, ev3 and the containers cold");
    let done = evacuation(&ms[0], "m2", "evacuate").await;
    let plan = plan_of(&done);
    eprintln!("evacuation plan: {plan:#?}");
    for vm in ["ev1", "ev2"] {
        assert_eq!(plan[vm]["action"], "live-migrate", "{:?}", plan[vm]);
    }
    for c in ["ec1", "ec2", "ev3"] {
        assert_eq!(plan[c]["action"], "migrate", "{:?}", plan[c]);
    }
    assert_ne!(location(&ms[0], "ev3").await, "m2");
    let ev3_away = sh(&ms[0], "ev3", boot_id).await;
    assert_ne!(
        ev3_away, ev3_boot,
        "ev3 (migrate) was not restarted on its way out"
    );
    for (vm, (tick, boot)) in &before {
        let at = location(&ms[0], vm).await;
        assert_ne!(at, "m2", "{vm} stayed on m2");
        goes_on_counting(&ms[0], vm, &at, *tick, boot).await;
    }
    for c in ["ec1", "ec2"] {
        assert_ne!(location(&ms[0], c).await, "m2");
        assert_eq!(ms[0].status(c).await, api::InstanceStatus::Running);
    }

    tracing::info!("--- restore m2: everything comes home, ev1 and ev2 live, ev3 cold");
    let mut before = Vec::new();
    for vm in ["ev1", "ev2"] {
        before.push((vm, last_tick(&ms[0], vm).await));
    }
    evacuation(&ms[0], "m2", "restore").await;
    for (vm, (tick, boot)) in &before {
        goes_on_counting(&ms[0], vm, "m2", *tick, boot).await;
    }
    for c in ["ec1", "ec2", "ev3"] {
        assert_eq!(location(&ms[0], c).await, "m2");
        assert_eq!(ms[0].status(c).await, api::InstanceStatus::Running);
    }
    // The way it left: stopped, started again at home.
    assert_ne!(
        sh(&ms[0], "ev3", boot_id).await,
        ev3_away,
        "ev3 (migrate) came home live"
    );
}

/// The test-only crash points (crates/daemon/src/cluster/evacuate/crash.rs).
const CRASH_ENV: &str = "DROVER_TEST_CRASH_AT";

/// The `tick N` lines in the console log file member `m` keeps of runtime `id` (readable
/// while the instance's owner is down).
fn console_ticks(m: &Member, id: &str) -> Vec<u64> {
    std::fs::read_to_string(m.state_dir().join("vms").join(id).join("console.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("tick ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_dying_in_the_hand_over_leaves_the_vm_running_once_on_the_target() {
    drover_e2e::init_tracing();
    if !qemu_installed() {
        eprintln!(
            "SKIPPED a_daemon_dying_in_the_hand_over_leaves_the_vm_running_once_on_the_target: qemu-system-x86_64 is not installed"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut ms, _kill) = cluster(["127.0.31.10", "127.0.31.11", "127.0.31.12"], tmp.path()).await;
    launch_on(&ms[0], "m1", "lvh", "shared").await;
    let (before, boot) = last_tick(&ms[0], "lvh").await;

    tracing::info!("--- the source m1 dies once m2 resumed the VM, before the switch");
    ms[0].set_env(CRASH_ENV, "live-resumed");
    ms[0].restart().await;
    let r = post_live_move(&ms[2], "lvh", "m2").await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(
        ms[0].wait_exit(MOVE).await.is_some(),
        "m1 did not reach the crash point\n{}",
        ms[0].log()
    );
    assert!(ms[0].state_dir().join("crashed-at-live-resumed").exists());
    // While m1 is down the guest counts on m2, and m1's QEMU (paused for good) never runs it.
    let (m2, m1) = (&ms[1], &ms[0]);
    wait_until("the VM counts on m2 while m1 is down", GUEST, || async {
        console_ticks(m2, "default_lvh").len() >= 3
    })
    .await;
    let on_m1 = console_ticks(m1, "default_lvh").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        console_ticks(m1, "default_lvh").len(),
        on_m1,
        "the source resumed its stale copy"
    );
    ms[0].start_again().await;
    let (m1, m3) = (&ms[0], &ms[2]);
    wait_until("m1's recovery finishes the move", MOVE, || async {
        location(m3, "lvh").await == "m2" && !qemu_runs(m1, "default_lvh")
    })
    .await;
    goes_on_counting(&ms[2], "lvh", "m2", before, &boot).await;

    tracing::info!("--- the target m3 dies right after resuming the VM, before answering");
    let (before, _) = last_tick(&ms[0], "lvh").await;
    ms[2].set_env(CRASH_ENV, "live-target-resumed");
    ms[2].restart().await;
    let r = post_live_move(&ms[0], "lvh", "m3").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.metadata().clone();
    assert!(
        ms[2].wait_exit(MOVE).await.is_some(),
        "m3 did not reach the crash point\n{}",
        ms[2].log()
    );
    assert!(
        ms[2]
            .state_dir()
            .join("crashed-at-live-target-resumed")
            .exists()
    );
    ms[2].start_again().await;
    // The source asks m3 again until it answers (or leaves it to its recovery): either
    // way the move ends on m3.
    if let Err((e, _)) = wait_op(&ms[0], &op, MOVE).await {
        eprintln!("the move's operation failed, recovery finishes it: {e}");
    }
    let (m1, m2) = (&ms[0], &ms[1]);
    wait_until("the move ends on m3", MOVE, || async {
        location(m1, "lvh").await == "m3" && !qemu_runs(m2, "default_lvh")
    })
    .await;
    goes_on_counting(&ms[0], "lvh", "m3", before, &boot).await;
}

/// What does this test do?
/// - a VM on the member-local `dir` pool fills 120 MiB of its 256 MiB with random data
///   (tmpfs: nothing QEMU can skip as zero pages), then moves live m1 → m2 and back: both
///   times it keeps counting in the same boot and the data reads back with the same
///   checksum, and its root disk, full, moves along
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_full_of_random_data_moves_live_with_its_disk() {
    drover_e2e::init_tracing();
    if !qemu_installed() {
        eprintln!(
            "SKIPPED a_vm_full_of_random_data_moves_live_with_its_disk: qemu-system-x86_64 is not installed"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ms, _kill) = cluster(["127.0.31.13", "127.0.31.14", "127.0.31.15"], tmp.path()).await;
    launch_on(&ms[0], "m1", "lvr", "local").await;
    let sum = sh(
        &ms[0],
        "lvr",
        "mkdir -p /mnt/mem && mount -t tmpfs -o size=130m tmpfs /mnt/mem && \
         dd if=/dev/urandom of=/mnt/mem/fill bs=1M count=120 2>/dev/null && md5sum /mnt/mem/fill",
    )
    .await;
    // And a root disk filled up to ENOSPC (120 MiB written to its 64 MiB disk): the disk's
    // every block travels in the block migration. On the disk, not in /run: that is a
    // tmpfs, and 120 MiB more in RAM drove the guest out of memory; its kernel then
    // panicked now and then, and the QEMU of a VM that panics exits (CI, session 4).
    sh(
        &ms[0],
        "lvr",
        "dd if=/dev/urandom of=/root/fill bs=1M count=120 2>/dev/null; sync; true",
    )
    .await;
    assert_eq!(
        sh(&ms[0], "lvr", "dmesg | grep -ci 'out of memory'; true")
            .await
            .trim(),
        "0",
        "the guest ran out of memory before the move"
    );
    let (_, boot) = last_tick(&ms[0], "lvr").await;
    for target in ["m2", "m1"] {
        let (before, _) = last_tick(&ms[2], "lvr").await;
        let report = move_live(&ms[2], "lvr", target).await;
        assert!(
            report["bytes_sent"].as_u64().unwrap_or(0) > 120 << 20,
            "the random data went along: {report}"
        );
        goes_on_counting(&ms[2], "lvr", target, before, &boot).await;
        // Still running a while after the resume.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = sh(&ms[2], "lvr", "md5sum /mnt/mem/fill").await;
        assert_eq!(
            again, sum,
            "the data in memory changed on the way to {target}"
        );
        let r = ms[2].raw("GET", "/1.0/instances/lvr", None).await;
        assert_eq!(r.metadata()["status"], "Running", "{}", r.text);
    }
}
