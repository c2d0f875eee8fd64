//! A black-box sweep with LXD's `lxc` 5.0.2 against clusters formed the way an outside
//! operator forms them: `lxc config set core.https_address`, `lxc cluster enable`, `lxc
//! cluster add` for a token, and the join as `PUT /1.0/cluster` (through `lxc query`) on
//! the new member with `cluster_token`. Each test covers what a side-by-side run against a
//! real LXD 5.0.2 cluster found answering differently. Instance names start with `sw`.
//!
//! Members listen on 127.0.51.11–20 (free ports).

use drover_e2e::{CLUSTER_SETTLE, Member, free_address, printed_token, require_lxc, wait_until};

/// Runs `lxc args` on `m`, which must fail saying exactly `Error: {want}`.
async fn refused(m: &Member, args: &[&str], want: &str) {
    let out = m.lxc(args).await;
    let stderr = out.failure();
    assert!(
        stderr.lines().any(|l| l == format!("Error: {want}")),
        "lxc {args:?}: want `Error: {want}`, got:\n{stderr}"
    );
}

/// What `cmd` prints inside `name` (which must succeed).
async fn inside(m: &Member, name: &str, cmd: &str) -> String {
    let out = m.lxc(&["exec", name, "--", "sh", "-c", cmd]).await;
    out.success();
    out.stdout.clone()
}

/// Starts `ips.len()` members and forms a cluster `m1`, `m2`, ... of them with `lxc` only:
/// `lxc config set core.https_address` and `lxc cluster enable m1` on the first, `lxc
/// cluster add mN` there, and `lxc query -X PUT /1.0/cluster` on each joiner with the
/// token in `cluster_token`. Returns once every member lists all of them ONLINE.
async fn form_with_lxc(ips: &[&str]) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    let mut via = String::new();
    for (i, ip) in ips.iter().enumerate() {
        let m = Member::start().await;
        let name = format!("m{}", i + 1);
        let address = free_address(ip).to_string();
        if i == 0 {
            m.lxc(&["config", "set", "core.https_address", &address])
                .await
                .success();
            m.lxc(&["cluster", "enable", &name]).await.success();
            via = address;
        } else {
            join_with_lxc(&members[0], &via, &m, &name, &address).await;
        }
        members.push(m);
    }
    for m in &members {
        wait_until("every member ONLINE", CLUSTER_SETTLE, || async {
            let states = drover_e2e::lxc_member_states(m).await;
            states.len() == ips.len() && states.iter().all(|(_, s)| s == "ONLINE")
        })
        .await;
    }
    members
}

/// Joins `m` as `name` on `address`: a token from `lxc cluster add` on `first`, then `lxc
/// query -X PUT /1.0/cluster` on `m` with it in `cluster_token`, through `via`.
async fn join_with_lxc(first: &Member, via: &str, m: &Member, name: &str, address: &str) {
    let token = printed_token(&first.lxc(&["cluster", "add", name]).await);
    let der = tls::fetch_certificate(via.parse().expect("cluster address"))
        .await
        .expect("fetch the cluster certificate");
    let body = serde_json::json!({
        "server_name": name,
        "enabled": true,
        "server_address": address,
        "cluster_address": via,
        "cluster_certificate": tls::certificate_pem(&der),
        "cluster_token": token,
        "member_config": [],
    });
    m.lxc(&[
        "query",
        "-X",
        "PUT",
        "/1.0/cluster",
        "--data",
        &body.to_string(),
    ])
    .await
    .success();
}

/// The memory limit (bytes) the kernel holds for the process `pid`'s cgroup (v1
/// `memory.limit_in_bytes` or v2 `memory.max`).
fn memory_limit(pid: i64) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let file = if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else {
            continue;
        };
        if let Ok(v) = std::fs::read_to_string(&file) {
            return v.trim().to_string();
        }
    }
    panic!("no memory cgroup for pid {pid}:\n{cgroups}");
}

