//! A black-box sweep of evacuation and everyday `lxc` 5.0.2 commands against three real
//! droverd members formed through the API (tokens, `PUT /1.0/cluster`), for what a
//! side-by-side run against a real LXD 5.0.2 cluster found answering differently. Instance
//! names start with `s7`.
//!
//! Members listen on 127.0.62.1–16 (free ports).

use drover_e2e::{Member, form_cluster, lxc_member_states, lxc_state_location as row};

/// `lxc cluster evacuate|restore MEMBER --force` through `via` succeeds.
async fn job(via: &Member, action: &str, member: &str) {
    via.lxc(&["cluster", action, member, "--force"])
        .await
        .success();
}

/// `lxc config get NAME KEY` through `m`.
async fn config_get(m: &Member, name: &str, key: &str) -> String {
    let out = m.lxc(&["config", "get", name, key]).await;
    out.success().stdout.trim().to_string()
}

/// What does this test do?
///
/// Three members; `s7a` (running, `cluster.evacuate=stop`, `boot.autostart=true`, a file
/// written in it) on m1, `s7d` (stopped, `boot.autostart=true`) on m2.
/// - `lxc cluster evacuate m1 --force`: `s7a` is stopped in place on the EVACUATED m1
/// - `lxc copy s7a s7b` (through m1 itself) makes the copy on another member, as LXD's
///   scheduler does, and `lxc copy s7a s7c --target m3` makes it on m3: both STOPPED
///   (LXD never starts a copy, `boot.autostart` or not), with the file, without the
///   source's `volatile.last_state.power`, and nothing of them is left on m1 (drover
///   refused both with `Cluster member is evacuated`)
/// - `lxc copy s7d s7e --target m3` of a stopped `boot.autostart=true` instance: the copy
///   is STOPPED on m3 (drover started it there)
/// - `lxc cluster restore m1 --force`: `s7a` runs on m1 again; the copies stay where they
///   are, stopped
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_left_on_an_evacuated_member_is_copied_elsewhere_stopped() {
    drover_e2e::require_lxc();
    let ms = form_cluster(&["127.0.62.1", "127.0.62.2", "127.0.62.3"]).await;
    let (m1, m2, m3) = (&ms[0], &ms[1], &ms[2]);
    m1.import_busybox().await;
    for (name, target) in [("s7a", "m1"), ("s7d", "m2")] {
        m1.lxc(&[
            "launch",
            "busybox",
            name,
            "--target",
            target,
            "-c",
            "cluster.evacuate=stop",
            "-c",
            "boot.autostart=true",
        ])
        .await
        .success();
    }
    m2.lxc(&["exec", "s7a", "--", "sh", "-c", "echo kept > /root/mark"])
        .await
        .success();
    m2.lxc(&["stop", "s7d"]).await.success();

    tracing::info!("--- evacuate m1: s7a stays there, stopped");
    job(m2, "evacuate", "m1").await;
    assert!(
        lxc_member_states(m3)
            .await
            .contains(&("m1".to_string(), "EVACUATED".to_string()))
    );
    assert_eq!(row(m2, "s7a").await, ("STOPPED".into(), "m1".into()));

    tracing::info!("--- copies of s7a, made away from the evacuated m1, stay stopped");
    m1.lxc(&["copy", "s7a", "s7b"]).await.success();
    m2.lxc(&["copy", "s7a", "s7c", "--target", "m3"])
        .await
        .success();
    let (state, at) = row(m3, "s7b").await;
    assert_eq!(state, "STOPPED");
    assert!(at == "m2" || at == "m3", "s7b on {at}");
    assert_eq!(row(m3, "s7c").await, ("STOPPED".into(), "m3".into()));
    for copy in ["s7b", "s7c"] {
        assert_eq!(config_get(m1, copy, "volatile.last_state.power").await, "");
        assert_eq!(config_get(m1, copy, "volatile.evacuate.origin").await, "");
    }
    assert_eq!(m1.volume_entries(), vec!["default_s7a".to_string()]);
    assert_eq!(row(m2, "s7a").await, ("STOPPED".into(), "m1".into()));

    tracing::info!("--- a copy of a stopped autostart instance onto another member is stopped");
    m1.lxc(&["copy", "s7d", "s7e", "--target", "m3"])
        .await
        .success();
    assert_eq!(row(m1, "s7e").await, ("STOPPED".into(), "m3".into()));

    tracing::info!("--- restore m1: s7a runs there again, the copies stay");
    job(m3, "restore", "m1").await;
    assert_eq!(row(m2, "s7a").await, ("RUNNING".into(), "m1".into()));
    assert_eq!(row(m2, "s7b").await.0, "STOPPED");
    assert_eq!(row(m2, "s7c").await, ("STOPPED".into(), "m3".into()));
    m1.lxc(&["start", "s7c"]).await.success();
    let out = m1.lxc(&["exec", "s7c", "--", "cat", "/root/mark"]).await;
    assert_eq!(out.success().stdout.trim(), "kept");
    m1.lxc(&["delete", "-f", "s7a", "s7b", "s7c", "s7d", "s7e"])
        .await
        .success();
}

