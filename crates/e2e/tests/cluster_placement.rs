//! Placement, cluster groups and member removal on a real three-member cluster.
//!
//! Each test uses its own loopback addresses (127.0.0.6x) and free ports.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_e2e::{
    HttpsClient, Member, RawResponse, busybox_request, form_cluster, instance_list, require_lxc,
    wait_until,
};
use serde_json::{Value, json};

/// Deadline of one create, start included, when the image must first reach the member.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

/// `POST path` with `body` on `m`, then waits for the operation; returns the final
/// operation (or the synchronous error answer).
async fn create(m: &Member, path: &str, body: &Value) -> RawResponse {
    let r = m.raw("POST", path, Some(&body.to_string())).await;
    if r.status != 202 {
        return r;
    }
    let id = r.metadata()["id"].as_str().unwrap_or_default().to_string();
    let wait = format!(
        "/1.0/operations/{id}/wait?timeout={}",
        CREATE_TIMEOUT.as_secs()
    );
    m.raw("GET", &wait, None).await
}

/// Launches busybox `name` through `m` at `path`; asserts it succeeded.
async fn launch(m: &Member, path: &str, name: &str) {
    let body = serde_json::to_value(busybox_request(name, &[], true)).expect("json");
    let done = create(m, path, &body).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.metadata()["status"], "Success", "{}", done.text);
}

