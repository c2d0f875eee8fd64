//! Everyday `lxc` 5.0.2 commands an LXD user runs without thinking, against one real
//! droverd: the ones drover supports answer as LXD does, the ones it does not support fail
//! with a clear error and change nothing. Instance names start with `evd`.

use drover_e2e::{Member, require_lxc};

/// Runs `lxc args` on `m`, which must fail with `want` in its error.
async fn refused(m: &Member, args: &[&str], want: &str) {
    let out = m.lxc(args).await;
    assert!(out.failure().contains(want), "lxc {args:?}: {}", out.stderr);
}

/// Runs `lxc args` on `m`, which must succeed and print each of `want`.
async fn shows(m: &Member, args: &[&str], want: &[&str]) {
    let out = m.lxc(args).await;
    let shown = &out.success().stdout;
    for line in want {
        assert!(
            shown.contains(line),
            "no {line:?} in lxc {args:?}:\n{shown}"
        );
    }
}

/// The `lxc config show` YAML of `name` (its devices, config and profiles).
async fn config_of(m: &Member, name: &str) -> String {
    let out = m.lxc(&["config", "show", name]).await;
    out.success();
    out.stdout.clone()
}

/// What does this test do?
/// - `lxc warning list` is empty, `lxc warning show` of an unknown one is a 404
/// - `lxc network list` lists the host's interfaces, unmanaged; `lxc network show lo` is a
///   loopback; `lxc network create` is refused
/// - `lxc project list|show` know `default` (with the instance in its `used_by`);
///   `lxc project create` and `lxc project delete default` are refused
/// - `lxc console --show-log` of a container shows what its PID 1 printed
/// - `lxc info --resources` shows CPU and memory, `lxc storage info default` the pool's
///   space and the instance using it, `lxc storage volume info` the instance's volume
/// - `lxc image edit` and `lxc image alias rename` are refused, image and alias unchanged;
///   so is `lxc publish`, no image made
/// - `lxc snapshot` and `lxc export` are refused in plain words, the instance unchanged
/// - a second root disk (`lxc config device add evd1 r2 disk path=/ pool=default`, or in
///   a create request beside the profile's) is refused as LXD refuses it (`More than one
///   root device found`), nothing changed or created
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_lxc_commands_answer_or_refuse_cleanly() {
    require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    m.lxc(&["launch", "busybox", "evd1"]).await.success();

    tracing::info!("--- lxc warning list");
    let out = m.lxc(&["warning", "list", "-f", "csv"]).await;
    assert_eq!(out.success().stdout, "", "no warnings");
    refused(
        &m,
        &["warning", "show", "0b4e2f0e-0000-4000-8000-000000000000"],
        "Warning not found",
    )
    .await;

    tracing::info!("--- lxc network list/show/create");
    let out = m.lxc(&["network", "list", "-f", "csv"]).await;
    out.success();
    for line in out.stdout.lines() {
        assert!(line.contains(",NO,"), "unmanaged: {line}");
    }
    shows(
        &m,
        &["network", "show", "lo"],
        &["name: lo", "type: loopback", "managed: false"],
    )
    .await;
    refused(&m, &["network", "show", "nosuch0"], "Network not found").await;
    refused(
        &m,
        &["network", "create", "evdbr0"],
        "Managed networks are not supported by drover",
    )
    .await;

    tracing::info!("--- lxc project list/show/create/delete");
    let out = m.lxc(&["project", "list", "-f", "csv"]).await;
    assert!(
        out.success()
            .stdout
            .starts_with("default (current),YES,YES,YES,YES,"),
        "{}",
        out.stdout
    );
    let out = m.lxc(&["project", "show", "default"]).await;
    assert!(
        out.success().stdout.contains("- /1.0/instances/evd1"),
        "{}",
        out.stdout
    );
    refused(
        &m,
        &["project", "create", "evdp"],
        "Projects other than 'default' are not supported by drover",
    )
    .await;
    refused(
        &m,
        &["project", "delete", "default"],
        "The 'default' project cannot be deleted",
    )
    .await;
    refused(&m, &["list", "--project", "evdp"], "Project not found").await;
    let out = m.lxc(&["list", "--project", "default", "-f", "csv"]).await;
    assert!(
        out.success().stdout.starts_with("evd1,RUNNING,"),
        "{}",
        out.stdout
    );

    // LXD 5.0.2 has no GET of a member's state: 501, as it answers.
    let r = m.raw("GET", "/1.0/cluster/members/none/state", None).await;
    assert_eq!(r.status, 501, "{}", r.text);
    assert_eq!(r.body["error"], "not implemented", "{}", r.text);

    tracing::info!("--- lxc console --show-log of a container: what its PID 1 printed");
    m.lxc(&[
        "exec",
        "evd1",
        "--",
        "sh",
        "-c",
        "echo evd-marker > /proc/1/fd/1",
    ])
    .await
    .success();
    shows(&m, &["console", "evd1", "--show-log"], &["evd-marker"]).await;

    tracing::info!("--- lxc info --resources, lxc storage info");
    shows(
        &m,
        &["info", "--resources"],
        &["CPU (", "Cores:", "Memory:", "Total: "],
    )
    .await;
    shows(
        &m,
        &["storage", "info", "default"],
        &["driver: dir", "space used: ", "total space: ", "- evd1"],
    )
    .await;

    shows(
        &m,
        &["storage", "volume", "info", "default", "container/evd1"],
        &["Name: evd1", "Type: container", "Usage: "],
    )
    .await;

    tracing::info!("--- lxc snapshot, lxc export: refused, nothing changes");
    let before = config_of(&m, "evd1").await;
    refused(
        &m,
        &["snapshot", "evd1", "snap0"],
        "Instance snapshots are not supported by drover",
    )
    .await;
    let backup = tempfile::tempdir().expect("a temp dir");
    let file = backup.path().join("evd1.tar.gz");
    refused(
        &m,
        &["export", "evd1", file.to_str().expect("utf-8")],
        "Instance backups are not supported by drover",
    )
    .await;
    assert!(!file.exists(), "no backup file written");
    let out = m.lxc(&["info", "evd1"]).await;
    assert!(
        !out.success().stdout.contains("Snapshots:"),
        "{}",
        out.stdout
    );

    tracing::info!("--- lxc image edit, lxc image alias rename: refused, nothing changes");
    let out = m
        .lxc_stdin(&["image", "edit", "busybox"], b"public: true\n")
        .await;
    assert!(
        out.failure()
            .contains("Editing an image's properties is not supported by drover"),
        "{}",
        out.stderr
    );
    refused(
        &m,
        &["image", "alias", "rename", "busybox", "bb"],
        "Changing an image alias is not supported by drover",
    )
    .await;
    let out = m.lxc(&["image", "alias", "list", "-f", "csv"]).await;
    assert!(
        out.success().stdout.starts_with("busybox,"),
        "{}",
        out.stdout
    );
    let out = m.lxc(&["image", "show", "busybox"]).await;
    assert!(
        out.success().stdout.contains("public: false"),
        "{}",
        out.stdout
    );

    m.lxc(&["stop", "evd1"]).await.success();
    refused(
        &m,
        &["publish", "evd1", "--alias", "evdimg"],
        "Publishing an instance as an image is not supported by drover",
    )
    .await;
    let out = m.lxc(&["image", "list", "-f", "csv"]).await;
    assert_eq!(out.success().stdout.lines().count(), 1, "{}", out.stdout);
    m.lxc(&["start", "evd1"]).await.success();

    tracing::info!("--- a second root disk is refused");
    refused(
        &m,
        &[
            "config",
            "device",
            "add",
            "evd1",
            "r2",
            "disk",
            "path=/",
            "pool=default",
        ],
        "More than one root device found",
    )
    .await;
    assert_eq!(config_of(&m, "evd1").await, before, "nothing changed");
    let body = serde_json::json!({
        "name": "evd2",
        "source": {"type": "image", "alias": "busybox"},
        "devices": {"r2": {"type": "disk", "path": "/", "pool": "default"}},
    });
    let r = m
        .raw("POST", "/1.0/instances", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("More than one root device found"),
        "{}",
        r.text
    );
    let out = m.lxc(&["list", "-f", "csv"]).await;
    assert!(!out.success().stdout.contains("evd2"), "{}", out.stdout);

    m.lxc(&["delete", "--force", "evd1"]).await.success();
}

