//! Virtual machines driven the way an LXD user drives them, with the `lxc` 5.0.2 client on
//! real droverd members and real QEMU (TCG here, 128 MiB guests), for what the other VM
//! tests leave out.
//!
//! What does this test do?
//! - `lxc copy` of a stopped VM makes a second VM that boots from its own copy of the disk
//!   (its hostname is the copy's name); `lxc file pull` from it says to use `lxc exec`
//!   instead of claiming its agent does not run; a renamed VM (`lxc move sv1 sv1b`) keeps
//!   its console log; `lxc delete -f` of the running copy and `lxc delete` of the original
//!   leave no runtime files, so a new VM of the same name shows an empty console log, not
//!   the deleted one's
//! - a VM asking for more vCPUs or memory than its member has is refused before anything is
//!   created; a start QEMU refuses shows QEMU's words in `lxc info --show-log`;
//!   `security.secureboot=false` is accepted
//! - `lxc stop -f` ends a clean stop that waits for a guest ignoring the power button
//!
//! Skipped, saying so, only when qemu-system-x86_64 is not installed.

use std::time::{Duration, Instant};

use drover_e2e::{KillVms, Member, import_busybox_vm, qemu_installed};

/// How long a booted guest may take to answer an exec (TCG on a loaded machine).
const BOOT: Duration = Duration::from_secs(120);