/// What does this test do?
///
/// Two members formed with `lxc` and a `cluster_token` join; `sw1` runs on m2 and `sw3`
/// on m1 with profiles `default,swp`. Everything is asked through m1:
/// - `lxc profile device add swp data disk source=<dir> path=/mnt/data` mounts the host
///   directory into the running `sw1` and `sw3` at once, as LXD applies a profile to the instances
///   using it; `lxc profile device remove` unmounts it at once; a disk whose source is
///   missing is reported per instance in LXD's words, the profile change kept (as LXD)
/// - `lxc profile set swp limits.memory 80MiB` reaches the running `sw1`'s cgroup at once,
///   `lxc profile unset` lifts it
/// - a bad profile key or device is refused in LXD's words (no `Invalid config:` /
///   `Invalid devices:` in front) and changes nothing
/// - `lxc profile unset` and a `PATCH` with an empty value remove the key (LXD stores no
///   empty value); `lxc config set user.sweep yes` (a free-form server key) is taken and
///   read back through m2
/// - `lxc move sw1 sw9` of the running `sw1`: `Renaming of running container not allowed`;
///   onto a name in use: `Name "sw2" already in use` first, as LXD checks
/// - `lxc move sw2 --target m1` of an instance already on m1: LXD's `Target must be
///   different than instance's current location`, nothing moved
/// - `lxc cluster remove m2` while `sw1` is there: LXD's `Node still has the following
///   containers: sw1`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_reach_running_instances_and_refusals_use_lxd_words() {
    require_lxc();
    let members = form_with_lxc(&["127.0.51.11", "127.0.51.12"]).await;
    let m1 = &members[0];
    m1.import_busybox().await;
    let host = tempfile::tempdir().expect("a host directory");
    std::fs::write(host.path().join("hello"), "from the profile\n").expect("write hello");
    m1.lxc(&["profile", "create", "swp"]).await.success();
    m1.lxc(&[
        "launch", "busybox", "sw1", "--target", "m2", "-p", "default", "-p", "swp",
    ])
    .await
    .success();
    m1.lxc(&[
        "launch", "busybox", "sw3", "--target", "m1", "-p", "default", "-p", "swp",
    ])
    .await
    .success();
    m1.lxc(&["init", "busybox", "sw2", "--target", "m1"])
        .await
        .success();

    tracing::info!("--- a profile disk reaches the running instance on the other member");
    let src = format!("source={}", host.path().display());
    m1.lxc(&[
        "profile",
        "device",
        "add",
        "swp",
        "data",
        "disk",
        &src,
        "path=/mnt/data",
    ])
    .await
    .success();
    for name in ["sw1", "sw3"] {
        assert_eq!(
            inside(m1, name, "cat /mnt/data/hello").await,
            "from the profile\n",
            "{name}"
        );
    }
    m1.lxc(&["profile", "device", "remove", "swp", "data"])
        .await
        .success();
    assert_eq!(
        inside(m1, "sw1", "grep -c ' /mnt/data ' /proc/mounts || true").await,
        "0\n",
        "the profile's disk is unmounted at once"
    );

    tracing::info!("--- an instance that cannot follow: LXD's report, the profile kept");
    let out = m1
        .lxc(&[
            "profile",
            "device",
            "add",
            "swp",
            "gone",
            "disk",
            "source=/nonexistent-sweep",
            "path=/mnt/gone",
        ])
        .await;
    let stderr = out.failure();
    for want in [
        "Error: The following instances failed to update (profile change still saved):",
        r#" - Project: default, Instance: sw1: Failed add validation for device "gone": Missing source path "/nonexistent-sweep" for disk "gone""#,
    ] {
        assert!(stderr.lines().any(|l| l == want), "{want}\n{stderr}");
    }
    m1.lxc(&["profile", "device", "remove", "swp", "gone"])
        .await
        .success();

    tracing::info!("--- profile limits reach the running instance");
    let pid = members[1].pid("sw1").await;
    m1.lxc(&["profile", "set", "swp", "limits.memory", "80MiB"])
        .await
        .success();
    assert_eq!(memory_limit(pid), (80u64 << 20).to_string());
    m1.lxc(&["profile", "unset", "swp", "limits.memory"])
        .await
        .success();
    assert_ne!(memory_limit(pid), (80u64 << 20).to_string(), "lifted");

    tracing::info!("--- bad profile config and devices, in LXD's words");
    refused(
        m1,
        &["profile", "set", "swp", "bogus.key", "1"],
        "Unknown configuration key: bogus.key",
    )
    .await;
    refused(
        m1,
        &["profile", "device", "add", "swp", "bad", "disk", "path=/x"],
        r#"Device validation failed for "bad": Disk entry is missing the required "source" or "path" property"#,
    )
    .await;
    let out = m1.lxc(&["profile", "show", "swp"]).await;
    assert!(
        out.success().stdout.contains("config: {}") && out.stdout.contains("devices: {}"),
        "nothing changed:\n{}",
        out.stdout
    );

    tracing::info!("--- an empty value unsets a key, as LXD stores none");
    m1.lxc(&["profile", "set", "swp", "user.note", "x"])
        .await
        .success();
    m1.lxc(&["profile", "unset", "swp", "user.note"])
        .await
        .success();
    m1.lxc(&[
        "query",
        "-X",
        "PATCH",
        "/1.0/instances/sw2",
        "--data",
        r#"{"config": {"user.gone": ""}}"#,
    ])
    .await
    .success();
    let out = m1.lxc(&["profile", "show", "swp"]).await;
    assert!(
        out.success().stdout.contains("config: {}"),
        "{}",
        out.stdout
    );
    let out = m1.lxc(&["config", "show", "sw2"]).await;
    assert!(!out.success().stdout.contains("user."), "{}", out.stdout);

    tracing::info!("--- free-form user.* server keys, as LXD 5.0.2 takes them");
    m1.lxc(&["config", "set", "user.sweep", "yes"])
        .await
        .success();
    let out = members[1].lxc(&["config", "get", "user.sweep"]).await;
    assert_eq!(out.success().stdout, "yes\n");
    m1.lxc(&["config", "unset", "user.sweep"]).await.success();
    refused(
        m1,
        &["config", "set", "zz.sweep", "1"],
        "cannot set 'zz.sweep' to '1': unknown key",
    )
    .await;

    tracing::info!("--- renames and moves refused in LXD's words");
    refused(
        m1,
        &["move", "sw1", "sw9"],
        "Renaming of running container not allowed",
    )
    .await;
    refused(m1, &["move", "sw1", "sw2"], r#"Name "sw2" already in use"#).await;
    let out = m1.lxc(&["move", "sw2", "--target", "m1"]).await;
    assert!(
        out.failure()
            .contains("Target must be different than instance's current location"),
        "{}",
        out.stderr
    );
    let out = m1.lxc(&["list", "-c", "nsL", "-f", "csv"]).await;
    assert_eq!(
        out.success().stdout,
        "sw1,RUNNING,m2\nsw2,STOPPED,m1\nsw3,RUNNING,m1\n",
        "nothing renamed or moved"
    );
    refused(
        m1,
        &["cluster", "remove", "m2"],
        "Node still has the following containers: sw1",
    )
    .await;
    m1.lxc(&["delete", "--force", "sw1", "sw2", "sw3"])
        .await
        .success();
}

