//! Virtual machines in cluster evacuation and restore, driven with the `lxc` 5.0.2 client
//! on two real droverd members and real QEMU (TCG here, 128 MiB guests), for what
//! vm_live.rs leaves out.
//!
//! What does this test do?
//! - on m2: a running VM set to `cluster.evacuate=stop`, a running one set to `force-stop`
//!   and a stopped one (`auto`); `lxc cluster evacuate m2 --force` stops the first two in
//!   place (`lxc list` shows them STOPPED on m2) and moves the stopped one to m1, still
//!   stopped; the moved one is deleted while m2 is evacuated; `lxc cluster restore m2
//!   --force` starts the two stopped in place again (they answer an exec) and finishes
//!   although the third is gone: m2 is ONLINE, nothing is left half-done
//! - on m2 of three members: two running VMs (`auto`); the evacuation moves them live (the
//!   guest's uptime goes on); `lxc info` shows the new location, a PID and memory; `lxc
//!   restart` and `lxc stop` work there; the other is stopped, refused a move to the
//!   evacuated m2 with LXD's words, and moved by hand (`lxc move --target`) to the third
//!   member; `lxc cluster restore` brings the first home stopped (as the user left it) and
//!   leaves the hand-moved one where it is; a stopped VM then moves with `lxc move
//!   --target` and boots there
//! - with `{"action": "evacuate", "mode": "stop"}` every VM stays on m2, stopped, whatever
//!   its policy; a second evacuate and a second restore are refused with LXD's words;
//!   restore starts only the one that ran; with each VM's policy a running VM moves live,
//!   a stopped `live-migrate` one moves cold and stays stopped, a stopped `migrate` one
//!   with `boot.autostart=true` moves and starts; restore brings them home the same way
//! - the instance list through the target, polled while a VM moves live off the evacuated
//!   leader, always shows it once and `Running`: the listing once showed it ERROR when it
//!   asked the source for its instances just after the ownership switch (the source no
//!   longer listed it), and STOPPED when it asked the target between the switch and the
//!   target's adoption of the VM (it is now shown running from its resume); the guest's
//!   uptime goes on, and a VM deleted while its member is
//!   evacuated does not stop the restore
//!
//! Skipped, saying so, only when qemu-system-x86_64 is not installed. Members listen on
//! 127.0.65.1–127.0.65.9 (free ports).

use std::time::{Duration, Instant};

use drover_e2e::{
    KillVms, Member, import_busybox_vm, lxc_member_states, lxc_state_location, qemu_installed,
    wait_op,
};

/// How long a booted guest may take to answer an exec (TCG on a loaded machine).
const BOOT: Duration = Duration::from_secs(180);

/// Members on `ips` with the busybox-vm image on the first, and the guard that kills their
/// QEMUs; `None` (the test skipped, saying so) without QEMU.
async fn cluster(ips: &[&str]) -> Option<(Vec<Member>, KillVms)> {
    if !qemu_installed() {
        eprintln!("SKIPPED vm_sweep_s7: qemu-system-x86_64 is not installed");
        return None;
    }
    drover_e2e::require_lxc();
    let ms = drover_e2e::form_cluster(ips).await;
    let kill = KillVms::of(&ms);
    import_busybox_vm(&ms[0]).await;
    Some((ms, kill))
}