/// The `lxc list -f csv` row of `name` as `m` sees it.
async fn row(m: &Member, name: &str) -> String {
    let out = m.lxc(&["list", "-f", "csv"]).await;
    out.success();
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", out.stdout))
        .to_string()
}

/// What does this test do?
/// - two members (127.0.8.11–12); `lxc launch busybox evc1 --target m2`, a file written
///   in it
/// - `lxc copy evc1 evc2` through m1: the copy is made on m2 (where its source is),
///   stopped, with the file, and its image's `copy` templates rendered (`/etc/hostname`
///   reads `evc2`); `-c` overrides a key; the source is unchanged and still running
/// - `lxc copy evc1 evc4 --target m1` makes a stopped copy on m1
/// - refused with nothing created: a copy of a missing instance, onto an existing name
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_copy_copies_on_the_source_member() {
    require_lxc();
    let members = drover_e2e::form_cluster(&["127.0.8.11", "127.0.8.12"]).await;
    let (m1, m2) = (&members[0], &members[1]);
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "evc1", "--target", "m2"])
        .await
        .success();
    m1.lxc(&["exec", "evc1", "--", "sh", "-c", "echo kept > /root/mark"])
        .await
        .success();

    tracing::info!("--- lxc copy evc1 evc2 through m1");
    m1.lxc(&["copy", "evc1", "evc2", "-c", "user.note=copied"])
        .await
        .success();
    let r = row(m1, "evc2").await;
    assert!(r.starts_with("evc2,STOPPED,") && r.ends_with(",m2"), "{r}");
    let out = m2.lxc(&["config", "get", "evc2", "user.note"]).await;
    assert_eq!(out.success().stdout, "copied\n");
    m1.lxc(&["start", "evc2"]).await.success();
    let out = m1
        .lxc(&["exec", "evc2", "--", "cat", "/etc/hostname", "/root/mark"])
        .await;
    assert_eq!(out.success().stdout, "evc2\nkept\n");
    let out = m2
        .lxc(&["exec", "evc1", "--", "cat", "/etc/hostname"])
        .await;
    assert_eq!(out.success().stdout, "evc1\n", "the source keeps its name");
    assert!(row(m2, "evc1").await.starts_with("evc1,RUNNING,"));

    tracing::info!("--- a copy onto another member (--target m1) is made there, stopped");
    m2.lxc(&["copy", "evc1", "evc4", "--target", "m1"])
        .await
        .success();
    let r = row(m2, "evc4").await;
    assert!(r.starts_with("evc4,STOPPED,") && r.ends_with(",m1"), "{r}");

    tracing::info!("--- refusals create nothing");
    refused(m1, &["copy", "evcnone", "evc3"], "not found").await;
    refused(m2, &["copy", "evc1", "evc2"], "already exists").await;
    let out = m1.lxc(&["list", "-f", "csv"]).await;
    assert!(!out.success().stdout.contains("evc3"), "{}", out.stdout);

    m1.lxc(&["delete", "--force", "evc1", "evc2", "evc4"])
        .await
        .success();
}