/// What does this test do?
///
/// Two members formed with `lxc`; `sw5` launched on m2 (so m2 fetches the busybox image
/// files from m1), then deleted. `lxc cluster remove m2`: m2 goes back to a standalone
/// server (`lxc cluster list` there: `LXD server isn't part of a cluster`), with the image
/// files still on its disk but no record of them. `lxc image import` of the same image on
/// it works (drover answered `Image with same fingerprint already exists` and the image
/// could never be used there again), a second import is LXD's conflict, and `lxc launch`
/// from it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_imports_again_the_images_it_held() {
    require_lxc();
    let members = form_with_lxc(&["127.0.51.13", "127.0.51.14"]).await;
    let (m1, m2) = (&members[0], &members[1]);
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "sw5", "--target", "m2"])
        .await
        .success();
    m1.lxc(&["delete", "--force", "sw5"]).await.success();
    m1.lxc(&["cluster", "remove", "m2"]).await.success();
    wait_until("m2 is standalone again", CLUSTER_SETTLE, || async {
        let out = m2.lxc(&["cluster", "list"]).await;
        out.code != 0 && out.stderr.contains("LXD server isn't part of a cluster")
    })
    .await;
    let out = m2.lxc(&["image", "list", "-f", "csv"]).await;
    assert_eq!(out.success().stdout, "", "no image record left");

    let image = tokio::task::spawn_blocking(drover_e2e::busybox_image)
        .await
        .expect("build the busybox image");
    let path = image.to_str().expect("utf-8 path");
    let out = m2
        .lxc(&["image", "import", path, "--alias", "busybox"])
        .await;
    assert!(
        out.success()
            .stdout
            .contains("Image imported with fingerprint"),
        "{}",
        out.stdout
    );
    refused(
        m2,
        &["image", "import", path, "--alias", "other"],
        "Image with same fingerprint already exists",
    )
    .await;
    m2.lxc(&["launch", "busybox", "sw6"]).await.success();
    assert_eq!(inside(m2, "sw6", "cat /etc/hostname").await, "sw6\n");
    m2.lxc(&["delete", "--force", "sw6"]).await.success();
}

