//! Evacuating and restoring a member (`POST /1.0/cluster/members/{name}/state`), LXD's
//! evacuation test matrix on three real members with real containers.
//!
//! Members listen on 127.0.0.80–89 (free ports; the last test puts three on .89).

use std::collections::BTreeMap;
use std::time::Duration;

use drover_e2e::{
    Member, busybox_request, create_on, form_cluster, instance_list, local_pool, member_status,
    plan_of, post_member_state, require_lxc, wait_op, wait_until, within,
};
use serde_json::{Value, json};

/// How long an evacuation or restore of a handful of containers may take.
const JOB: Duration = Duration::from_secs(300);

/// Evacuates or restores and waits for the outcome.
async fn member_state(m: &Member, member: &str, body: Value) -> Result<Value, (String, Value)> {
    let op = post_member_state(m, member, &body).await;
    wait_op(m, &op, JOB).await
}

/// Every instance: name → (location, status, config).
async fn instances(m: &Member) -> BTreeMap<String, (String, String, Value)> {
    instance_list(m)
        .await
        .into_iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                (
                    v["location"].as_str().unwrap_or_default().to_string(),
                    v["status"].as_str().unwrap_or_default().to_string(),
                    v["config"].clone(),
                ),
            )
        })
        .collect()
}

/// Reads `events` until the lifecycle event `action` of member `member` arrives.
async fn member_event(events: &mut client::EventStream, action: &str, member: &str) {
    use futures::StreamExt;
    let source = format!("/1.0/cluster/members/{member}");
    within(action, Duration::from_secs(30), async {
        while let Some(ev) = events.next().await {
            let ev = ev.expect("event");
            if ev.metadata["action"] == action && ev.metadata["source"] == source.as_str() {
                return;
            }
        }
        panic!("the event stream ended before {action}");
    })
    .await;
}

fn where_is(all: &BTreeMap<String, (String, String, Value)>, name: &str) -> (String, String) {
    let (loc, status, _) = all
        .get(name)
        .unwrap_or_else(|| panic!("{name} listed: {all:?}"));
    (loc.clone(), status.clone())
}

