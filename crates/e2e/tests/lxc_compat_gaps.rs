//! `lxc` 5.0.2 commands a compatibility pass found missing or wrong, against real droverd
//! processes: each answers as LXD 5.0.2 does. Instance names start with `gap`.

use drover_e2e::{Member, require_lxc};

/// What does this test do?
/// - `lxc list --all-projects` (`GET /1.0/instances?all-projects=true`) lists every
///   instance with its project (`default`) in the PROJECT column, as CSV and as JSON
/// - naming a project too is refused as LXD refuses it, by the client and by the API
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_list_all_projects_lists_every_instance_with_its_project() {
    require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    m.lxc(&["launch", "busybox", "gap1"]).await.success();
    m.lxc(&["init", "busybox", "gap2"]).await.success();

    let out = m
        .lxc(&["list", "--all-projects", "-f", "csv", "-c", "ens"])
        .await;
    let rows: Vec<&str> = out.success().stdout.lines().collect();
    assert_eq!(
        rows,
        ["default,gap1,RUNNING", "default,gap2,STOPPED"],
        "lxc list --all-projects"
    );

    let out = m.lxc(&["list", "--all-projects", "-f", "json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&out.success().stdout)
        .unwrap_or_else(|e| panic!("lxc list -f json: {e}: {}", out.stdout));
    let names: Vec<(&str, &str)> = listed
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["project"].as_str().unwrap_or(""),
                        i["name"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, [("default", "gap1"), ("default", "gap2")]);

    let out = m
        .lxc(&["list", "--all-projects", "--project", "default"])
        .await;
    assert!(
        out.failure()
            .contains("Can't specify --project with --all-projects"),
        "{}",
        out.stderr
    );
    let out = m
        .lxc(&["query", "/1.0/instances?all-projects=true&project=default"])
        .await;
    assert!(
        out.failure()
            .contains("Cannot specify a project when requesting all projects"),
        "{}",
        out.stderr
    );
}

/// What does this test do?
/// - server keys of LXD 5.0.2 that drover only stores (`images.auto_update_interval`,
///   `images.remote_cache_expiry`, `images.compression_algorithm`,
///   `core.https_allowed_origin`) are set with `lxc config set`, read back with `lxc config
///   get` and shown by `lxc config show`; `lxc config unset` removes one
/// - a value of the wrong type, and an unknown key, are refused as LXD refuses them and
///   nothing is stored
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_config_set_takes_lxd_server_keys_and_checks_them() {
    require_lxc();
    let m = Member::start().await;
    let keys = [
        ("images.auto_update_interval", "6"),
        ("images.remote_cache_expiry", "3"),
        ("images.compression_algorithm", "xz"),
        ("core.https_allowed_origin", "*"),
    ];
    for (key, value) in keys {
        m.lxc(&["config", "set", key, value]).await.success();
        let out = m.lxc(&["config", "get", key]).await;
        assert_eq!(out.success().stdout.trim(), value, "lxc config get {key}");
    }
    let out = m.lxc(&["config", "show"]).await;
    let shown = &out.success().stdout;
    for (key, value) in keys {
        let line = format!("{key}: {value}");
        let quoted = format!("{key}: \"{value}\"");
        let single = format!("{key}: '{value}'");
        assert!(
            shown.contains(&line) || shown.contains(&quoted) || shown.contains(&single),
            "no {line} in lxc config show:\n{shown}"
        );
    }
    m.lxc(&["config", "unset", "images.remote_cache_expiry"])
        .await
        .success();
    let out = m
        .lxc(&["config", "get", "images.remote_cache_expiry"])
        .await;
    assert_eq!(out.success().stdout.trim(), "");

    for (key, value, want) in [
        (
            "images.auto_update_interval",
            "soon",
            "cannot set 'images.auto_update_interval' to 'soon': Invalid value for an integer",
        ),
        (
            "core.https_allowed_credentials",
            "maybe",
            "Invalid value for a boolean",
        ),
        (
            "images.compression_algorithm",
            "rar",
            "cannot set 'images.compression_algorithm' to 'rar'",
        ),
        (
            "images.auto_update_intervall",
            "6",
            "cannot set 'images.auto_update_intervall' to '6': unknown key",
        ),
    ] {
        let out = m.lxc(&["config", "set", key, value]).await;
        assert!(
            out.failure().contains(want),
            "{key}={value}: {}",
            out.stderr
        );
    }
    for (key, kept) in [
        ("images.auto_update_interval", "6"),
        ("images.compression_algorithm", "xz"),
    ] {
        let out = m.lxc(&["config", "get", key]).await;
        assert_eq!(out.success().stdout.trim(), kept, "{key} after a refusal");
    }
    let out = m.lxc(&["config", "show"]).await;
    assert!(
        !out.success().stdout.contains("intervall"),
        "{}",
        out.stdout
    );
}