/// What does this test do?
///
/// Two members formed with `lxc`; the stopped `sw7` on m2. `lxc cluster remove m2 --force
/// --yes` through m1 takes m2 and its instance out, and its volume too: `lxc storage
/// volume list default` and `lxc storage show default` (`used_by`) on m1 no longer name
/// `sw7` (drover kept listing the removed member's volumes as ghosts), and the name can be
/// used again on m1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_removed_member_leaves_no_volume_behind() {
    require_lxc();
    let members = form_with_lxc(&["127.0.51.15", "127.0.51.16"]).await;
    let m1 = &members[0];
    m1.import_busybox().await;
    m1.lxc(&["init", "busybox", "sw7", "--target", "m2"])
        .await
        .success();
    let out = m1
        .lxc(&["storage", "volume", "list", "default", "-f", "csv"])
        .await;
    assert!(out.success().stdout.contains("sw7"), "{}", out.stdout);

    m1.lxc(&["cluster", "remove", "m2", "--force", "--yes"])
        .await
        .success();
    let states = drover_e2e::lxc_member_states(m1).await;
    assert_eq!(states, vec![("m1".to_string(), "ONLINE".to_string())]);
    for args in [
        &["list", "-f", "csv"][..],
        &["storage", "volume", "list", "default", "-f", "csv"][..],
        &["storage", "show", "default"][..],
    ] {
        let out = m1.lxc(args).await;
        assert!(
            !out.success().stdout.contains("sw7"),
            "lxc {args:?} still names sw7:\n{}",
            out.stdout
        );
    }
    m1.lxc(&["launch", "busybox", "sw7"]).await.success();
    let out = m1
        .lxc(&["storage", "volume", "list", "default", "-f", "csv"])
        .await;
    assert_eq!(
        out.success().stdout.matches("sw7").count(),
        1,
        "{}",
        out.stdout
    );
    m1.lxc(&["delete", "--force", "sw7"]).await.success();
}

/// What does this test do?
///
/// A member joins (`lxc query -X PUT /1.0/cluster` with a `cluster_token`) and, at once,
/// `lxc cluster evacuate m2 --force` and `lxc cluster restore m2 --force` run through m1:
/// both return (the operations run on m2 and end within milliseconds; m1 used to forward
/// them before it relayed m2's events, so `lxc` never saw them end and waited for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_on_a_member_that_just_joined_is_seen_to_end() {
    require_lxc();
    let m1 = Member::start().await;
    let via = free_address("127.0.51.17").to_string();
    m1.lxc(&["config", "set", "core.https_address", &via])
        .await
        .success();
    m1.lxc(&["cluster", "enable", "m1"]).await.success();
    let m2 = Member::start().await;
    let address = free_address("127.0.51.18").to_string();
    join_with_lxc(&m1, &via, &m2, "m2", &address).await;
    m1.lxc(&["cluster", "evacuate", "m2", "--force"])
        .await
        .success();
    m1.lxc(&["cluster", "restore", "m2", "--force"])
        .await
        .success();
    let states = drover_e2e::lxc_member_states(&m1).await;
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "ONLINE"), "{states:?}");
}
