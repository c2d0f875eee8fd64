//! Crash tests of evacuation and restore at full size: 30 busybox containers (20 running,
//! 10 stopped, each with 4 MiB of random data whose checksum is taken first) on member m1
//! of a three-member cluster with member-local `dir` pools, and `kill -9` of a daemon at
//! the points that matter.
//!
//! After every crash the test checks the one thing that counts: every instance exists
//! exactly once (once in the DB, one volume on one member's pool, no runtime state left
//! anywhere else), where it should be, in the power state it had, with its data intact.
//!
//! Points that last a few microseconds (right after the plan is journaled, right after the
//! last step is recorded) are reached with droverd's test-only crash points
//! (`DROVER_TEST_CRASH_AT`, crates/daemon/src/cluster/evacuate/crash.rs), which kill the
//! daemon with SIGKILL there; the moments in the middle of the moves are reached by
//! watching the journal through the operation and sending SIGKILL from outside.
//!
//! Members listen on 127.0.4.10–12, 127.0.4.20–22 and 127.0.4.30–32 (free ports).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_e2e::{
    Member, create_on, form_cluster, instance_list, local_pool, member_status, plan_of,
    post_member_state, wait_op, wait_until,
};
use futures::StreamExt;
use serde_json::json;

/// Instances evacuated.
const N: usize = 30;
/// How long one evacuation or restore of the 30 may take, crashes included.
const JOB: Duration = Duration::from_secs(600);
/// How long a daemon may take to reach one of its crash points.
const CRASH_WAIT: Duration = Duration::from_secs(300);
/// How long a member may keep what it holds of a finished move before cleaning it up.
const LEFTOVER_WAIT: Duration = Duration::from_secs(60);
/// droverd's test-only crash points (crates/daemon/src/cluster/evacuate/crash.rs).
const CRASH_ENV: &str = "DROVER_TEST_CRASH_AT";

/// Three members, the 30 instances on m1, their checksums and which of them run.
struct World {
    disks: tempfile::TempDir,
    ms: Vec<Member>,
    sums: BTreeMap<String, String>,
    running: BTreeSet<String>,
}

fn names() -> Vec<String> {
    (1..=N).map(|i| format!("c{i:02}")).collect()
}

/// Where member `m{i}`'s `local` pool keeps instance volumes.
fn pool_dir(disks: &Path, i: usize) -> PathBuf {
    disks.join(format!("m{i}")).join("local").join("containers")
}

/// The data file of `name` in its volume on member `m{i}` (its overlay upper layer: the
/// same bytes whether the container runs or not).
fn data_file(disks: &Path, i: usize, name: &str) -> PathBuf {
    pool_dir(disks, i)
        .join(format!("default_{name}"))
        .join("upper")
        .join("data")
}

