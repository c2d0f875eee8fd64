//! Moving instances between members (`POST /1.0/instances/{name}?target=m3`,
//! `lxc move --target`), with three real members.
//!
//! What does this test do?
//! - refusals (live move of a running container, unknown, same, evacuated or offline
//!   target) answer at once and change nothing: the container keeps running where it was
//! - a running and a stopped busybox container move on a `dir` pool: every file (a
//!   200 MiB one and many small ones) is byte-identical afterwards, the running one runs on
//!   the target, the stopped one stays stopped, nothing is left on the source
//! - the same on a `shared-fs` pool, where only the ownership moves
//! - killing the target mid-transfer, or a full filesystem on the target, leaves the
//!   instance whole and running on the source, and nothing on the target; a source killed
//!   mid-transfer undoes the move when it starts again
//! - `lxc move --target` (stopped) and `lxc move --target --stateless` (running) work;
//!   `lxc move` of a running container without `--stateless` is refused and it keeps
//!   running; a stopped one with `boot.autostart` starts on its target
//!
//! Members listen on 127.0.6.70–79 (free ports).

use std::path::{Path, PathBuf};
use std::time::Duration;

use api::InstanceStatus;
use drover_e2e::{
    Member, create_on, droverd_bin, form_cluster_with, location, require_lxc, wait_op, wait_until,
};
use serde_json::{Value, json};

/// How long a move may take (a 200 MiB volume, twice, on a loaded machine).
const MOVE: Duration = Duration::from_secs(180);