/// Waits until `lxc exec NAME -- hostname` answers (the guest booted); what it printed.
async fn hostname(m: &Member, name: &str) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let out = m.lxc(&["exec", name, "--", "hostname"]).await;
        if out.code == 0 {
            return out.stdout.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never answered an exec: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `lxc list -f csv -c nst` rows.
async fn rows(m: &Member) -> Vec<String> {
    let out = m.lxc(&["list", "-f", "csv", "-c", "nst"]).await;
    out.success().stdout.lines().map(str::to_string).collect()
}

/// A member with the busybox-vm image, and the guard that kills its QEMUs; `None` (the
/// test skipped, saying so) without QEMU.
async fn member() -> Option<(Member, KillVms)> {
    if !qemu_installed() {
        eprintln!("SKIPPED vm_sweep_s6: qemu-system-x86_64 is not installed");
        return None;
    }
    drover_e2e::require_lxc();
    let m = Member::start().await;
    let kill = KillVms::of(std::slice::from_ref(&m));
    import_busybox_vm(&m).await;
    Some((m, kill))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_vm_copies_and_a_deleted_one_leaves_no_console_behind() {
    let Some((m, _kill)) = member().await else {
        return;
    };
    let vm = ["--vm", "-c", "limits.memory=128MiB"];

    m.lxc(&[&["launch", "busybox-vm", "sv1"][..], &vm[..]].concat())
        .await
        .success();
    assert_eq!(hostname(&m, "sv1").await, "sv1");
    m.lxc(&["stop", "sv1"]).await.success();

    // The copy: LXD copies a stopped VM; it boots from its own disk under its own name.
    m.lxc(&["copy", "sv1", "sv2"]).await.success();
    assert!(
        rows(&m)
            .await
            .contains(&"sv2,STOPPED,VIRTUAL-MACHINE".to_string()),
        "{:?}",
        rows(&m).await
    );
    m.lxc(&["start", "sv2"]).await.success();
    assert_eq!(hostname(&m, "sv2").await, "sv2");
    // Its agent runs (exec works): the files API must not say it does not.
    let out = m.lxc(&["file", "pull", "sv2/etc/hostname", "-"]).await;
    let err = out.failure();
    assert!(
        err.contains("use lxc exec") && !err.contains("isn't currently running"),
        "{err}"
    );
    let log = m.lxc(&["console", "sv2", "--show-log"]).await;
    assert!(
        log.success().stdout.contains("DROVER-VM-READY"),
        "{}",
        log.stdout
    );

    // A renamed VM keeps its console log, as in LXD.
    m.lxc(&["move", "sv1", "sv1b"]).await.success();
    let log = m.lxc(&["console", "sv1b", "--show-log"]).await;
    assert!(
        log.success().stdout.contains("DROVER-VM-READY"),
        "the renamed VM lost its console log: {}",
        log.stdout
    );

    // Deleting (the running copy by force, the stopped original) leaves no VM files.
    m.lxc(&["delete", "-f", "sv2"]).await.success();
    m.lxc(&["delete", "sv1b"]).await.success();
    let vms = m.state_dir().join("vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime files left in {vms:?}: {left:?}");

    // A new, never started VM of a deleted one's name has no console output yet.
    m.lxc(&[&["init", "busybox-vm", "sv2"][..], &vm[..]].concat())
        .await
        .success();
    let log = m.lxc(&["console", "sv2", "--show-log"]).await;
    assert!(
        !log.stdout.contains("DROVER-VM-READY"),
        "a new VM shows the deleted one's console: {}",
        log.stdout
    );
    m.lxc(&["delete", "sv2"]).await.success();
}

/// What does this test do?
///
/// `lxc launch busybox-vm bx --vm` with more vCPUs than the member has, or memory outside
/// what a VM can have, fails with a clear `Error:` and creates nothing (no instance, no
/// volume): before, a VM with `limits.cpu=500` was created and only its start failed
/// (QEMU's "Invalid SMP CPUs"), leaving a stopped instance behind. A start QEMU refuses
/// (`limits.cpu=500` set later) points to `lxc info --show-log`, which shows QEMU's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_larger_than_its_member_is_refused_before_anything_is_created() {
    let Some((m, _kill)) = member().await else {
        return;
    };
    for (limit, why) in [
        (
            "limits.cpu=500",
            "limits.cpu 500 is more than this member has",
        ),
        (
            "limits.memory=1PiB",
            "limits.memory 1PiB is more than this member has",
        ),
        (
            "limits.memory=64MiB",
            "limits.memory 64MiB is too small for a virtual machine",
        ),
    ] {
        let out = m
            .lxc(&["launch", "busybox-vm", "bx", "--vm", "-c", limit])
            .await;
        let err = out.failure();
        assert!(err.contains(&format!("Error: {why}")), "{limit}: {err}");
        assert!(rows(&m).await.is_empty(), "{limit}: {:?}", rows(&m).await);
        assert!(
            m.volume_entries().iter().all(|v| !v.contains("bx")),
            "{limit}: a volume was left: {:?}",
            m.volume_entries()
        );
    }

    // A start QEMU refuses: `lxc` says to look at `lxc info --show-log`, which shows why
    // (LXD's `qemu.log` of a VM). `security.secureboot=false`, which LXD VM recipes set,
    // is accepted.
    m.lxc(&[
        "init",
        "busybox-vm",
        "bx",
        "--vm",
        "-c",
        "limits.memory=128MiB",
        "-c",
        "security.secureboot=false",
    ])
    .await
    .success();
    m.lxc(&["config", "set", "bx", "limits.cpu=500"])
        .await
        .success();
    let err = m.lxc(&["start", "bx"]).await.failure().to_string();
    assert!(err.contains("lxc info --show-log"), "{err}");
    let out = m.lxc(&["info", "bx", "--show-log"]).await;
    assert!(
        out.success().stdout.contains("Invalid SMP CPUs 500"),
        "{}",
        out.stdout
    );
    let logs = m.raw("GET", "/1.0/instances/bx/logs", None).await;
    assert_eq!(
        logs.body["metadata"],
        serde_json::json!(["/1.0/instances/bx/logs/qemu.log"])
    );
    m.lxc(&["delete", "bx"]).await.success();
}

/// What does this test do?
///
/// A VM whose guest ignores the power button (its watcher killed): `lxc stop --timeout 2`
/// fails with LXD's message and the VM runs on. Then asked to stop cleanly
/// (`lxc stop`, `boot.host_shutdown_timeout=60`); while that stop waits, `lxc stop -f`
/// ends the VM at once, as LXD's force stop interrupts a pending shutdown, and both
/// commands succeed. Before, the force stop queued behind the clean stop for the whole
/// timeout and then failed with "The instance is already stopped".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_stop_cuts_a_pending_clean_stop_short() {
    let Some((m, _kill)) = member().await else {
        return;
    };
    m.lxc(&[
        "launch",
        "busybox-vm",
        "fs1",
        "--vm",
        "-c",
        "limits.memory=128MiB",
        "-c",
        "boot.host_shutdown_timeout=60",
    ])
    .await
    .success();
    assert_eq!(hostname(&m, "fs1").await, "fs1");
    // The guest powers off when a `dd` reading the power button returns: without it, the
    // button does nothing.
    m.lxc(&["exec", "fs1", "--", "sh", "-c", "kill $(pidof dd)"])
        .await
        .success();
    // A clean stop given a timeout gives up, as LXD's does, and the VM runs on.
    let err = m
        .lxc(&["stop", "fs1", "--timeout", "2"])
        .await
        .failure()
        .to_string();
    assert!(
        err.contains(
            r#"Failed shutting down instance, status is "Running": context deadline exceeded"#
        ),
        "{err}"
    );
    assert!(
        rows(&m)
            .await
            .contains(&"fs1,RUNNING,VIRTUAL-MACHINE".to_string())
    );
    let clean = m
        .lxc_command(&["stop", "fs1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn lxc stop");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    m.lxc(&["stop", "-f", "fs1"]).await.success();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(15), "lxc stop -f took {took:?}");
    let out = tokio::time::timeout(Duration::from_secs(15), clean.wait_with_output())
        .await
        .expect("the clean stop ends with the force stop")
        .expect("lxc stop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rows(&m)
            .await
            .contains(&"fs1,STOPPED,VIRTUAL-MACHINE".to_string())
    );
    m.lxc(&["delete", "fs1"]).await.success();
}