/// What does this test do?
/// - forms a three-member cluster with two member-local `dir` pools (`local`, `pool2`) and
///   a `shared-fs` pool (`shared`); a
///   cluster group `g3` whose only member is m3
/// - on m1: `auto-run` (default policy, shared-fs, running), `auto-dir` (default, dir,
///   stopped), `mig-run` (`migrate`, second dir pool, running), `stop-run` (`stop`,
///   running), `grp` (placed in `g3`, shared-fs, running); on m2: `other` (running)
/// - a bogus action and a bogus mode are 400 and change nothing; a dry run returns the plan
///   and changes nothing
/// - evacuates m1 (the Raft leader) as `lxc` 5.0.2 asks (`mode: ""`): progress says LXD's
///   strings, every placement and state is as planned, `stop-run` stopped in place, m1
///   `Evacuated` and no longer the leader
/// - a second evacuation fails with `Cluster member is already evacuated`; creating on m1
///   and moving onto it are refused
/// - restore with `skip`: m1 is Online again, nothing moved, origins kept
/// - evacuates again, then a full restore brings everything home, `stop-run` running
///   again, origins cleared; a second restore fails with `Cluster member is already restored`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_and_restore_matrix() {
    let disks = tempfile::tempdir().expect("disks");
    let ms = form_cluster(&["127.0.0.80", "127.0.0.81", "127.0.0.82"]).await;
    let (m1, m2, m3) = (&ms[0], &ms[1], &ms[2]);
    m1.import_busybox().await;
    local_pool(&ms, disks.path(), "local").await;
    local_pool(&ms, disks.path(), "pool2").await;
    let shared = disks.path().join("shared");
    let body = json!({"name": "shared", "driver": "shared-fs",
        "config": {"source": shared.display().to_string()}});
    let r = m1
        .raw("POST", "/1.0/storage-pools", Some(&body.to_string()))
        .await;
    assert!(r.status < 300, "create the shared-fs pool: {}", r.text);
    let r = m1
        .raw(
            "POST",
            "/1.0/cluster/groups",
            Some(&json!({"name": "g3", "description": "", "members": ["m3"]}).to_string()),
        )
        .await;
    assert!(r.status < 300, "create group g3: {}", r.text);

    tracing::info!("--- instances on m1 (and one on m2)");
    create_on(m1, "m1", "auto-run", "shared", &[], true).await;
    create_on(m1, "m1", "auto-dir", "local", &[], true).await;
    create_on(
        m1,
        "m1",
        "mig-run",
        "pool2",
        &[("cluster.evacuate", "migrate")],
        true,
    )
    .await;
    create_on(
        m1,
        "m1",
        "stop-run",
        "local",
        &[("cluster.evacuate", "stop")],
        true,
    )
    .await;
    create_on(
        m1,
        "m1",
        "grp",
        "shared",
        &[("volatile.cluster.group", "g3")],
        true,
    )
    .await;
    create_on(m1, "m2", "other", "local", &[], true).await;
    m1.change_state("auto-dir", "stop", true)
        .await
        .expect("stop auto-dir");
    let before = instances(m2).await;
    assert_eq!(
        where_is(&before, "auto-dir"),
        ("m1".into(), "Stopped".into())
    );

    tracing::info!("--- bad action and mode: 400, nothing changes");
    for (body, err) in [
        (json!({"action": "bogus"}), "Unknown action \"bogus\""),
        (
            json!({"action": "evacuate", "mode": "sometimes"}),
            "Unknown evacuation mode \"sometimes\"",
        ),
        (
            json!({"action": "restore", "mode": "stop"}),
            "Unknown restore mode \"stop\"",
        ),
    ] {
        let r = m2
            .raw(
                "POST",
                "/1.0/cluster/members/m1/state",
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(r.expect_error(400), err);
    }
    assert_eq!(member_status(m3, "m1").await, "Online");

    tracing::info!("--- dry run: the plan, nothing changes");
    let dry = member_state(
        m2,
        "m1",
        json!({"action": "evacuate", "mode": "", "dry_run": true}),
    )
    .await
    .expect("dry run");
    let plan = plan_of(&dry);
    assert_eq!(plan.len(), 5, "{dry}");
    assert_eq!(plan["stop-run"]["action"], "stop", "{dry}");
    assert_eq!(plan["auto-run"]["action"], "migrate", "{dry}");
    assert_eq!(plan["auto-dir"]["action"], "migrate", "{dry}");
    assert_eq!(plan["grp"]["target"], "m3", "{dry}");
    assert_eq!(member_status(m1, "m1").await, "Online");
    assert_eq!(instances(m1).await.len(), before.len());
    assert_eq!(
        where_is(&instances(m1).await, "stop-run"),
        ("m1".into(), "Running".into())
    );

    tracing::info!("--- drover cluster evacuate m1 --dry-run prints the plan with reasons");
    let out = m3.drover(&["cluster", "evacuate", "m1", "--dry-run"]).await;
    let table = &out.success().stdout;
    for needle in [
        "INSTANCE",
        "REASON",
        "stop-run",
        "cluster.evacuate=stop keeps it here",
        "grp",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
    assert_eq!(member_status(m1, "m1").await, "Online");

    tracing::info!("--- evacuate m1 the way lxc 5.0.2 asks (through m2)");
    let mut events = m2.client().events(&["lifecycle"]).await.expect("events");
    let op = post_member_state(m2, "m1", &json!({"action": "evacuate", "mode": ""})).await;
    assert_eq!(op["description"], "Evacuating cluster member");
    assert_eq!(op["location"], "m1");
    let done = wait_op(m2, &op, JOB).await.expect("evacuation succeeds");
    let progress = done["metadata"]["evacuation_progress"]
        .as_str()
        .unwrap_or_default();
    assert!(
        progress.ends_with("in project \"default\"")
            || progress.contains("in project \"default\" to"),
        "{done}"
    );
    let plan = plan_of(&done);
    assert!(plan.values().all(|e| e["step"] == "done"), "{done}");
    assert_eq!(member_status(m3, "m1").await, "Evacuated");
    member_event(&mut events, "cluster-member-evacuated", "m1").await;
    let r = m2
        .raw("GET", "/1.0/cluster/members?recursion=1", None)
        .await;
    let leaders: Vec<String> = r
        .metadata()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "database-leader"))
        })
        .map(|m| m["server_name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(leaders.len(), 1, "{r:?}");
    assert_ne!(
        leaders[0], "m1",
        "an evacuated member does not lead the cluster"
    );
    let after = instances(m3).await;
    for n in ["auto-run", "mig-run", "grp"] {
        let (loc, status) = where_is(&after, n);
        assert_ne!(loc, "m1", "{n}: {after:?}");
        assert_eq!(status, "Running", "{n}: {after:?}");
        assert_eq!(after[n].2["volatile.evacuate.origin"], "m1", "{n}");
    }
    assert_eq!(where_is(&after, "grp").0, "m3");
    let (loc, status) = where_is(&after, "auto-dir");
    assert_ne!(loc, "m1");
    assert_eq!(status, "Stopped");
    assert_eq!(
        where_is(&after, "stop-run"),
        ("m1".into(), "Stopped".into())
    );
    assert_eq!(after["stop-run"].2["volatile.last_state.power"], "RUNNING");
    assert!(
        after["stop-run"]
            .2
            .get("volatile.evacuate.origin")
            .is_none()
    );
    assert_eq!(where_is(&after, "other"), ("m2".into(), "Running".into()));

    let out = m2.drover(&["cluster", "list", "-f", "csv"]).await;
    assert!(
        out.success()
            .stdout
            .lines()
            .any(|l| l.starts_with("m1,") && l.contains(",EVACUATED,")),
        "{}",
        out.stdout
    );

    tracing::info!("--- refusals on an evacuated member");
    let (err, _) = member_state(m1, "m1", json!({"action": "evacuate", "mode": ""}))
        .await
        .expect_err("a second evacuation fails");
    assert_eq!(err, "Cluster member is already evacuated");
    let body = serde_json::to_string(&busybox_request("late", &[], false)).expect("json");
    let r = m2
        .raw("POST", "/1.0/instances?target=m1", Some(&body))
        .await;
    assert_eq!(r.expect_error(403), "Cluster member is evacuated");
    let r = m2
        .raw(
            "POST",
            "/1.0/instances/other?target=m1",
            Some(&json!({"name": "other", "migration": true, "live": false}).to_string()),
        )
        .await;
    assert!(r.status >= 400, "{}", r.text);
    assert!(
        r.text
            .contains("The destination cluster member is evacuated"),
        "{}",
        r.text
    );
    let r = m1
        .raw(
            "PUT",
            "/1.0/instances/stop-run/state",
            Some(r#"{"action": "start"}"#),
        )
        .await;
    assert_eq!(r.expect_error(403), "Cluster member is evacuated");

    tracing::info!("--- restore with skip: Online, nothing moves, origins kept");
    m3.drover(&["cluster", "restore", "m1", "--action", "skip", "--yes"])
        .await
        .success();
    assert_eq!(member_status(m1, "m1").await, "Online");
    let skipped = instances(m1).await;
    for n in ["auto-run", "mig-run", "grp", "auto-dir"] {
        assert_eq!(skipped[n].0, after[n].0, "{n} moved on skip");
        assert_eq!(skipped[n].2["volatile.evacuate.origin"], "m1", "{n}");
    }
    assert_eq!(
        where_is(&skipped, "stop-run"),
        ("m1".into(), "Stopped".into())
    );

    tracing::info!("--- evacuate again, then restore fully");
    m1.change_state("stop-run", "start", false)
        .await
        .expect("start stop-run");
    member_state(m1, "m1", json!({"action": "evacuate"}))
        .await
        .expect("second evacuation");
    assert_eq!(member_status(m2, "m1").await, "Evacuated");
    let op = post_member_state(m2, "m1", &json!({"action": "restore", "mode": ""})).await;
    assert_eq!(op["description"], "Restoring cluster member");
    let done = wait_op(m2, &op, JOB).await.expect("restore succeeds");
    member_event(&mut events, "cluster-member-restored", "m1").await;
    tracing::info!(plan = %done["metadata"]["evacuation_plan"], "restored");
    assert_eq!(member_status(m3, "m1").await, "Online");
    let home = instances(m2).await;
    for n in ["auto-run", "mig-run", "grp", "stop-run"] {
        assert_eq!(
            where_is(&home, n),
            ("m1".into(), "Running".into()),
            "{n}: {home:?}"
        );
        assert!(
            home[n].2.get("volatile.evacuate.origin").is_none(),
            "{n}: {home:?}"
        );
    }
    assert_eq!(where_is(&home, "auto-dir"), ("m1".into(), "Stopped".into()));
    assert_eq!(where_is(&home, "other"), ("m2".into(), "Running".into()));
    let (err, _) = member_state(m1, "m1", json!({"action": "restore"}))
        .await
        .expect_err("a second restore fails");
    assert_eq!(err, "Cluster member is already restored");

    tracing::info!("--- clean up");
    for n in ["auto-run", "mig-run", "grp", "stop-run"] {
        m1.change_state(n, "stop", true).await.expect("stop");
    }
    m2.change_state("other", "stop", true)
        .await
        .expect("stop other");
    wait_until("nothing runs", Duration::from_secs(30), || async {
        instances(m1).await.values().all(|(_, s, _)| s == "Stopped")
    })
    .await;
}

/// A container whose clean stop takes `seconds` (its init ignores the stop signal, so it is
/// killed when `boot.host_shutdown_timeout` runs out): keeps an evacuation busy.
fn slow_stop(seconds: &str) -> [(&'static str, String); 3] {
    [
        ("cluster.evacuate", "stop".to_string()),
        ("boot.stop_signal", "SIGWINCH".to_string()),
        ("boot.host_shutdown_timeout", seconds.to_string()),
    ]
}

/// What does this test do?
/// - forms a three-member cluster; a container on m1 and one on m2 whose clean stop takes
///   5 s (stop policy)
/// - while m1 evacuates: evacuating m2 fails with `Cannot evacuate "m2" while another
///   cluster member evacuation is in progress`, restoring m1 with `Cannot restore "m1"
///   while an evacuate operation is in progress`; m1 shows `Evacuating`, then `Evacuated`
/// - `lxc cluster restore m1 --force` (LXD 5.0.2's client) restores it and prints LXD's
///   progress line
/// - with m3 down (kill -9) and offline, evacuating m2 (API, then `drover`, non-zero exit)
///   is refused with `Insufficient online voters to maintain quorum`, and nothing changes;
///   `drover cluster evacuate m2 --action force-stop --force --yes` evacuates it, printing
///   LXD's progress line and the per-instance table;
///   `lxc cluster evacuate` of an evacuated member fails with LXD's message
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_and_quorum() {
    require_lxc();
    let mut ms = form_cluster(&["127.0.0.83", "127.0.0.84", "127.0.0.85"]).await;
    let (m1, m2) = (&ms[0], &ms[1]);
    m1.import_busybox().await;
    let slow = slow_stop("5");
    let slow: Vec<(&str, &str)> = slow.iter().map(|(k, v)| (*k, v.as_str())).collect();
    create_on(m1, "m1", "slow1", "default", &slow, true).await;
    create_on(m1, "m2", "slow2", "default", &slow, true).await;

    tracing::info!("--- evacuate m1; meanwhile a second evacuation and a restore fail");
    let op = post_member_state(m1, "m1", &json!({"action": "evacuate", "mode": ""})).await;
    wait_until("m1 evacuating", Duration::from_secs(10), || async {
        member_status(m2, "m1").await == "Evacuating"
    })
    .await;
    let (err, _) = member_state(m2, "m2", json!({"action": "evacuate", "mode": ""}))
        .await
        .expect_err("a concurrent evacuation fails");
    assert_eq!(
        err,
        "Cannot evacuate \"m2\" while another cluster member evacuation is in progress"
    );
    let (err, _) = member_state(m2, "m1", json!({"action": "restore"}))
        .await
        .expect_err("a restore during the evacuation fails");
    assert_eq!(
        err,
        "Cannot restore \"m1\" while an evacuate operation is in progress"
    );
    assert_eq!(member_status(m1, "m2").await, "Online");
    let done = wait_op(m1, &op, JOB).await.expect("evacuation of m1");
    assert_eq!(
        done["metadata"]["evacuation_progress"],
        "Stopping \"slow1\" in project \"default\""
    );
    assert_eq!(member_status(m2, "m1").await, "Evacuated");

    tracing::info!("--- lxc cluster restore m1 --force");
    let out = m2.lxc(&["cluster", "restore", "m1", "--force"]).await;
    let stdout = &out.success().stdout;
    assert!(
        stdout.contains("Restoring cluster member: Starting \"slow1\" in project \"default\""),
        "{stdout}"
    );
    assert_eq!(member_status(m2, "m1").await, "Online");
    assert_eq!(instances(m2).await["slow1"].1, "Running");

    tracing::info!("--- m3 down: evacuating m2 would lose quorum");
    let r = m1
        .raw(
            "PATCH",
            "/1.0",
            Some(&json!({"config": {"cluster.offline_threshold": "3"}}).to_string()),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    ms[2].kill();
    let m1 = &ms[0];
    wait_until("m3 offline", Duration::from_secs(30), || async {
        member_status(m1, "m3").await == "Offline"
    })
    .await;
    let (err, _) = member_state(m1, "m2", json!({"action": "evacuate", "mode": ""}))
        .await
        .expect_err("quorum refusal");
    assert_eq!(err, "Insufficient online voters to maintain quorum");
    assert_eq!(member_status(m1, "m2").await, "Online");
    assert_eq!(instances(m1).await["slow2"].1, "Running");
    let out = m1.drover(&["cluster", "evacuate", "m2", "--yes"]).await;
    assert!(
        out.failure()
            .contains("Insufficient online voters to maintain quorum"),
        "{}",
        out.stderr
    );
    tracing::info!("--- drover cluster evacuate m2 --action force-stop --force --yes");
    let out = m1
        .drover(&[
            "cluster",
            "evacuate",
            "m2",
            "--action",
            "force-stop",
            "--force",
            "--yes",
        ])
        .await;
    let stdout = &out.success().stdout;
    for needle in [
        "Stopping \"slow2\" in project \"default\"",
        "INSTANCE",
        "force-stop",
        "DONE",
        "Cluster member m2 evacuated",
    ] {
        assert!(stdout.contains(needle), "{needle} in\n{stdout}");
    }
    assert_eq!(member_status(m1, "m2").await, "Evacuated");
    assert_eq!(instances(m1).await["slow2"].1, "Stopped");
    let out = m1.lxc(&["cluster", "evacuate", "m2", "--force"]).await;
    assert!(
        out.failure()
            .contains("Cluster member is already evacuated"),
        "{}",
        out.stderr
    );
    m1.change_state("slow1", "stop", true)
        .await
        .expect("stop slow1");
}

/// `sha256sum /data` in `name`, through `m`.
async fn data_sum(m: &Member, name: &str) -> String {
    let out = m
        .exec(name, &["sha256sum", "/data"])
        .await
        .unwrap_or_else(|e| panic!("exec in {name}: {e}"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

/// Creates each of `names` running on m1 (through `m`, pool `local`) with 16 MiB of
/// random data in `/data`; name → [`data_sum`].
async fn with_data<'a>(m: &Member, names: &[&'a str]) -> BTreeMap<&'a str, String> {
    let mut sums = BTreeMap::new();
    for &n in names {
        create_on(m, "m1", n, "local", &[], true).await;
        let out = m
            .exec(
                n,
                &[
                    "sh",
                    "-c",
                    "dd if=/dev/urandom of=/data bs=1M count=16 2>/dev/null && sync",
                ],
            )
            .await
            .expect("write data");
        assert_eq!(out.code, 0, "{}", out.stderr);
        sums.insert(n, data_sum(m, n).await);
    }
    sums
}

/// What does this test do?
/// - forms a three-member cluster with member-local `dir` pools; on m1 four running
///   containers with 16 MiB of random data each (default policy: they migrate) and two
///   whose clean stop takes 3 s (stop policy)
/// - evacuates m1 one instance at a time (`parallel: 1`); once the first instance is done,
///   kills m1's daemon (the coordinator) with SIGKILL and starts it again
/// - the restarted member resumes from its journal: m1 ends `Evacuated`, every instance
///   exists exactly once, the moved ones run elsewhere with their data intact, the
///   stop-policy ones are stopped on m1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_mid_evacuation_resumes() {
    let disks = tempfile::tempdir().expect("disks");
    let mut ms = form_cluster(&["127.0.0.86", "127.0.0.87", "127.0.0.88"]).await;
    ms[0].import_busybox().await;
    local_pool(&ms, disks.path(), "local").await;
    let movers = ["mv1", "mv2", "mv3", "mv4"];
    let sums = with_data(&ms[0], &movers).await;
    let slow = slow_stop("3");
    let slow: Vec<(&str, &str)> = slow.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for n in ["st1", "st2"] {
        create_on(&ms[0], "m1", n, "local", &slow, true).await;
    }

    tracing::info!("--- evacuate m1 one at a time; kill its daemon after the first instance");
    let op = post_member_state(
        &ms[1],
        "m1",
        &json!({"action": "evacuate", "mode": "", "parallel": 1}),
    )
    .await;
    let id = op["id"].as_str().unwrap_or_default().to_string();
    wait_until("one instance evacuated", JOB, || async {
        let r = ms[1]
            .raw("GET", &format!("/1.0/operations/{id}"), None)
            .await;
        r.status == 200 && plan_of(r.metadata()).values().any(|e| e["step"] == "done")
    })
    .await;
    ms[0].kill();
    ms[0].start_again().await;

    tracing::info!("--- the restarted coordinator resumes from its journal");
    wait_until("m1 evacuated", JOB, || async {
        member_status(&ms[1], "m1").await == "Evacuated"
    })
    .await;
    assert!(
        ms[0].log().contains("resuming from the journal"),
        "the evacuation did not resume:\n{}",
        ms[0].log()
    );
    let names: Vec<String> = instance_list(&ms[2])
        .await
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        names.len(),
        unique.len(),
        "an instance listed twice: {names:?}"
    );
    assert_eq!(names.len(), 6, "{names:?}");
    let all = instances(&ms[2]).await;
    for n in movers {
        let (loc, status) = where_is(&all, n);
        assert_ne!(loc, "m1", "{n}: {all:?}");
        assert_eq!(status, "Running", "{n}: {all:?}");
        let holder = if loc == "m2" { &ms[1] } else { &ms[2] };
        assert_eq!(data_sum(holder, n).await, sums[n], "{n}: data changed");
    }
    for n in ["st1", "st2"] {
        assert_eq!(where_is(&all, n), ("m1".into(), "Stopped".into()), "{n}");
    }

    tracing::info!("--- clean up");
    for n in movers {
        let (loc, _) = where_is(&all, n);
        let holder = if loc == "m2" { &ms[1] } else { &ms[2] };
        holder.change_state(n, "stop", true).await.expect("stop");
    }
}

/// What does this test do?
/// - forms a three-member cluster (all on 127.0.0.89); m2 and m3 each hold a running
///   container promised 70% of their memory; m1 holds `big` (70%, running), `off` (70%,
///   stopped) and `tiny` (64 MiB, running)
/// - a dry run of evacuating m1 says `big` is stopped in place because no member has 70% of
///   its memory free, `off` stays, `tiny` migrates
/// - the real evacuation does exactly what the dry run said (same actions, same targets)
/// - a restore brings `tiny` home and starts `big` again
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_of_what_cannot_fit_is_what_happens() {
    let disks = tempfile::tempdir().expect("disks");
    let ms = form_cluster(&["127.0.0.89", "127.0.0.89", "127.0.0.89"]).await;
    let (m1, m2, m3) = (&ms[0], &ms[1], &ms[2]);
    m1.import_busybox().await;
    local_pool(&ms, disks.path(), "local").await;
    let hog = [("limits.memory", "70%")];
    create_on(m1, "m2", "hog2", "local", &hog, true).await;
    create_on(m1, "m3", "hog3", "local", &hog, true).await;
    create_on(m1, "m1", "big", "local", &hog, true).await;
    create_on(m1, "m1", "off", "local", &hog, true).await;
    create_on(
        m1,
        "m1",
        "tiny",
        "local",
        &[("limits.memory", "64MiB")],
        true,
    )
    .await;
    m1.change_state("off", "stop", true)
        .await
        .expect("stop off");

    tracing::info!("--- dry run");
    let dry = member_state(m2, "m1", json!({"action": "evacuate", "dry_run": true}))
        .await
        .expect("dry run");
    let planned = plan_of(&dry);
    assert_eq!(planned["big"]["action"], "stop", "{dry}");
    assert_eq!(
        planned["big"]["reason"], "no member has 70% of its memory free",
        "{dry}"
    );
    assert_eq!(planned["off"]["action"], "none", "{dry}");
    assert_eq!(planned["tiny"]["action"], "migrate", "{dry}");
    let out = m3.drover(&["cluster", "evacuate", "m1", "--dry-run"]).await;
    assert!(
        out.success()
            .stdout
            .contains("no member has 70% of its memory free"),
        "{}",
        out.stdout
    );
    assert_eq!(member_status(m1, "m1").await, "Online");

    tracing::info!("--- the real run does what the dry run said");
    let done = member_state(m3, "m1", json!({"action": "evacuate"}))
        .await
        .expect("evacuation");
    let happened = plan_of(&done);
    for (name, entry) in &planned {
        assert_eq!(happened[name]["action"], entry["action"], "{name}: {done}");
        assert_eq!(happened[name]["target"], entry["target"], "{name}: {done}");
        assert_eq!(happened[name]["step"], "done", "{name}: {done}");
    }
    let all = instances(m2).await;
    assert_eq!(where_is(&all, "big"), ("m1".into(), "Stopped".into()));
    assert_eq!(where_is(&all, "off"), ("m1".into(), "Stopped".into()));
    let target = planned["tiny"]["target"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(where_is(&all, "tiny"), (target, "Running".into()));

    tracing::info!("--- restore");
    member_state(m2, "m1", json!({"action": "restore"}))
        .await
        .expect("restore");
    let all = instances(m3).await;
    assert_eq!(where_is(&all, "big"), ("m1".into(), "Running".into()));
    assert_eq!(where_is(&all, "tiny"), ("m1".into(), "Running".into()));
    assert_eq!(where_is(&all, "off"), ("m1".into(), "Stopped".into()));
    for n in ["big", "tiny"] {
        m1.change_state(n, "stop", true).await.expect("stop");
    }
    m2.change_state("hog2", "stop", true)
        .await
        .expect("stop hog2");
    m3.change_state("hog3", "stop", true)
        .await
        .expect("stop hog3");
}

/// What does this test do?
/// - forms a three-member cluster (on 127.0.0.89) with member-local `dir` pools; on m1 six
///   running containers with 16 MiB of data each (default policy)
/// - evacuates m1 one instance at a time; once the first instance is done, kills m2 (a
///   target) with SIGKILL
/// - moves to m2 that fail are undone and planned again without it: the evacuation ends
///   with m1 `Evacuated` and every container that did not reach m2 before it died running
///   on m3 with its data intact
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_evacuation_is_planned_around() {
    let disks = tempfile::tempdir().expect("disks");
    let mut ms = form_cluster(&["127.0.0.89", "127.0.0.89", "127.0.0.89"]).await;
    ms[0].import_busybox().await;
    local_pool(&ms, disks.path(), "local").await;
    let names = ["t1", "t2", "t3", "t4", "t5", "t6"];
    let sums = with_data(&ms[0], &names).await;

    tracing::info!("--- evacuate m1 one at a time; kill m2 after the first instance");
    let op = post_member_state(
        &ms[2],
        "m1",
        &json!({"action": "evacuate", "mode": "", "parallel": 1}),
    )
    .await;
    let id = op["id"].as_str().unwrap_or_default().to_string();
    wait_until("one instance evacuated", JOB, || async {
        let r = ms[2]
            .raw("GET", &format!("/1.0/operations/{id}"), None)
            .await;
        r.status == 200 && plan_of(r.metadata()).values().any(|e| e["step"] == "done")
    })
    .await;
    ms[1].kill();
    let done = wait_op(&ms[2], &op, JOB).await;
    tracing::info!(outcome = ?done, "evacuation with m2 dead");
    let done = done.expect("the evacuation plans around the dead target");
    let plan = plan_of(&done);
    assert_eq!(member_status(&ms[2], "m1").await, "Evacuated");
    for n in names {
        let e = &plan[n];
        assert_eq!(e["step"], "done", "{n}: {done}");
        if e["target"] == "m3" {
            let r = ms[2].raw("GET", &format!("/1.0/instances/{n}"), None).await;
            assert_eq!(r.metadata()["location"], "m3", "{n}");
            assert_eq!(r.metadata()["status"], "Running", "{n}");
            assert_eq!(data_sum(&ms[2], n).await, sums[n], "{n}: data changed");
        } else {
            assert_eq!(e["target"], "m2", "{n}: {done}");
        }
    }
    assert!(
        plan.values().any(|e| e["target"] == "m3"),
        "nothing went to m3: {done}"
    );
    for n in names {
        if plan[n]["target"] == "m3" {
            ms[2].change_state(n, "stop", true).await.expect("stop");
        }
    }
}