/// What does this test do?
/// - two members (127.0.8.13–14); `lxc cluster role remove m2 database` is refused in
///   LXD's words and m2 keeps the role; `lxc cluster role add m2 database-standby` is
///   refused (database roles follow the Raft group); `lxc cluster rename m2 m9` is refused and m2 keeps
///   its name; `lxc cluster add` of a name that is not a host name makes no token; a
///   partial `lxc cluster edit m2` (no roles) still applies
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_cluster_role_and_rename_refusals_change_nothing() {
    require_lxc();
    let members = drover_e2e::form_cluster(&["127.0.8.13", "127.0.8.14"]).await;
    let m1 = &members[0];
    refused(
        m1,
        &["cluster", "role", "remove", "m2", "database"],
        "The 'database' role cannot be dropped at this time",
    )
    .await;
    refused(
        m1,
        &["cluster", "role", "add", "m2", "database-standby"],
        "Invalid cluster role 'database-standby'",
    )
    .await;
    refused(
        m1,
        &["cluster", "rename", "m2", "m9"],
        "Renaming a cluster member is not supported by drover",
    )
    .await;
    for bad in ["bad name", "m_2", "m2-"] {
        refused(
            m1,
            &["cluster", "add", bad],
            &format!("Invalid cluster member name {bad:?}"),
        )
        .await;
    }
    let out = m1.lxc(&["cluster", "list-tokens", "-f", "csv"]).await;
    assert_eq!(out.success().stdout, "", "no token made");
    m1.lxc_stdin(
        &["cluster", "edit", "m2"],
        b"description: kept\ngroups:\n- default\n",
    )
    .await
    .success();
    shows(
        m1,
        &["cluster", "show", "m2"],
        &["server_name: m2", "- database", "description: kept"],
    )
    .await;
}