/// What does this test do?
///
/// Three members; `s7h` runs on m1.
/// - `lxc cluster evacuate m1 --force` moves it to X; the operator stops it, moves it to
///   the third member Y (`lxc move --target`) and starts it there
/// - `lxc cluster restore m1 --force` leaves it on Y, running (moved by hand since the
///   evacuation), and its `volatile.evacuate.origin` is gone: m1 is back and nothing is
///   away from it any more
/// - evacuating and restoring m1 again, an evacuation that never touched `s7h`, leaves it
///   on Y (drover kept the origin and the second restore pulled it onto m1)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_moved_by_hand_after_an_evacuation_stays_for_good() {
    drover_e2e::require_lxc();
    let ms = form_cluster(&["127.0.62.4", "127.0.62.5", "127.0.62.6"]).await;
    let (m1, m2) = (&ms[0], &ms[1]);
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "s7h", "--target", "m1"])
        .await
        .success();

    job(m2, "evacuate", "m1").await;
    let (state, x) = row(m2, "s7h").await;
    assert_eq!(state, "RUNNING");
    assert_ne!(x, "m1");
    assert_eq!(
        config_get(m2, "s7h", "volatile.evacuate.origin").await,
        "m1"
    );
    let y = if x == "m2" { "m3" } else { "m2" };
    m2.lxc(&["stop", "s7h"]).await.success();
    m2.lxc(&["move", "s7h", "--target", y]).await.success();
    m2.lxc(&["start", "s7h"]).await.success();

    tracing::info!("--- restore: s7h stays on {y}, its origin gone");
    job(m2, "restore", "m1").await;
    assert_eq!(row(m1, "s7h").await, ("RUNNING".into(), y.to_string()));
    assert_eq!(config_get(m1, "s7h", "volatile.evacuate.origin").await, "");

    tracing::info!("--- another evacuation and restore of m1 leave s7h alone");
    job(m2, "evacuate", "m1").await;
    job(m2, "restore", "m1").await;
    assert_eq!(row(m1, "s7h").await, ("RUNNING".into(), y.to_string()));
    m1.lxc(&["delete", "-f", "s7h"]).await.success();
}

