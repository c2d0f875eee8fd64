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