/// Waits until `lxc exec NAME -- true` succeeds through `m` (the guest runs).
async fn answers(m: &Member, name: &str) {
    let deadline = Instant::now() + BOOT;
    loop {
        let out = m.lxc(&["exec", name, "--", "true"]).await;
        if out.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never answered an exec: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_stopped_in_place_come_back_and_a_deleted_one_does_not_block_restore() {
    let Some((ms, _kill)) = cluster(&["127.0.65.1", "127.0.65.2"]).await else {
        return;
    };
    let m = &ms[0];
    let vm = ["--vm", "--target", "m2", "-c", "limits.memory=128MiB"];
    for (name, mode) in [("es1", "stop"), ("ef1", "force-stop")] {
        let cfg = format!("cluster.evacuate={mode}");
        m.lxc(
            &[
                &["launch", "busybox-vm", name][..],
                &vm[..],
                &["-c", &cfg][..],
            ]
            .concat(),
        )
        .await
        .success();
    }
    m.lxc(&[&["init", "busybox-vm", "ed1"][..], &vm[..]].concat())
        .await
        .success();
    for name in ["es1", "ef1"] {
        answers(m, name).await;
    }

    let out = m.lxc(&["cluster", "evacuate", "m2", "--force"]).await;
    eprintln!("evacuate: {}\n{}", out.stdout, out.stderr);
    out.success();
    let states = lxc_member_states(m).await;
    assert!(
        states.contains(&("m2".to_string(), "EVACUATED".to_string())),
        "{states:?}"
    );
    for name in ["es1", "ef1"] {
        assert_eq!(
            lxc_state_location(m, name).await,
            ("STOPPED".to_string(), "m2".to_string()),
            "{name}"
        );
        let out = m
            .lxc(&["config", "get", name, "volatile.evacuate.origin"])
            .await;
        eprintln!("{name} origin: {:?}", out.stdout);
    }
    assert_eq!(
        lxc_state_location(m, "ed1").await,
        ("STOPPED".to_string(), "m1".to_string())
    );
    let out = m
        .lxc(&["config", "get", "ed1", "volatile.evacuate.origin"])
        .await;
    assert_eq!(out.success().stdout.trim(), "m2");
    m.lxc(&["delete", "ed1"]).await.success();

    let out = m.lxc(&["cluster", "restore", "m2", "--force"]).await;
    eprintln!("restore: {}\n{}", out.stdout, out.stderr);
    out.success();
    let states = lxc_member_states(m).await;
    assert!(
        states.contains(&("m2".to_string(), "ONLINE".to_string())),
        "{states:?}"
    );
    for name in ["es1", "ef1"] {
        assert_eq!(
            lxc_state_location(m, name).await,
            ("RUNNING".to_string(), "m2".to_string()),
            "{name}"
        );
        answers(m, name).await;
        let out = m
            .lxc(&["config", "get", name, "volatile.evacuate.origin"])
            .await;
        assert_eq!(out.success().stdout.trim(), "", "{name}");
    }
    let out = m.lxc(&["list", "-f", "csv", "-c", "nsL"]).await;
    assert!(!out.success().stdout.contains("ed1"), "{}", out.stdout);
    for name in ["es1", "ef1"] {
        m.lxc(&["delete", "-f", name]).await.success();
    }
}

/// The guest's uptime in seconds, through `m`.
async fn uptime(m: &Member, name: &str) -> f64 {
    let out = m.lxc(&["exec", name, "--", "cat", "/proc/uptime"]).await;
    let text = &out.success().stdout;
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime of {name}: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_moved_live_by_an_evacuation_are_driven_where_they_went() {
    let Some((ms, _kill)) = cluster(&["127.0.65.3", "127.0.65.4", "127.0.65.5"]).await else {
        return;
    };
    let m = &ms[0];
    let vm = ["--vm", "--target", "m2", "-c", "limits.memory=128MiB"];
    for name in ["el1", "el2"] {
        m.lxc(&[&["launch", "busybox-vm", name][..], &vm[..]].concat())
            .await
            .success();
    }
    for name in ["el1", "el2"] {
        answers(m, name).await;
    }
    let up = uptime(m, "el1").await;

    let out = m.lxc(&["cluster", "evacuate", "m2", "--force"]).await;
    eprintln!("evacuate: {}\n{}", out.stdout, out.stderr);
    out.success();
    let (state, at1) = lxc_state_location(m, "el1").await;
    assert_eq!(state, "RUNNING");
    assert_ne!(at1, "m2");
    let (state, at2) = lxc_state_location(m, "el2").await;
    assert_eq!(state, "RUNNING");
    assert_ne!(at2, "m2");
    let later = uptime(m, "el1").await;
    assert!(later > up, "el1 rebooted on its way out: {up} then {later}");
    let info = m.lxc(&["info", "el1"]).await;
    let text = info.success().stdout.clone();
    eprintln!("{text}");
    assert!(text.contains(&format!("Location: {at1}")), "{text}");
    assert!(text.contains("Status: RUNNING"), "{text}");
    assert!(text.contains("PID: "), "{text}");
    assert!(text.contains("Memory usage:"), "{text}");
    m.lxc(&["restart", "el1"]).await.success();
    answers(m, "el1").await;
    assert!(uptime(m, "el1").await < later, "el1 was not restarted");
    m.lxc(&["stop", "el1"]).await.success();
    assert_eq!(
        lxc_state_location(m, "el1").await,
        ("STOPPED".to_string(), at1.clone())
    );

    m.lxc(&["stop", "el2"]).await.success();
    let out = m.lxc(&["move", "el2", "--target", "m2"]).await;
    let err = out.failure();
    assert!(
        err.contains("The destination cluster member is evacuated"),
        "{err}"
    );
    let third = if at2 == "m1" { "m3" } else { "m1" };
    m.lxc(&["move", "el2", "--target", third]).await.success();

    let out = m.lxc(&["cluster", "restore", "m2", "--force"]).await;
    eprintln!("restore: {}\n{}", out.stdout, out.stderr);
    out.success();
    assert_eq!(
        lxc_state_location(m, "el1").await,
        ("STOPPED".to_string(), "m2".to_string())
    );
    assert_eq!(
        lxc_state_location(m, "el2").await,
        ("STOPPED".to_string(), third.to_string())
    );
    for name in ["el1", "el2"] {
        let out = m
            .lxc(&["config", "get", name, "volatile.evacuate.origin"])
            .await;
        eprintln!("{name} origin after restore: {:?}", out.stdout);
    }

    m.lxc(&["move", "el1", "--target", "m3"]).await.success();
    m.lxc(&["start", "el1"]).await.success();
    assert_eq!(
        lxc_state_location(m, "el1").await,
        ("RUNNING".to_string(), "m3".to_string())
    );
    answers(m, "el1").await;
    for name in ["el1", "el2"] {
        m.lxc(&["delete", "-f", name]).await.success();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requested_mode_and_each_vms_policy_decide_where_it_ends() {
    let Some((ms, _kill)) = cluster(&["127.0.65.6", "127.0.65.7"]).await else {
        return;
    };
    let m = &ms[0];
    let vm = ["--vm", "--target", "m2", "-c", "limits.memory=128MiB"];
    m.lxc(&[&["launch", "busybox-vm", "xa1"][..], &vm[..]].concat())
        .await
        .success();
    let live = ["-c", "cluster.evacuate=live-migrate"];
    m.lxc(&[&["init", "busybox-vm", "xa2"][..], &vm[..], &live[..]].concat())
        .await
        .success();
    let auto = [
        "-c",
        "cluster.evacuate=migrate",
        "-c",
        "boot.autostart=true",
    ];
    m.lxc(&[&["init", "busybox-vm", "xa3"][..], &vm[..], &auto[..]].concat())
        .await
        .success();
    answers(m, "xa1").await;
    let all_on_m2 = |a: &str, b: &str, c: &str| {
        vec![
            format!("xa1,{a},m2"),
            format!("xa2,{b},m2"),
            format!("xa3,{c},m2"),
        ]
    };
    let list = async || {
        let out = m.lxc(&["list", "-f", "csv", "-c", "nsL"]).await;
        out.success()
            .stdout
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };

    // The request's mode overrides every VM's policy: all stay, stopped.
    let r = m
        .raw(
            "POST",
            "/1.0/cluster/members/m2/state",
            Some(r#"{"action": "evacuate", "mode": "stop"}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_op(m, r.metadata(), BOOT)
        .await
        .unwrap_or_else(|(e, _)| panic!("evacuate: {e}"));
    assert_eq!(list().await, all_on_m2("STOPPED", "STOPPED", "STOPPED"));
    let out = m.lxc(&["cluster", "evacuate", "m2", "--force"]).await;
    assert!(
        out.failure()
            .contains("Cluster member is already evacuated"),
        "{}",
        out.stderr
    );
    // Restore starts only the one that ran (not the stopped one set to autostart).
    m.lxc(&["cluster", "restore", "m2", "--force"])
        .await
        .success();
    assert_eq!(list().await, all_on_m2("RUNNING", "STOPPED", "STOPPED"));

    // Each VM's own policy: xa1 live, xa2 (stopped, live-migrate) cold and stays stopped,
    // xa3 (stopped, migrate, boot.autostart) moves and starts on m1.
    let out = m.lxc(&["cluster", "evacuate", "m2", "--force"]).await;
    eprintln!("evacuate: {}", out.stdout);
    out.success();
    assert_eq!(
        list().await,
        vec!["xa1,RUNNING,m1", "xa2,STOPPED,m1", "xa3,RUNNING,m1"]
    );
    for name in ["xa1", "xa2", "xa3"] {
        let out = m
            .lxc(&["config", "get", name, "volatile.evacuate.origin"])
            .await;
        assert_eq!(out.success().stdout.trim(), "m2", "{name}");
    }
    answers(m, "xa3").await;
    let out = m.lxc(&["cluster", "restore", "m2", "--force"]).await;
    eprintln!("restore: {}", out.stdout);
    out.success();
    assert_eq!(list().await, all_on_m2("RUNNING", "STOPPED", "RUNNING"));
    for name in ["xa1", "xa3"] {
        answers(m, name).await;
    }
    let out = m.lxc(&["cluster", "restore", "m2", "--force"]).await;
    assert!(
        out.failure().contains("Cluster member is already restored"),
        "{}",
        out.stderr
    );
    for name in ["xa1", "xa2", "xa3"] {
        m.lxc(&["delete", "-f", name]).await.success();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_moving_live_is_always_listed_running() {
    let Some((ms, _kill)) = cluster(&["127.0.65.8", "127.0.65.9"]).await else {
        return;
    };
    let (m1, m2) = (&ms[0], &ms[1]);
    let vm = ["--vm", "--target", "m1", "-c", "limits.memory=128MiB"];
    m1.lxc(&[&["launch", "busybox-vm", "ly1"][..], &vm[..]].concat())
        .await
        .success();
    answers(m1, "ly1").await;
    let up = uptime(m1, "ly1").await;

    // What the 5.0.2 client sends; m1 leads Raft and hands leadership over first.
    let r = m1
        .raw(
            "POST",
            "/1.0/cluster/members/m1/state",
            Some(r#"{"action": "evacuate", "mode": ""}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Asked as often as possible (the window is a few milliseconds around the switch).
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + BOOT;
    loop {
        let r = m2.raw("GET", "/1.0/instances?recursion=1", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let list: serde_json::Value = serde_json::from_str(&r.text).expect("json");
        let rows: Vec<String> = list["metadata"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|i| format!("{},{},{}", i["name"], i["status"], i["location"]))
            .collect();
        let done = rows == [r#""ly1","Running","m2""#];
        seen.insert(rows.join(" "));
        if done
            && lxc_member_states(m2)
                .await
                .contains(&("m1".to_string(), "EVACUATED".to_string()))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never evacuated: {seen:?}");
    }
    assert!(
        seen.iter()
            .all(|l| l.starts_with(r#""ly1","Running","#) && !l.contains(' ')),
        "the list during the live move: {seen:?}"
    );
    assert!(uptime(m2, "ly1").await > up, "ly1 rebooted on its way out");

    m2.lxc(&["delete", "-f", "ly1"]).await.success();
    m2.lxc(&["cluster", "restore", "m1", "--force"])
        .await
        .success();
    let states = lxc_member_states(m2).await;
    assert!(
        states.contains(&("m1".to_string(), "ONLINE".to_string())),
        "{states:?}"
    );
    let out = m2.lxc(&["list", "-f", "csv", "-c", "n"]).await;
    assert_eq!(out.success().stdout.trim(), "");
}