/// What does this test do?
///
/// On one member, refusals print LXD 5.0.2's words (seen on a real LXD 5.0.2 cluster):
/// - `lxc profile show nope` and `lxc profile set nope ...`: `Fetch profile: Profile not
///   found`
/// - `lxc launch busybox 1s7`: `Invalid instance name: Name must not start with a
///   number` (checked before the character set: `1s7_x` says the same), and nothing is
///   created
/// - a bad `cluster.evacuate` (`lxc config set`, `lxc profile set`), boolean, integer or
///   `limits.cpu` is refused in LXD's words (`Invalid value "bogus" (not one of [auto
///   migrate live-migrate stop force-stop])`, drover's `force-stop` added) and changes
///   nothing
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_print_lxd_words() {
    drover_e2e::require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    for args in [
        &["profile", "show", "nope"][..],
        &["profile", "set", "nope", "user.a", "b"],
    ] {
        let out = m.lxc(args).await;
        assert!(
            out.failure()
                .lines()
                .any(|l| l == "Error: Fetch profile: Profile not found"),
            "{args:?}: {}",
            out.stderr
        );
    }
    for name in ["1s7", "1s7_x"] {
        let out = m.lxc(&["launch", "busybox", name]).await;
        assert!(
            out.failure()
                .contains("Error: Invalid instance name: Name must not start with a number"),
            "{name}: {}",
            out.stderr
        );
    }
    let out = m.lxc(&["list", "-f", "csv", "-c", "n"]).await;
    assert_eq!(out.success().stdout, "");

    tracing::info!("--- bad values of cluster.evacuate and typed keys, in LXD's words");
    m.lxc(&["init", "busybox", "s7v"]).await.success();
    m.lxc(&["profile", "create", "s7p"]).await.success();
    let evacuate =
        r#"Invalid value "bogus" (not one of [auto migrate live-migrate stop force-stop])"#;
    for (args, want) in [
        (
            &["config", "set", "s7v", "cluster.evacuate", "bogus"][..],
            format!("Error: Invalid config: {evacuate}"),
        ),
        (
            &["profile", "set", "s7p", "cluster.evacuate", "bogus"],
            format!("Error: {evacuate}"),
        ),
        (
            &["config", "set", "s7v", "boot.autostart", "maybe"],
            r#"Error: Invalid config: Invalid value for a boolean "maybe""#.to_string(),
        ),
        (
            &["config", "set", "s7v", "boot.host_shutdown_timeout", "soon"],
            r#"Error: Invalid config: Invalid value for an integer "soon""#.to_string(),
        ),
        (
            &["config", "set", "s7v", "limits.cpu", "x"],
            "Error: Invalid config: Invalid CPU limit syntax".to_string(),
        ),
    ] {
        let out = m.lxc(args).await;
        assert!(
            out.failure().lines().any(|l| l == want),
            "{args:?}: want {want}, got {}",
            out.stderr
        );
    }
    assert_eq!(config_get(&m, "s7v", "cluster.evacuate").await, "");
    m.lxc(&["delete", "s7v"]).await.success();
}