/// The status `m` reports for `name`.
async fn status(m: &Member, name: &str) -> String {
    let r = m.raw("GET", &format!("/1.0/instances/{name}"), None).await;
    r.metadata()["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `POST /1.0/instances/{name}?target=` through `m` with `lxc move`'s body.
async fn post_move(m: &Member, name: &str, target: &str, live: bool) -> drover_e2e::RawResponse {
    let body = json!({
        "name": name, "migration": true, "live": live, "instance_only": false,
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

/// Moves `name` to `target` through `m` and waits; `Err(cause)` when the move failed.
async fn move_to(m: &Member, name: &str, target: &str) -> Result<Value, String> {
    let r = post_move(m, name, target, false).await;
    if r.status != 202 {
        return Err(format!("{}: {}", r.status, r.text));
    }
    assert_eq!(r.metadata()["description"], "Migrating instance");
    wait_op(m, r.metadata(), MOVE).await.map_err(|(e, _)| e)
}

/// Runs `sh -c script` in `name` through `m`; its stdout.
async fn sh(m: &Member, name: &str, script: &str) -> String {
    let out = m
        .exec(name, &["sh", "-c", script])
        .await
        .unwrap_or_else(|e| panic!("exec in {name}: {e}"));
    assert_eq!(out.code, 0, "{script}: {}", out.stderr);
    out.stdout
}

/// Writes a 200 MiB file and 300 small files into `/data` of `name`.
async fn write_data(m: &Member, name: &str, big_mib: u32) {
    sh(
        m,
        name,
        &format!(
            "mkdir -p /data/small && dd if=/dev/urandom of=/data/big bs=1M count={big_mib} 2>/dev/null \
             && i=0; while [ $i -lt 300 ]; do head -c $((i * 37 + 1)) /dev/urandom > /data/small/f$i; i=$((i+1)); done \
             && ln -s big /data/link && ln /data/small/f1 /data/hard && sync"
        ),
    )
    .await;
}

/// The SHA-256 of every file in the container's root filesystem (but the kernel's and
/// runtime's mounts), sorted by path.
async fn checksums(m: &Member, name: &str) -> String {
    sh(
        m,
        name,
        "find / -xdev -type f ! -path '/proc/*' ! -path '/sys/*' ! -path '/dev/*' ! -path '/run/*' \
         | sort | xargs sha256sum",
    )
    .await
}

/// Every member's own disk at one path, as separate hosts have: each `droverd` runs in its
/// own mount namespace where `pool` is a bind mount of `<member dir>/local-disk` (first
/// loop-mounted from `<member dir>/local-disk.img` when that image exists). A `dir` pool
/// with source `pool` is then member-local, as on real hosts.
struct LocalDisks {
    root: tempfile::TempDir,
}

impl LocalDisks {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("drover-e2e-move-")
            .tempdir()
            .expect("temp dir");
        let pool = root.path().join("pool");
        let bin = root.path().join("bin");
        std::fs::create_dir(&pool).expect("mount point");
        std::fs::create_dir(&bin).expect("bin dir");
        let real = droverd_bin();
        let script = format!(
            r#"#!/bin/sh
# droverd with its member's own disk at {pool}
state=""; prev=""
for a in "$@"; do [ "$prev" = "--state-dir" ] && state="$a"; prev="$a"; done
own="$(dirname "$state")/local-disk"
mkdir -p "$own"
exec unshare -m --propagation private sh -c '
  if [ -f "$1.img" ]; then mount -o loop "$1.img" "$1" || exit 1; fi
  mount --bind "$1" "$2" || exit 1
  shift 2; exec "$@"' sh "$own" "{pool}" "{real}" "$@"
"#,
            pool = pool.display(),
            real = real.display()
        );
        let wrapper = bin.join("droverd");
        std::fs::write(&wrapper, script).expect("write the wrapper");
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the wrapper");
        let _ = std::os::unix::fs::symlink(real.with_file_name("drover"), bin.join("drover"));
        Self { root }
    }

    /// The daemon binary to start members with.
    fn bin(&self) -> PathBuf {
        self.root.path().join("bin").join("droverd")
    }

    /// The pool source, the same path on every member.
    fn pool(&self) -> PathBuf {
        self.root.path().join("pool")
    }

    /// Creates pool `local` (`dir`, member-local) through `m` the way LXD's clients do in a
    /// cluster: each member's `source` (`?target=`), then the pool.
    async fn create_pool(&self, m: &Member, members: usize) {
        let source = self.pool().display().to_string();
        for i in 1..=members {
            let body = json!({"name": "local", "driver": "dir", "config": {"source": source}});
            let r = m
                .raw(
                    "POST",
                    &format!("/1.0/storage-pools?target=m{i}"),
                    Some(&body.to_string()),
                )
                .await;
            assert!(r.status < 300, "define pool local on m{i}: {}", r.text);
        }
        let body = json!({"name": "local", "driver": "dir", "config": {}});
        let r = m
            .raw("POST", "/1.0/storage-pools", Some(&body.to_string()))
            .await;
        assert!(r.status < 300, "create pool local: {}", r.text);
    }

    /// What `m`'s own disk holds under `containers/` (volumes and staging), as its daemon
    /// sees it.
    fn entries(&self, m: &Member) -> Vec<String> {
        let Some(pid) = m.daemon_pid() else {
            return Vec::new();
        };
        let dir = Path::new(&format!("/proc/{pid}/root"))
            .join(self.pool().strip_prefix("/").unwrap_or(&self.pool()))
            .join("containers");
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `m`'s own disk holds anything of instance `name`.
    fn holds(&self, m: &Member, name: &str) -> bool {
        self.entries(m).iter().any(|e| e.contains(name))
    }

    /// Whether `m`'s own disk holds a volume or staging of instance `name` (not counting a
    /// deleted volume whose files are still being freed, `.tmp-*`).
    fn holds_volume(&self, m: &Member, name: &str) -> bool {
        self.entries(m)
            .iter()
            .any(|e| e.contains(name) && !e.starts_with(".tmp-"))
    }

    /// Asserts that `m` has no volume of `name` left after a move, and frees its files.
    async fn freed(&self, m: &Member, name: &str) {
        assert!(!self.holds_volume(m, name), "source copy left behind");
        wait_until(&format!("files of {name} freed"), MOVE, || async {
            !self.holds(m, name)
        })
        .await;
    }

    /// Gives `m` a small disk of `mib` MiB (ext4) from its next start on.
    fn small_disk(&self, m: &Member, mib: u32) {
        let img = m
            .state_dir()
            .parent()
            .expect("member dir")
            .join("local-disk.img");
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "truncate -s {mib}M '{0}' && mkfs.ext4 -q -F '{0}'",
                img.display()
            ))
            .status()
            .expect("run mkfs")
            .success();
        assert!(ok, "make a small disk at {}", img.display());
    }
}

/// Forms a three-member cluster on `ips` whose members have their own disks, with the
/// busybox image and pool `local` on them.
async fn cluster(ips: [&str; 3]) -> (LocalDisks, Vec<Member>) {
    let disks = LocalDisks::new();
    let ms = form_cluster_with(&ips, Some(&disks.bin())).await;
    ms[0].import_busybox().await;
    disks.create_pool(&ms[0], ms.len()).await;
    (disks, ms)
}

/// Refusals answer at once and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_change_nothing() {
    let (_disks, mut ms) = cluster(["127.0.6.70", "127.0.6.71", "127.0.6.72"]).await;
    create_on(&ms[0], "m1", "r1", "local", &[], true).await;

    tracing::info!("--- a live move of a running container is refused, naming --stateless");
    let r = post_move(&ms[1], "r1", "m2", true).await;
    let err = r.expect_error(400);
    assert!(err.contains("--stateless"), "{err}");
    assert!(err.contains("CRIU"), "{err}");
    assert_eq!(location(&ms[2], "r1").await, "m1");
    assert_eq!(status(&ms[0], "r1").await, "Running");

    tracing::info!("--- an unknown target, the member it is on, no target");
    let r = post_move(&ms[0], "r1", "m9", false).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = post_move(&ms[0], "r1", "m1", false).await;
    let err = r.expect_error(400);
    assert!(
        err.contains("Target must be different than instance's current location"),
        "{err}"
    );
    let r = post_move(&ms[0], "r1", "", false).await;
    r.expect_error(400);
    assert_eq!(location(&ms[0], "r1").await, "m1");
    assert_eq!(status(&ms[0], "r1").await, "Running");

    tracing::info!("--- an evacuated target");
    let r = ms[0]
        .raw(
            "POST",
            "/1.0/cluster/members/m2/state",
            Some(r#"{"action": "evacuate", "mode": ""}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_op(&ms[0], r.metadata(), MOVE)
        .await
        .expect("evacuate m2");
    let err = post_move(&ms[0], "r1", "m2", false).await.expect_error(400);
    assert!(
        err.contains("The destination cluster member is evacuated"),
        "{err}"
    );
    assert_eq!(location(&ms[0], "r1").await, "m1");
    assert_eq!(status(&ms[0], "r1").await, "Running");

    tracing::info!("--- an offline target");
    ms[2].kill();
    let err = post_move(&ms[0], "r1", "m3", false).await.expect_error(400);
    assert!(err.contains("offline"), "{err}");
    assert_eq!(location(&ms[0], "r1").await, "m1");
    assert_eq!(status(&ms[0], "r1").await, "Running");

    tracing::info!("--- a rename still works");
    ms[0]
        .change_state("r1", "stop", true)
        .await
        .expect("stop r1");
    let r = ms[0]
        .raw("POST", "/1.0/instances/r1", Some(r#"{"name": "r2"}"#))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_op(&ms[0], r.metadata(), MOVE).await.expect("rename");
    assert_eq!(location(&ms[0], "r2").await, "m1");
}

/// A running and a stopped container move with their data on `pool`: every file is
/// identical, the running one runs on the target, the stopped one stays stopped; and back.
/// On a member-local pool (`shared` is `None`) the data travels and the source keeps
/// nothing; on a `shared-fs` pool at `shared` nothing is sent.
async fn moves_keep_every_file(ips: [&str; 3], shared: Option<&Path>) {
    let (disks, ms) = cluster(ips).await;
    let pool = match shared {
        Some(dir) => {
            let body = json!({"name": "shared", "driver": "shared-fs",
                "config": {"source": dir.display().to_string()}});
            let r = ms[0]
                .raw("POST", "/1.0/storage-pools", Some(&body.to_string()))
                .await;
            assert!(r.status < 300, "create pool shared: {}", r.text);
            "shared"
        }
        None => "local",
    };
    create_on(&ms[0], "m1", "run1", pool, &[], true).await;
    create_on(&ms[0], "m1", "stop1", pool, &[], true).await;
    write_data(&ms[0], "run1", 200).await;
    write_data(&ms[0], "stop1", 8).await;
    let run_sums = checksums(&ms[0], "run1").await;
    let stop_sums = checksums(&ms[0], "stop1").await;
    assert!(run_sums.lines().count() > 300, "{run_sums}");
    ms[0]
        .change_state("stop1", "stop", false)
        .await
        .expect("stop stop1");

    tracing::info!("--- move the running container to m2 (asked through m3)");
    let done = move_to(&ms[2], "run1", "m2").await.expect("move run1");
    tracing::info!(report = %done["metadata"], "moved run1");
    assert_eq!(location(&ms[0], "run1").await, "m2");
    assert_eq!(status(&ms[1], "run1").await, "Running");
    assert_eq!(checksums(&ms[1], "run1").await, run_sums);
    let sent = done["metadata"]["bytes_sent"].as_u64().unwrap_or(0);
    if shared.is_some() {
        assert_eq!(sent, 0, "nothing travels on shared storage: {done}");
    } else {
        assert!(sent > 200 << 20, "{done}");
        disks.freed(&ms[0], "run1").await;
    }

    tracing::info!("--- move the stopped container to m3: it stays stopped");
    move_to(&ms[0], "stop1", "m3").await.expect("move stop1");
    assert_eq!(location(&ms[1], "stop1").await, "m3");
    assert_eq!(status(&ms[2], "stop1").await, "Stopped");
    if shared.is_none() {
        disks.freed(&ms[0], "stop1").await;
    }
    ms[2]
        .change_state("stop1", "start", false)
        .await
        .expect("start stop1 on m3");
    assert_eq!(checksums(&ms[2], "stop1").await, stop_sums);

    tracing::info!("--- and back: the running one to m1");
    move_to(&ms[1], "run1", "m1").await.expect("move run1 back");
    assert_eq!(status(&ms[0], "run1").await, "Running");
    assert_eq!(checksums(&ms[0], "run1").await, run_sums);
    if shared.is_none() {
        disks.freed(&ms[1], "run1").await;
    }
    for (m, n) in [(&ms[0], "run1"), (&ms[2], "stop1")] {
        m.change_state(n, "stop", true).await.expect("stop");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dir_moves_keep_every_file() {
    moves_keep_every_file(["127.0.6.73", "127.0.6.74", "127.0.6.75"], None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_fs_moves_keep_every_file() {
    let shared = tempfile::Builder::new()
        .prefix("drover-e2e-shared-")
        .tempdir()
        .expect("a shared directory");
    moves_keep_every_file(
        ["127.0.6.75", "127.0.6.76", "127.0.6.77"],
        Some(shared.path()),
    )
    .await;
}

/// Starts moving `name` to `target` through `via` and returns its operation once the
/// source (`source`) reports more than 20 MiB sent.
async fn move_in_flight(via: &Member, source: &Member, name: &str, target: &str) -> Value {
    let r = post_move(via, name, target, false).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.metadata().clone();
    let id = op["id"].as_str().unwrap_or_default().to_string();
    wait_until(&format!("bytes flow to {target}"), MOVE, || async {
        let r = source
            .raw("GET", &format!("/1.0/operations/{id}"), None)
            .await;
        r.metadata()["metadata"]["move_bytes_sent"]
            .as_u64()
            .unwrap_or(0)
            > 20 << 20
    })
    .await;
    op
}

/// Killing the target mid-transfer leaves the instance whole and running on the source;
/// the restarted target holds nothing of it.
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_target_mid_transfer_loses_nothing() {
    let (disks, mut ms) = cluster(["127.0.6.76", "127.0.6.77", "127.0.6.78"]).await;
    create_on(&ms[0], "m1", "k1", "local", &[], true).await;
    write_data(&ms[0], "k1", 400).await;
    let sums = checksums(&ms[0], "k1").await;

    tracing::info!("--- start the move, kill -9 the target once data flows");
    let op = move_in_flight(&ms[0], &ms[0], "k1", "m2").await;
    ms[1].kill();
    let (err, _) = wait_op(&ms[0], &op, MOVE)
        .await
        .expect_err("the move fails");
    tracing::info!(%err, "move failed as it should");
    assert!(err.contains("m2"), "the cause names the target: {err}");

    tracing::info!("--- the instance is whole and running on m1");
    assert_eq!(location(&ms[0], "k1").await, "m1");
    assert_eq!(ms[0].status("k1").await, InstanceStatus::Running);
    assert_eq!(checksums(&ms[0], "k1").await, sums);

    tracing::info!("--- the restarted target holds nothing of it");
    ms[1].start_again().await;
    wait_until("m2 holds nothing of k1", MOVE, || async {
        !disks.holds(&ms[1], "k1")
    })
    .await;
    assert!(disks.holds(&ms[0], "k1"));
    ms[0].change_state("k1", "stop", true).await.expect("stop");
}

/// Killing the source mid-transfer: once it is back, it undoes the move from the journal:
/// the instance (which kept running) is whole on the source, the target holds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_source_mid_transfer_undoes_the_move() {
    let (disks, mut ms) = cluster(["127.0.6.77", "127.0.6.78", "127.0.6.79"]).await;
    create_on(&ms[0], "m1", "s1", "local", &[], true).await;
    write_data(&ms[0], "s1", 400).await;
    let sums = checksums(&ms[0], "s1").await;

    tracing::info!("--- start the move through m3, kill -9 the source once data flows");
    move_in_flight(&ms[2], &ms[0], "s1", "m2").await;
    ms[0].kill();

    tracing::info!("--- the restarted source undoes the move");
    ms[0].start_again().await;
    wait_until("m2 holds nothing of s1", MOVE, || async {
        !disks.holds(&ms[1], "s1")
    })
    .await;
    assert_eq!(location(&ms[1], "s1").await, "m1");
    assert_eq!(ms[0].status("s1").await, InstanceStatus::Running);
    assert_eq!(checksums(&ms[0], "s1").await, sums);

    tracing::info!("--- and the instance moves fine afterwards");
    move_to(&ms[1], "s1", "m2").await.expect("move s1 again");
    assert_eq!(ms[1].status("s1").await, InstanceStatus::Running);
    assert_eq!(checksums(&ms[1], "s1").await, sums);
    ms[1].change_state("s1", "stop", true).await.expect("stop");
}

/// A target whose disk fills up mid-transfer: the move fails with the cause, the instance
/// is whole and running on the source, the target holds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_target_disk_loses_nothing() {
    let (disks, mut ms) = cluster(["127.0.6.79", "127.0.6.70", "127.0.6.71"]).await;
    disks.small_disk(&ms[1], 64);
    ms[1].stop_daemon().await;
    ms[1].start_again().await;
    create_on(&ms[0], "m1", "f1", "local", &[], true).await;
    write_data(&ms[0], "f1", 150).await;
    let sums = checksums(&ms[0], "f1").await;

    tracing::info!("--- move to m2, whose disk is 64 MiB");
    let err = move_to(&ms[0], "f1", "m2")
        .await
        .expect_err("the move fails");
    tracing::info!(%err, "move failed as it should");
    assert!(
        err.contains("space"),
        "the cause says the disk is full: {err}"
    );
    assert_eq!(location(&ms[1], "f1").await, "m1");
    assert_eq!(ms[0].status("f1").await, InstanceStatus::Running);
    assert_eq!(checksums(&ms[0], "f1").await, sums);
    assert!(!disks.holds(&ms[1], "f1"), "{:?}", disks.entries(&ms[1]));
    ms[0].change_state("f1", "stop", true).await.expect("stop");
}

/// `lxc move` with LXD 5.0.2's client.
#[tokio::test(flavor = "multi_thread")]
async fn lxc_move_target() {
    require_lxc();
    let (_disks, ms) = cluster(["127.0.6.72", "127.0.6.73", "127.0.6.74"]).await;
    create_on(&ms[0], "m1", "l1", "local", &[], true).await;
    create_on(&ms[0], "m1", "l2", "local", &[], false).await;

    tracing::info!("--- lxc move of a running container without --stateless: refused");
    let out = ms[0].lxc(&["move", "l1", "--target", "m2"]).await;
    let err = out.failure();
    assert!(err.contains("--stateless"), "{err}");
    assert_eq!(status(&ms[0], "l1").await, "Running");
    assert_eq!(location(&ms[0], "l1").await, "m1");

    tracing::info!("--- lxc move --stateless of the running one, lxc move of the stopped one");
    ms[1]
        .lxc(&["move", "l1", "--target", "m2", "--stateless"])
        .await
        .success();
    assert_eq!(location(&ms[0], "l1").await, "m2");
    assert_eq!(status(&ms[1], "l1").await, "Running");
    ms[2].lxc(&["move", "l2", "--target", "m3"]).await.success();
    assert_eq!(location(&ms[0], "l2").await, "m3");
    assert_eq!(status(&ms[2], "l2").await, "Stopped");

    tracing::info!("--- a stopped container with boot.autostart starts on its target");
    create_on(&ms[0], "m1", "l3", "local", &[], false).await;
    ms[0]
        .lxc(&["config", "set", "l3", "boot.autostart", "true"])
        .await
        .success();
    ms[0].lxc(&["move", "l3", "--target", "m2"]).await.success();
    assert_eq!(location(&ms[0], "l3").await, "m2");
    assert_eq!(status(&ms[1], "l3").await, "Running");
    ms[1].change_state("l3", "stop", true).await.expect("stop");

    tracing::info!("--- drover move, back to m1");
    let out = tokio::process::Command::new(droverd_bin().with_file_name("drover"))
        .args(["move", "l1", "--target", "m1"])
        .env("DROVER_DIR", ms[2].state_dir())
        .output()
        .await
        .expect("run drover move");
    assert!(
        out.status.success(),
        "drover move: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(location(&ms[0], "l1").await, "m1");
    assert_eq!(status(&ms[0], "l1").await, "Running");
    ms[0].change_state("l1", "stop", true).await.expect("stop");
}
