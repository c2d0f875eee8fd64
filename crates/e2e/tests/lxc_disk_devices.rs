//! Disk devices with a host source, the way an operator adds them with LXD's `lxc` 5.0.2
//! client: mounted at once into a running container and at every start, read-only when
//! asked, gone when removed, and refused cleanly when wrong. Instance names start with `dsk`.

use drover_e2e::{Member, disk_add, require_lxc};

/// Runs `lxc args` on `m`, which must fail with `want` in its error.
async fn refused(m: &Member, args: &[&str], want: &str) {
    let out = m.lxc(args).await;
    assert!(out.failure().contains(want), "lxc {args:?}: {}", out.stderr);
}

/// What `cmd` prints inside `name` (which must succeed).
async fn inside(m: &Member, name: &str, cmd: &str) -> String {
    let out = m.lxc(&["exec", name, "--", "sh", "-c", cmd]).await;
    out.success();
    out.stdout.clone()
}

/// What does this test do?
/// - `lxc config device add dsk1 data disk source=<dir> path=/mnt/data` on a running
///   container: the host directory shows inside at once, and writes go both ways
/// - `readonly=true` mounts it read-only (`Read-only file system` inside)
/// - `lxc config device show` lists both; `lxc config device remove` unmounts at once
/// - refused with nothing changed: a missing source, a second device on the same path, a
///   custom volume (`pool=`), a non-boolean `readonly`
/// - a restart mounts what the config says; a stopped instance gets the disk at its start
/// - adding a disk whose source is missing is refused, also to a stopped instance (`Failed
///   add validation`); a required source that went missing later fails the start in LXD's
///   words (`Missing source path`); `required=false` lets it start without that disk; a
///   relative `path` is under the instance's root, as in LXD
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_disks_are_mounted_live_and_at_start() {
    require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    let host = tempfile::tempdir().expect("a host directory");
    let share = host.path().join("share");
    std::fs::create_dir(&share).expect("mkdir share");
    std::fs::write(share.join("hello"), "from the host\n").expect("write hello");
    let src = format!("source={}", share.display());
    m.lxc(&["launch", "busybox", "dsk1"]).await.success();

    tracing::info!("--- add a host disk to a running container");
    m.lxc(&disk_add("dsk1", "data", &[&src, "path=/mnt/data"]))
        .await
        .success();
    assert_eq!(
        inside(&m, "dsk1", "cat /mnt/data/hello").await,
        "from the host\n"
    );
    inside(&m, "dsk1", "echo back > /mnt/data/back").await;
    assert_eq!(
        std::fs::read_to_string(share.join("back")).expect("written inside"),
        "back\n"
    );

    tracing::info!("--- readonly=true");
    m.lxc(&disk_add(
        "dsk1",
        "ro",
        &[&src, "path=/mnt/ro", "readonly=true"],
    ))
    .await
    .success();
    let out = m
        .lxc(&["exec", "dsk1", "--", "touch", "/mnt/ro/nope"])
        .await;
    assert!(
        out.failure().contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(!share.join("nope").exists());
    let out = m.lxc(&["config", "device", "show", "dsk1"]).await;
    for want in ["data:", "path: /mnt/data", "ro:", "readonly: \"true\""] {
        assert!(
            out.success().stdout.contains(want),
            "{want}: {}",
            out.stdout
        );
    }

    tracing::info!("--- bad disks are refused, nothing changed");
    refused(
        &m,
        &disk_add("dsk1", "bad", &["source=/nonexistent/dsk", "path=/mnt/bad"]),
        "Missing source path \"/nonexistent/dsk\" for disk \"bad\"",
    )
    .await;
    refused(
        &m,
        &disk_add("dsk1", "dup", &[&src, "path=/mnt/ro"]),
        "More than one disk device uses the same path \"/mnt/ro\"",
    )
    .await;
    refused(
        &m,
        &disk_add("dsk1", "vol", &["pool=default", "source=v1", "path=/mnt/v"]),
        "custom storage volumes are not supported",
    )
    .await;
    refused(
        &m,
        &disk_add("dsk1", "bool", &[&src, "path=/mnt/bool", "readonly=maybe"]),
        "Device validation failed for \"bool\": Invalid value for device option \"readonly\"",
    )
    .await;
    let out = m.lxc(&["config", "device", "list", "dsk1"]).await;
    let mut listed: Vec<&str> = out.success().stdout.split_whitespace().collect();
    listed.sort_unstable();
    assert_eq!(listed, ["data", "ro"]);
    assert_eq!(inside(&m, "dsk1", "ls /mnt").await, "data\nro\n");

    tracing::info!("--- remove unmounts at once; a restart mounts what the config says");
    m.lxc(&["config", "device", "remove", "dsk1", "data"])
        .await
        .success();
    assert_eq!(inside(&m, "dsk1", "ls /mnt/data").await, "");
    m.lxc(&["restart", "dsk1"]).await.success();
    assert_eq!(
        inside(&m, "dsk1", "cat /mnt/ro/hello").await,
        "from the host\n"
    );
    assert_eq!(inside(&m, "dsk1", "ls /mnt/data").await, "");

    tracing::info!("--- a stopped instance gets its disk at start; a missing source fails it");
    m.lxc(&["init", "busybox", "dsk2"]).await.success();
    m.lxc(&disk_add("dsk2", "data", &[&src, "path=/srv/data"]))
        .await
        .success();
    let gone = host.path().join("gone");
    let gone_src = format!("source={}", gone.display());
    let add_gone = disk_add("dsk2", "gone", &[&gone_src, "path=srv/gone"]);
    refused(
        &m,
        &add_gone,
        &format!(
            "Failed add validation for device \"gone\": Missing source path {:?}",
            gone.display().to_string()
        ),
    )
    .await;
    std::fs::create_dir(&gone).expect("mkdir gone");
    m.lxc(&add_gone).await.success();
    std::fs::remove_dir(&gone).expect("rmdir gone");
    refused(
        &m,
        &["start", "dsk2"],
        &format!(
            "Missing source path {:?} for disk \"gone\"",
            gone.display().to_string()
        ),
    )
    .await;
    let out = m.lxc(&["list", "dsk2", "-c", "ns", "-f", "csv"]).await;
    assert_eq!(out.success().stdout, "dsk2,STOPPED\n");
    m.lxc(&["config", "device", "set", "dsk2", "gone", "required=false"])
        .await
        .success();
    m.lxc(&["start", "dsk2"]).await.success();
    assert_eq!(
        inside(&m, "dsk2", "cat /srv/data/hello").await,
        "from the host\n"
    );
    std::fs::create_dir(&gone).expect("mkdir gone again");
    std::fs::write(gone.join("back"), "b\n").expect("write back");
    m.lxc(&["restart", "dsk2"]).await.success();
    assert_eq!(
        inside(&m, "dsk2", "cat /srv/gone/back").await,
        "b\n",
        "a relative path is under the instance's root"
    );

    m.lxc(&["delete", "--force", "dsk1", "dsk2"])
        .await
        .success();
    assert!(
        share.join("hello").exists(),
        "the host directory is left alone"
    );
}