/// One change of [`member_group_and_server_changes_are_lifecycle_events`]: the `lxc`
/// arguments, the event's action and source, and a key of its context with its value.
type Step<'a> = (&'a [&'a str], &'a str, &'a str, Option<(&'a str, &'a str)>);

/// What does this test do?
///
/// Two members; a lifecycle event stream on m1. Changes through m1 are told as LXD 5.0.2
/// tells them (drover sent nothing for any of them):
/// - `lxc cluster set m2 scheduler.instance manual` and `lxc cluster unset`:
///   `cluster-member-updated` of `/1.0/cluster/members/m2`
/// - `lxc cluster group create s7g`: `cluster-group-created`; `lxc cluster group edit`:
///   `cluster-group-updated` with the group as context; `lxc cluster group rename s7g
///   s7g2`: `cluster-group-renamed` of the new name with `old_name`
/// - `lxc config set user.s7 x` (a server key): `config-updated` of `/1.0`
/// - `lxc cluster add m9`: `cluster-token-created` of `/1.0/cluster/members`; `lxc
///   cluster revoke-token m9`: `operation-cancelled` of the token's operation
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_group_and_server_changes_are_lifecycle_events() {
    use futures::StreamExt;
    drover_e2e::require_lxc();
    let ms = form_cluster(&["127.0.62.7", "127.0.62.8"]).await;
    let m1 = &ms[0];
    let mut events = m1.client().events(&["lifecycle"]).await.expect("events");
    let steps: [Step<'_>; 8] = [
        (
            &["cluster", "set", "m2", "scheduler.instance", "manual"],
            "cluster-member-updated",
            "/1.0/cluster/members/m2",
            None,
        ),
        (
            &["cluster", "unset", "m2", "scheduler.instance"],
            "cluster-member-updated",
            "/1.0/cluster/members/m2",
            None,
        ),
        (
            &["cluster", "group", "create", "s7g"],
            "cluster-group-created",
            "/1.0/cluster/groups/s7g",
            None,
        ),
        (
            &[
                "query",
                "-X",
                "PATCH",
                "/1.0/cluster/groups/s7g",
                "--data",
                r#"{"description": "edge"}"#,
            ],
            "cluster-group-updated",
            "/1.0/cluster/groups/s7g",
            Some(("description", "edge")),
        ),
        (
            &["cluster", "group", "rename", "s7g", "s7g2"],
            "cluster-group-renamed",
            "/1.0/cluster/groups/s7g2",
            Some(("old_name", "s7g")),
        ),
        (
            &["config", "set", "user.s7", "x"],
            "config-updated",
            "/1.0",
            None,
        ),
        (
            &["cluster", "add", "m9"],
            "cluster-token-created",
            "/1.0/cluster/members",
            None,
        ),
        (
            &["cluster", "revoke-token", "m9"],
            "operation-cancelled",
            "/1.0/operations/",
            None,
        ),
    ];
    for (args, action, source, context) in steps {
        m1.lxc(args).await.success();
        let ev = drover_e2e::within(action, std::time::Duration::from_secs(30), async {
            while let Some(ev) = events.next().await {
                let ev = ev.expect("event");
                // A source ending in `/` names a collection: any item of it matches.
                let at = ev.metadata["source"].as_str().unwrap_or_default();
                let matches = if source.ends_with('/') {
                    at.starts_with(source)
                } else {
                    at == source
                };
                if ev.metadata["action"] == action && matches {
                    return ev;
                }
            }
            panic!("the event stream ended");
        })
        .await;
        if let Some((key, value)) = context {
            assert_eq!(
                ev.metadata["context"][key], value,
                "{action}: {:?}",
                ev.metadata
            );
        }
    }
}

/// What does this test do?
///
/// Three members; `s7r` runs on m3.
/// - `lxc cluster evacuate m3` moves it to X (its origin: m3); the empty, evacuated m3 is
///   removed for good (`lxc cluster remove m3`)
/// - `lxc cluster evacuate X` moves it to the last member Y, and records X as its origin
///   (drover kept the origin of the removed m3)
/// - `lxc cluster restore X` brings it home to X, running, its origin cleared (drover
///   left it on Y, and the restore did not even list it)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_from_a_removed_member_comes_home_to_its_new_member() {
    drover_e2e::require_lxc();
    let ms = form_cluster(&["127.0.62.11", "127.0.62.12", "127.0.62.13"]).await;
    let m1 = &ms[0];
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "s7r", "--target", "m3"])
        .await
        .success();
    job(m1, "evacuate", "m3").await;
    let (state, x) = row(m1, "s7r").await;
    assert_eq!(state, "RUNNING");
    assert_ne!(x, "m3");
    assert_eq!(
        config_get(m1, "s7r", "volatile.evacuate.origin").await,
        "m3"
    );
    m1.lxc(&["cluster", "remove", "m3"]).await.success();
    let y = if x == "m1" { "m2" } else { "m1" };

    tracing::info!("--- evacuate {x}: s7r goes to {y}, from {x}");
    job(m1, "evacuate", &x).await;
    assert_eq!(row(m1, "s7r").await, ("RUNNING".into(), y.to_string()));
    assert_eq!(config_get(m1, "s7r", "volatile.evacuate.origin").await, x);

    tracing::info!("--- restore {x}: s7r comes home");
    job(m1, "restore", &x).await;
    assert_eq!(row(m1, "s7r").await, ("RUNNING".into(), x.clone()));
    assert_eq!(config_get(m1, "s7r", "volatile.evacuate.origin").await, "");
    m1.lxc(&["delete", "-f", "s7r"]).await.success();
}