/// `sha256sum` of each file: path → digest.
fn sha256(files: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let out = std::process::Command::new("sha256sum")
        .args(files)
        .output()
        .expect("run sha256sum");
    assert!(
        out.status.success(),
        "sha256sum: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(sum, path)| (PathBuf::from(path), sum.to_string()))
        .collect()
}

/// Names of the entries of `dir` (empty when it does not exist).
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Forms the cluster on `ips` and creates the 30 instances on m1: all started, 4 MiB of
/// random data written in each, every third one stopped again.
async fn world(ips: &[&str]) -> World {
    let disks = tempfile::tempdir().expect("disks");
    let ms = form_cluster(ips).await;
    ms[0].import_busybox().await;
    local_pool(&ms, disks.path(), "local").await;
    let t0 = Instant::now();
    let m1 = &ms[0];
    futures::stream::iter(names())
        .map(|n| async move {
            create_on(m1, "m1", &n, "local", &[], true).await;
            let out = m1
                .exec(
                    &n,
                    &[
                        "sh",
                        "-c",
                        "dd if=/dev/urandom of=/data bs=64k count=64 2>/dev/null && sync",
                    ],
                )
                .await
                .expect("write data");
            assert_eq!(out.code, 0, "{}", out.stderr);
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    let mut running = BTreeSet::new();
    for (i, n) in names().into_iter().enumerate() {
        if i % 3 == 2 {
            m1.change_state(&n, "stop", true).await.expect("stop");
        } else {
            running.insert(n);
        }
    }
    let files: Vec<PathBuf> = names()
        .iter()
        .map(|n| data_file(disks.path(), 1, n))
        .collect();
    let by_path = sha256(&files);
    let sums = names()
        .into_iter()
        .zip(files)
        .map(|(n, f)| (n, by_path[&f].clone()))
        .collect();
    tracing::info!(
        secs = t0.elapsed().as_secs_f64(),
        "30 instances created with data"
    );
    World {
        disks,
        ms,
        sums,
        running,
    }
}

impl World {
    /// Checks that every instance exists exactly once, on m1 when `home`, else on another
    /// member with `volatile.evacuate.origin` m1; running when it ran, stopped otherwise;
    /// with its data; and that no member keeps a volume, a runtime state or a run dir of an
    /// instance it does not hold.
    async fn check(&self, home: bool) {
        let listed = instance_list(&self.ms[2]).await;
        let mut seen: Vec<String> = listed
            .iter()
            .map(|v| v["name"].as_str().unwrap_or_default().to_string())
            .collect();
        seen.sort();
        assert_eq!(seen, names(), "every instance exactly once in the DB");
        let mut held: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        let mut files = Vec::new();
        for v in &listed {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let location = v["location"].as_str().unwrap_or_default();
            let origin = &v["config"]["volatile.evacuate.origin"];
            if home {
                assert_eq!(location, "m1", "{name} is home: {v}");
                assert!(origin.is_null(), "{name}'s origin is cleared: {v}");
            } else {
                assert_ne!(location, "m1", "{name} left m1: {v}");
                assert_eq!(origin, "m1", "{name}'s origin: {v}");
            }
            let want = if self.running.contains(&name) {
                "Running"
            } else {
                "Stopped"
            };
            assert_eq!(v["status"], want, "{name}'s status: {v}");
            let i: usize = location
                .trim_start_matches('m')
                .parse()
                .unwrap_or_else(|_| panic!("{name}'s location {location:?}"));
            files.push((name.clone(), data_file(self.disks.path(), i, &name)));
            held.entry(i).or_default().insert(name);
        }
        let paths: Vec<PathBuf> = files.iter().map(|(_, f)| f.clone()).collect();
        let got = sha256(&paths);
        for (name, f) in &files {
            assert_eq!(
                got.get(f),
                Some(&self.sums[name]),
                "{name}: data at {}",
                f.display()
            );
        }
        // What a member holds of a move whose target died is cleaned up once that target
        // answers again (retried every few seconds): give it that long.
        let t0 = Instant::now();
        while let Some(left) = self.leftovers(&held) {
            assert!(t0.elapsed() < LEFTOVER_WAIT, "{left}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What a member keeps of an instance it does not hold (a volume, a runtime state, a
    /// run dir), or lacks of one it holds; `None` when every member has exactly its own.
    fn leftovers(&self, held: &BTreeMap<usize, BTreeSet<String>>) -> Option<String> {
        for (k, m) in self.ms.iter().enumerate() {
            let i = k + 1;
            let mine = held.get(&i).cloned().unwrap_or_default();
            let volumes: BTreeSet<String> = mine.iter().map(|n| format!("default_{n}")).collect();
            let on_disk = entries(&pool_dir(self.disks.path(), i));
            if on_disk != volumes {
                return Some(format!(
                    "volumes on m{i}: {on_disk:?}, it holds {volumes:?}"
                ));
            }
            let runs: BTreeSet<String> = mine
                .iter()
                .filter(|n| self.running.contains(*n))
                .map(|n| format!("default_{n}"))
                .collect();
            let root = m.state_dir().join("runtime");
            let runtime: BTreeSet<String> = entries(&root)
                .into_iter()
                .filter(|e| root.join(e).is_dir())
                .collect();
            if runtime != runs {
                return Some(format!(
                    "runtime state on m{i}: {runtime:?}, it runs {runs:?}"
                ));
            }
            let run_dirs = entries(&m.state_dir().join("containers"));
            if !run_dirs.is_subset(&volumes) {
                return Some(format!(
                    "run dirs on m{i} of instances it does not hold: {:?}",
                    run_dirs.difference(&volumes).collect::<Vec<_>>()
                ));
            }
        }
        None
    }

    /// Waits until the journal of operation `id`, read through member `via`, has at least
    /// `done` rows done while some are still to do; returns the rows in flight.
    async fn wait_mid_job(&self, via: usize, id: &str, done: usize) -> Vec<String> {
        let path = format!("/1.0/operations/{id}");
        let t0 = Instant::now();
        loop {
            let r = self.ms[via].raw("GET", &path, None).await;
            if r.status == 200 {
                let plan = plan_of(r.metadata());
                let finished = plan.values().filter(|e| e["step"] == "done").count();
                let left: Vec<String> = plan
                    .iter()
                    .filter(|(_, e)| e["step"] != "done" && e["step"] != "failed")
                    .map(|(n, _)| n.clone())
                    .collect();
                if finished >= done && !left.is_empty() {
                    return left;
                }
                assert!(
                    plan.is_empty() || !left.is_empty(),
                    "the job ended before {done} were done"
                );
            }
            assert!(t0.elapsed() < JOB, "{done} instances not done in {JOB:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for member `k`'s daemon to kill itself at crash point `point`.
    async fn crashed_at(&mut self, k: usize, point: &str) {
        let status = self.ms[k].wait_exit(CRASH_WAIT).await;
        assert!(
            status.is_some(),
            "m{} did not reach crash point {point}\n{}",
            k + 1,
            self.ms[k].log()
        );
        let marker = self.ms[k].state_dir().join(format!("crashed-at-{point}"));
        assert!(marker.exists(), "m{} exited, but not at {point}", k + 1);
        tracing::info!(point, "--- crashed at the point");
    }

    /// [`World::crashed_at`], then starts the daemon again.
    async fn crashed_and_restarted(&mut self, k: usize, point: &str) {
        self.crashed_at(k, point).await;
        self.ms[k].start_again().await;
    }

    /// Kills member `k`'s daemon with SIGKILL and starts it again.
    async fn kill_and_restart(&mut self, k: usize) {
        self.ms[k].kill();
        self.ms[k].start_again().await;
    }
}

/// Where each instance is as member `via` lists it.
async fn locations(m: &Member) -> BTreeMap<String, String> {
    instance_list(m)
        .await
        .into_iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["location"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What does this test do?
/// - 30 containers on m1 (20 running, 10 stopped, data checksummed); m1 restarted with the
///   crash points `evacuate-journaled`, `evacuate-steps-done`, `restore-journaled` and
///   `restore-steps-done`
/// - evacuates m1 (asked through m2): m1 dies right after journaling the plan (nothing has
///   moved: every instance is still on m1), is restarted; once 8 instances are done, it is
///   killed with SIGKILL in the middle of the moves, restarted; it dies again after the
///   last step is recorded but before m1 is set `Evacuated`, and is restarted
/// - the evacuation finishes: the operation the client waits on (same id) succeeds, m1 is
///   `Evacuated`, every instance exists exactly once off m1 with its data and power state,
///   no member keeps anything of an instance it does not hold
/// - restores m1 (asked through m3) with the same three kills: everything is home exactly
///   once, as it was
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_at_each_point_of_evacuation_and_restore() {
    let t0 = Instant::now();
    let mut w = world(&["127.0.4.10", "127.0.4.11", "127.0.4.12"]).await;
    w.ms[0].set_env(
        CRASH_ENV,
        "evacuate-journaled,evacuate-steps-done,restore-journaled,restore-steps-done",
    );
    w.ms[0].restart().await;
    wait_until("m1 online again", JOB, || async {
        member_status(&w.ms[1], "m1").await == "Online"
    })
    .await;

    tracing::info!("--- evacuate m1: it dies right after journaling the plan");
    let t_job = Instant::now();
    let op = post_member_state(&w.ms[1], "m1", &json!({"action": "evacuate", "mode": ""})).await;
    let id = op["id"].as_str().unwrap_or_default().to_string();
    w.crashed_at(0, "evacuate-journaled").await;
    let before = locations(&w.ms[1]).await;
    assert!(
        before.len() == N && before.values().all(|l| l == "m1"),
        "something moved before the plan was journaled: {before:?}"
    );
    // The journal was committed before m1 died: the new leader has it.
    wait_until("m1 evacuating", JOB, || async {
        member_status(&w.ms[1], "m1").await == "Evacuating"
    })
    .await;
    tracing::info!("--- m1 down: the other members answer for its operation from the journal");
    for via in [1, 2] {
        let r = w.ms[via]
            .raw("GET", &format!("/1.0/operations/{id}"), None)
            .await;
        assert_eq!(r.status, 200, "m{}: {}", via + 1, r.text);
        assert_eq!(r.metadata()["status"], "Running", "{}", r.text);
        assert_eq!(r.metadata()["location"], "m1", "{}", r.text);
        assert_eq!(plan_of(r.metadata()).len(), N, "{}", r.text);
    }
    // Listed too (m3 catches up with the leader first; while one is being elected, its
    // view may lag a moment).
    wait_until("the evacuation is listed on m3", JOB, || async {
        let r = w.ms[2]
            .raw("GET", "/1.0/operations?recursion=1", None)
            .await;
        r.metadata()["running"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o["id"] == id.as_str()))
    })
    .await;
    w.ms[0].start_again().await;

    tracing::info!("--- resumed; kill -9 in the middle of the moves");
    let in_flight = w.wait_mid_job(1, &id, 8).await;
    w.kill_and_restart(0).await;
    tracing::info!(?in_flight, "--- killed mid-moves; restarted");

    tracing::info!("--- resumed; it dies after the last step, before m1 is set Evacuated");
    w.crashed_and_restarted(0, "evacuate-steps-done").await;
    let done = wait_op(&w.ms[1], &op, JOB).await;
    let done = done.unwrap_or_else(|(e, v)| panic!("the evacuation failed: {e}: {v}"));
    let plan = plan_of(&done);
    assert_eq!(plan.len(), N, "{done}");
    assert!(plan.values().all(|e| e["step"] == "done"), "{done}");
    assert_eq!(member_status(&w.ms[2], "m1").await, "Evacuated");
    let evacuation = t_job.elapsed();
    w.check(false).await;

    tracing::info!("--- restore m1: it dies right after journaling the plan");
    let t_job = Instant::now();
    let op = post_member_state(&w.ms[2], "m1", &json!({"action": "restore"})).await;
    let id = op["id"].as_str().unwrap_or_default().to_string();
    w.crashed_and_restarted(0, "restore-journaled").await;
    tracing::info!("--- resumed; kill -9 in the middle of the moves back");
    let in_flight = w.wait_mid_job(2, &id, 8).await;
    w.kill_and_restart(0).await;
    tracing::info!(?in_flight, "--- killed mid-restore; restarted");
    w.crashed_and_restarted(0, "restore-steps-done").await;
    let done = wait_op(&w.ms[2], &op, JOB).await;
    let done = done.unwrap_or_else(|(e, v)| panic!("the restore failed: {e}: {v}"));
    assert!(
        plan_of(&done).values().all(|e| e["step"] == "done"),
        "{done}"
    );
    assert_eq!(member_status(&w.ms[1], "m1").await, "Online");
    let restore = t_job.elapsed();
    w.check(true).await;
    tracing::info!(
        evacuation_secs = evacuation.as_secs_f64(),
        restore_secs = restore.as_secs_f64(),
        total_secs = t0.elapsed().as_secs_f64(),
        "coordinator crash test done"
    );
}

/// What does this test do?
/// - 30 containers on m1 (20 running, 10 stopped, data checksummed)
/// - evacuates m1; once 4 instances are done, kills m2 (a target) with SIGKILL
/// - the evacuation plans the rest around m2 and finishes: m1 `Evacuated`
/// - m2 is started again: it resolves what it was receiving; every instance exists exactly
///   once off m1 with its data and power state, nothing left over anywhere
/// - a restore brings all 30 home exactly once
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_mid_evacuation_of_30() {
    let t0 = Instant::now();
    let mut w = world(&["127.0.4.20", "127.0.4.21", "127.0.4.22"]).await;

    tracing::info!("--- evacuate m1; kill -9 m2 once 4 instances are done");
    let op = post_member_state(&w.ms[2], "m1", &json!({"action": "evacuate"})).await;
    let id = op["id"].as_str().unwrap_or_default().to_string();
    let in_flight = w.wait_mid_job(2, &id, 4).await;
    w.ms[1].kill();
    tracing::info!(?in_flight, "--- m2 killed");
    let done = wait_op(&w.ms[2], &op, JOB).await;
    let done = done.unwrap_or_else(|(e, v)| panic!("the evacuation failed: {e}: {v}"));
    assert!(
        plan_of(&done).values().all(|e| e["step"] == "done"),
        "{done}"
    );
    assert_eq!(member_status(&w.ms[2], "m1").await, "Evacuated");
    let evacuation = t0.elapsed();

    tracing::info!("--- m2 starts again");
    w.ms[1].start_again().await;
    wait_until("m2 online", JOB, || async {
        member_status(&w.ms[2], "m2").await == "Online"
    })
    .await;
    wait_until("m2 settled", JOB, || async {
        let listed = instance_list(&w.ms[2]).await;
        listed.len() == N
            && listed.iter().all(|v| {
                let n = v["name"].as_str().unwrap_or_default();
                let want = if w.running.contains(n) {
                    "Running"
                } else {
                    "Stopped"
                };
                v["status"] == want
            })
    })
    .await;
    w.check(false).await;

    tracing::info!("--- restore");
    let op = post_member_state(&w.ms[1], "m1", &json!({"action": "restore"})).await;
    let done = wait_op(&w.ms[1], &op, JOB).await;
    done.unwrap_or_else(|(e, v)| panic!("the restore failed: {e}: {v}"));
    w.check(true).await;
    tracing::info!(
        evacuation_secs = evacuation.as_secs_f64(),
        total_secs = t0.elapsed().as_secs_f64(),
        "target crash test done"
    );
}

/// What does this test do?
/// - a three-member cluster; m1 holds two running containers
/// - eight creates of running containers on m1 are sent, and while they are under way m1
///   is evacuated: each create either succeeds or is refused with LXD's message (at its
///   start, which leaves the instance created and stopped)
/// - the evacuation succeeds: m1 `Evacuated` with nothing left on it, every instance that
///   exists exists once, elsewhere, running when its create succeeded (the ones whose
///   create was under way when the plan was made were added to it)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_under_way_when_the_evacuation_begins_are_evacuated_too() {
    let disks = tempfile::tempdir().expect("disks");
    let ms = form_cluster(&["127.0.4.30", "127.0.4.31", "127.0.4.32"]).await;
    ms[0].import_busybox().await;
    local_pool(&ms, disks.path(), "local").await;
    for n in ["old1", "old2"] {
        create_on(&ms[0], "m1", n, "local", &[], true).await;
    }

    tracing::info!("--- eight creates on m1, and its evacuation while they run");
    let creates = (1..=8).map(|i| {
        let m = &ms[1];
        async move {
            let name = format!("new{i}");
            let mut req = drover_e2e::busybox_request(&name, &[], true);
            req.devices.insert(
                "root".into(),
                [("type", "disk"), ("path", "/"), ("pool", "local")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            let body = serde_json::to_string(&req).expect("json");
            let r = m.raw("POST", "/1.0/instances?target=m1", Some(&body)).await;
            if r.status != 202 {
                return (name, Err(r.text));
            }
            let done = wait_op(m, r.metadata(), JOB).await;
            (name, done.map(|_| ()).map_err(|(e, _)| e))
        }
    });
    let evacuation = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let op = post_member_state(&ms[2], "m1", &json!({"action": "evacuate"})).await;
        wait_op(&ms[2], &op, JOB).await
    };
    let (created, done) = tokio::join!(futures::future::join_all(creates), evacuation);
    let done = done.unwrap_or_else(|(e, v)| panic!("the evacuation failed: {e}: {v}"));
    // A create refused at its start (the member was evacuating by then) leaves its
    // instance created and stopped, as LXD does; one refused before that leaves nothing.
    let mut started = BTreeSet::from(["old1".to_string(), "old2".to_string()]);
    let mut refused = BTreeSet::new();
    for (name, outcome) in &created {
        match outcome {
            Ok(()) => {
                started.insert(name.clone());
            }
            Err(e) => {
                assert!(
                    e.contains("Cluster member is evacuated"),
                    "{name}: refused for another reason: {e}"
                );
                refused.insert(name.clone());
            }
        }
    }
    tracing::info!(
        ?started,
        ?refused,
        plan = plan_of(&done).len(),
        "--- evacuated"
    );
    assert_eq!(member_status(&ms[0], "m1").await, "Evacuated");
    let listed = instance_list(&ms[0]).await;
    let mut names: Vec<String> = listed
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique, "each instance once");
    for n in &started {
        assert!(names.contains(n), "{n} exists: {names:?}");
    }
    for v in &listed {
        let name = v["name"].as_str().unwrap_or_default();
        assert!(
            started.contains(name) || refused.contains(name),
            "{name} was never asked for"
        );
        assert_ne!(v["location"], "m1", "{v}");
        let want = if started.contains(name) {
            "Running"
        } else {
            "Stopped"
        };
        assert_eq!(v["status"], want, "{v}");
    }
    assert!(
        entries(&pool_dir(disks.path(), 1)).is_empty(),
        "volumes left on m1: {:?}",
        entries(&pool_dir(disks.path(), 1))
    );
}