/// Instance name → member, as `m` lists them.
async fn locations(m: &Member) -> BTreeMap<String, String> {
    instance_list(m)
        .await
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["location"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The names of the cluster's members, as `m` lists them.
async fn member_names(m: &Member) -> Vec<String> {
    let r = m.raw("GET", "/1.0/cluster/members?recursion=1", None).await;
    r.metadata()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| v["server_name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn count_on(placed: &BTreeMap<String, String>, member: &str) -> usize {
    placed.values().filter(|m| *m == member).count()
}

/// What does this test do?
/// - forms a three-member cluster and imports busybox on m1
/// - launches six containers through m1 without a target: they spread two per member
/// - creates the cluster group `fast` and puts m3 in it with `drover cluster group`; two
///   launches with `?target=@fast` land on m3; `@nope` is refused
/// - m1 set to `scheduler.instance=manual` (PATCH with the ETag): automatic placement
///   avoids it, a launch targeted at it by name still lands there
/// - `limits.memory` larger than any member is refused with each member's reason, and
///   creates nothing
/// - groups through the API: default holds everyone, rename, delete refused while members
///   remain; `lxc cluster group list` reads them and `lxc cluster group assign` sets them
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_spread_honour_groups_and_capacity() {
    let members = form_cluster(&["127.0.0.60", "127.0.0.61", "127.0.0.62"]).await;
    let (m1, m2, m3) = (&members[0], &members[1], &members[2]);
    m1.import_busybox().await;

    tracing::info!("--- six launches without a target spread over the members");
    for i in 1..=6 {
        launch(m1, "/1.0/instances", &format!("c{i}")).await;
    }
    let placed = locations(m2).await;
    assert_eq!(placed.len(), 6, "{placed:?}");
    for m in ["m1", "m2", "m3"] {
        assert_eq!(count_on(&placed, m), 2, "{placed:?}");
    }

    tracing::info!("--- drover cluster group create fast; assign m3 to default,fast");
    m2.drover(&[
        "cluster",
        "group",
        "create",
        "fast",
        "--description",
        "quick ones",
    ])
    .await
    .success();
    m2.drover(&["cluster", "group", "assign", "m3", "default,fast"])
        .await
        .success();
    let listed = m1.drover(&["cluster", "group", "list", "-f", "csv"]).await;
    let rows: Vec<&str> = listed.success().stdout.lines().collect();
    assert_eq!(
        rows,
        ["default,Default cluster group,3", "fast,quick ones,1"]
    );
    let m3_row = m1.raw("GET", "/1.0/cluster/members/m3", None).await;
    assert_eq!(m3_row.metadata()["groups"], json!(["default", "fast"]));

    tracing::info!("--- launches at @fast land on m3");
    launch(m1, "/1.0/instances?target=@fast", "f1").await;
    launch(m2, "/1.0/instances?target=@fast", "f2").await;
    let placed = locations(m1).await;
    assert_eq!(placed["f1"], "m3", "{placed:?}");
    assert_eq!(placed["f2"], "m3", "{placed:?}");
    let f1 = m2.raw("GET", "/1.0/instances/f1", None).await;
    assert_eq!(
        f1.metadata()["config"]["volatile.cluster.group"],
        "fast",
        "{}",
        f1.text
    );
    let body = serde_json::to_value(busybox_request("g1", &[], false)).expect("json");
    let refused = create(m1, "/1.0/instances?target=@nope", &body).await;
    assert!(refused.status >= 400, "{}", refused.text);
    assert!(refused.text.contains("nope"), "{}", refused.text);

    tracing::info!("--- m1 manual: placed automatically elsewhere, by name still there");
    let client = m1.client();
    let (current, etag) = client.cluster_member_etag("m1").await.expect("m1");
    let etag = etag.expect("an ETag");
    let mut manual = api::cluster::ClusterMemberPut {
        config: current.config.clone(),
        description: current.description.clone(),
        failure_domain: current.failure_domain.clone(),
        groups: current.groups.clone(),
        roles: current.roles.clone(),
    };
    manual
        .config
        .insert("scheduler.instance".into(), "manual".into());
    let stale = client
        .update_cluster_member("m1", &manual, Some("not-the-etag"))
        .await;
    assert!(
        matches!(stale, Err(client::Error::Api { status: 412, .. })),
        "{stale:?}"
    );
    client
        .update_cluster_member("m1", &manual, Some(&etag))
        .await
        .expect("PUT with the ETag");
    let bad = m1
        .raw(
            "PATCH",
            "/1.0/cluster/members/m1",
            Some(&json!({"config": {"scheduler.instance": "sometimes"}}).to_string()),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    // m2 holds 2, m3 holds 4: the next automatic one goes to m2 (m1, with 2, is manual).
    launch(m1, "/1.0/instances", "a1").await;
    launch(m1, "/1.0/instances?target=m1", "t1").await;
    let placed = locations(m3).await;
    assert_eq!(placed["a1"], "m2", "{placed:?}");
    assert_eq!(placed["t1"], "m1", "{placed:?}");

    tracing::info!("--- limits.memory larger than any member: refused with reasons");
    let huge = serde_json::to_value(busybox_request(
        "huge",
        &[("limits.memory", "100TiB")],
        true,
    ))
    .expect("json");
    let refused = create(m2, "/1.0/instances", &huge).await;
    assert!(refused.status >= 400, "{}", refused.text);
    let why = refused.text.clone();
    assert!(why.contains("m1: scheduler.instance is manual"), "{why}");
    for m in ["m2", "m3"] {
        assert!(
            why.contains(&format!("{m}: not enough free memory (needs 100.00TiB")),
            "{why}"
        );
    }
    assert!(!locations(m1).await.contains_key("huge"));

    tracing::info!("--- groups through the API");
    let fast = m3.raw("GET", "/1.0/cluster/groups/fast", None).await;
    assert_eq!(
        fast.metadata(),
        &json!({"name": "fast", "description": "quick ones", "members": ["m3"]})
    );
    let in_use = m3.raw("DELETE", "/1.0/cluster/groups/fast", None).await;
    assert_eq!(in_use.status, 400, "{}", in_use.text);
    let default_gone = m3.raw("DELETE", "/1.0/cluster/groups/default", None).await;
    assert_eq!(default_gone.status, 400, "{}", default_gone.text);
    m3.drover(&["cluster", "group", "rename", "fast", "quick"])
        .await
        .success();
    let put = m3
        .raw(
            "PUT",
            "/1.0/cluster/groups/quick",
            Some(&json!({"description": "", "members": []}).to_string()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    require_lxc();
    let out = m2.lxc(&["cluster", "group", "list", "-f", "csv"]).await;
    assert!(out.success().stdout.contains("quick"), "{}", out.stdout);
    // lxc 5.0.2 assigns with a PUT of the member it read (roles included).
    m2.lxc(&["cluster", "group", "assign", "m2", "default,quick"])
        .await
        .success();
    let group = m1.raw("GET", "/1.0/cluster/groups/quick", None).await;
    assert_eq!(group.metadata()["members"], json!(["m2"]), "{}", group.text);
    m2.lxc(&["cluster", "group", "assign", "m2", "default"])
        .await
        .success();
    m3.drover(&["cluster", "group", "delete", "quick"])
        .await
        .success();
    let groups = m1.raw("GET", "/1.0/cluster/groups", None).await;
    assert_eq!(
        groups.metadata(),
        &json!(["/1.0/cluster/groups/default"]),
        "{}",
        groups.text
    );
}

/// What does this test do?
/// - forms a three-member cluster; c1 lives on m3
/// - `drover cluster remove m3` (and lxc 5.0.2's) is refused with LXD's message while c1
///   is there, and changes nothing
/// - `drover cluster remove m3 --force` from a follower removes it: two members listed,
///   two Raft voters, writes still work, c1 is forgotten
/// - m3's certificate is no longer trusted by the others
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_removed_only_when_empty_unless_forced() {
    let members = form_cluster(&["127.0.0.63", "127.0.0.64", "127.0.0.65"]).await;
    let (m1, m2, m3) = (&members[0], &members[1], &members[2]);
    m1.import_busybox().await;
    let body = serde_json::to_value(busybox_request("c1", &[], false)).expect("json");
    let done = create(m1, "/1.0/instances?target=m3", &body).await;
    assert_eq!(done.metadata()["status"], "Success", "{}", done.text);

    let m3_identity = tls::Identity::load_or_create(&m3.state_dir(), "server", "", &[])
        .expect("m3's certificate");
    let info = m1.raw("GET", "/1.0", None).await;
    let pin = info.metadata()["environment"]["certificate_fingerprint"]
        .as_str()
        .expect("cluster fingerprint")
        .to_string();
    let m1_address = info.metadata()["config"]["core.https_address"]
        .as_str()
        .expect("m1's address")
        .parse()
        .expect("address");
    let as_m3 = HttpsClient::new(m1_address, Some(&m3_identity), &pin);
    let before = as_m3.request("GET", "/1.0", None).await;
    assert_eq!(before.metadata()["auth"], "trusted", "{}", before.text);

    tracing::info!("--- remove m3 while it holds c1: refused, by drover and by lxc");
    let out = m2.drover(&["cluster", "remove", "m3"]).await;
    assert!(
        out.failure()
            .contains("Node still has the following containers: c1"),
        "{}",
        out.stderr
    );
    require_lxc();
    let out = m1.lxc(&["cluster", "remove", "m3"]).await;
    assert!(
        out.failure()
            .contains("Node still has the following containers: c1"),
        "{}",
        out.stderr
    );
    assert_eq!(
        m1.raw("GET", "/1.0/cluster/members", None)
            .await
            .metadata()
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    tracing::info!("--- remove m3 --force from a follower");
    m2.drover(&["cluster", "remove", "m3", "--force"])
        .await
        .success();
    for m in [m1, m2] {
        wait_until("two members listed", Duration::from_secs(30), || async {
            member_names(m).await == ["m1", "m2"]
        })
        .await;
    }
    let listed = m1
        .raw("GET", "/1.0/cluster/members?recursion=1", None)
        .await;
    for v in listed.metadata().as_array().cloned().unwrap_or_default() {
        assert_eq!(v["database"], true, "{v}");
        assert_eq!(v["status"], "Online", "{v}");
    }
    assert!(locations(m1).await.is_empty());
    let r = m1
        .raw(
            "POST",
            "/1.0/profiles",
            Some(&json!({"name": "after-remove"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_until("the write on m2", Duration::from_secs(30), || async {
        m2.raw("GET", "/1.0/profiles/after-remove", None)
            .await
            .status
            == 200
    })
    .await;

    tracing::info!("--- m3 is no longer trusted");
    let after = as_m3.request("GET", "/1.0", None).await;
    assert_eq!(after.metadata()["auth"], "untrusted", "{}", after.text);
    let gone = m1.raw("GET", "/1.0/cluster/members/m3", None).await;
    assert_eq!(gone.status, 404, "{}", gone.text);
}

/// What does this test do?
/// - forms a three-member cluster and finds the Raft leader (role `database-leader`)
/// - asks a follower to remove the leader itself (`DELETE /1.0/cluster/members/<leader>`)
/// - the removal succeeds: the two others list two members and take writes
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_itself_can_be_removed() {
    let members = form_cluster(&["127.0.9.1", "127.0.9.2", "127.0.9.3"]).await;
    let listed = members[0]
        .raw("GET", "/1.0/cluster/members?recursion=1", None)
        .await;
    let leader = listed
        .metadata()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|v| {
            v["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "database-leader"))
        })
        .and_then(|v| v["server_name"].as_str().map(str::to_string))
        .expect("a member has the database-leader role");
    let others: Vec<&Member> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| format!("m{}", i + 1) != leader)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(others.len(), 2, "leader {leader}");

    tracing::info!(%leader, "--- remove the leader through a follower");
    let r = others[0]
        .raw("DELETE", &format!("/1.0/cluster/members/{leader}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for m in &others {
        wait_until("two members listed", Duration::from_secs(30), || async {
            let names = member_names(m).await;
            names.len() == 2 && !names.contains(&leader)
        })
        .await;
    }
    let r = others[1]
        .raw(
            "POST",
            "/1.0/profiles",
            Some(&json!({"name": "after-leader-left"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