/// What does this test do?
///
/// Three members; `s7k` runs on m1.
/// - `lxc cluster evacuate m1` moves it to X (its origin: m1); m1 is restored with mode
///   `skip` (the API; `lxc` 5.0.2 cannot send a mode): ONLINE, `s7k` stays on X with its
///   origin m1, as EVACUATION.md says
/// - `lxc cluster evacuate X` moves `s7k` on and records X as its origin (drover kept m1,
///   a member back in service)
/// - `lxc cluster restore X` brings it home to X (drover left it where X's evacuation put
///   it, and the restore did not list it)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_kept_away_by_a_skipped_restore_comes_home_to_its_new_member() {
    drover_e2e::require_lxc();
    let ms = form_cluster(&["127.0.62.14", "127.0.62.15", "127.0.62.16"]).await;
    let m1 = &ms[0];
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "s7k", "--target", "m1"])
        .await
        .success();
    job(m1, "evacuate", "m1").await;
    let (_, x) = row(m1, "s7k").await;
    assert_ne!(x, "m1");
    let body = serde_json::json!({"action": "restore", "mode": "skip"});
    let op = drover_e2e::post_member_state(m1, "m1", &body).await;
    drover_e2e::wait_op(m1, &op, std::time::Duration::from_secs(60))
        .await
        .expect("restore with skip");
    assert!(
        lxc_member_states(m1)
            .await
            .contains(&("m1".to_string(), "ONLINE".to_string()))
    );
    assert_eq!(row(m1, "s7k").await, ("RUNNING".into(), x.clone()));
    assert_eq!(
        config_get(m1, "s7k", "volatile.evacuate.origin").await,
        "m1"
    );

    tracing::info!("--- evacuate {x}, then restore it: s7k comes home to {x}");
    job(m1, "evacuate", &x).await;
    let (state, y) = row(m1, "s7k").await;
    assert_eq!(state, "RUNNING");
    assert_ne!(y, x);
    assert_eq!(config_get(m1, "s7k", "volatile.evacuate.origin").await, x);
    job(m1, "restore", &x).await;
    assert_eq!(row(m1, "s7k").await, ("RUNNING".into(), x.clone()));
    assert_eq!(config_get(m1, "s7k", "volatile.evacuate.origin").await, "");
    m1.lxc(&["delete", "-f", "s7k"]).await.success();
}

/// What does this test do?
///
/// Two members, formed and at once a lifecycle event stream opened on m2; `lxc cluster set
/// m2 user.s7 yes` through m1 right away is seen on m2's stream (`cluster-member-updated`
/// of m1): a listener sees the whole cluster from the moment it is connected (drover lost
/// the events of m1 while m2 did not relay them yet, just after the join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_right_after_a_join_sees_the_other_members_events() {
    use futures::StreamExt;
    drover_e2e::require_lxc();
    let ms = form_cluster(&["127.0.62.9", "127.0.62.10"]).await;
    let (m1, m2) = (&ms[0], &ms[1]);
    let mut events = m2.client().events(&["lifecycle"]).await.expect("events");
    m1.lxc(&["cluster", "set", "m2", "user.s7", "yes"])
        .await
        .success();
    let ev = drover_e2e::within(
        "cluster-member-updated on m2",
        std::time::Duration::from_secs(30),
        async {
            while let Some(ev) = events.next().await {
                let ev = ev.expect("event");
                if ev.metadata["action"] == "cluster-member-updated" {
                    return ev;
                }
            }
            panic!("the event stream ended");
        },
    )
    .await;
    assert_eq!(ev.location, "m1", "{ev:?}");
}
