//! Any member answers any request: instance requests go to the member that holds the
//! instance, `?target=` creates on a chosen member, operations and events of the whole
//! cluster are visible from every member.
//!
//! Members listen on 127.0.0.50–59 (free ports), so these tests run in parallel with the
//! other HTTPS and cluster tests.

use std::time::Duration;

use api::InstanceStatus;
use drover_e2e::{
    Member, busybox_request, form_cluster, location, require_lxc, wait_until, within,
};
use futures::StreamExt;
use serde_json::{Value, json};

/// How long an instance operation through another member may take.
const OP: Duration = Duration::from_secs(60);

/// `m`'s `GET /1.0/instances?recursion=2`: name → (location, status, state.status).
async fn listing(m: &Member) -> Vec<(String, String, String, String)> {
    let r = m.raw("GET", "/1.0/instances?recursion=2", None).await;
    r.metadata()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
            (
                s(&v["name"]),
                s(&v["location"]),
                s(&v["status"]),
                s(&v["state"]["status"]),
            )
        })
        .collect()
}

/// Every operation id `m` lists (`GET /1.0/operations?recursion=1`), with its location.
async fn operations(m: &Member) -> Vec<(String, String)> {
    let r = m.raw("GET", "/1.0/operations?recursion=1", None).await;
    let mut out = Vec::new();
    if let Some(groups) = r.metadata().as_object() {
        for items in groups.values() {
            for op in items.as_array().into_iter().flatten() {
                out.push((
                    op["id"].as_str().unwrap_or_default().to_string(),
                    op["location"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// The lifecycle events `events` delivers up to and including `action` of instance `name`.
async fn lifecycle_until(
    events: &mut client::EventStream,
    action: &str,
    name: &str,
) -> Vec<api::Event> {
    let source = format!("/1.0/instances/{name}");
    within(&format!("{action} of {name}"), OP, async {
        let mut seen = Vec::new();
        while let Some(ev) = events.next().await {
            let ev = ev.expect("an event");
            let last = ev.metadata["action"] == action && ev.metadata["source"] == source.as_str();
            seen.push(ev);
            if last {
                return seen;
            }
        }
        panic!("event stream ended before {action} of {name}: {seen:?}");
    })
    .await
}

/// Runs `lxc <args>` against `m` in a pseudo-terminal (`script`), typing `input`; returns
/// what the terminal showed.
async fn lxc_in_a_pty(m: &Member, args: &str, input: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &format!("lxc {args}"), "/dev/null"])
        .env("LXD_DIR", m.state_dir())
        .env_remove("LXD_PROJECT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run script (util-linux)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).await.expect("type");
    let out = child.wait_with_output().await.expect("script output");
    drop(stdin);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What does this test do?
/// - three real members form a cluster on 127.0.0.50–52; busybox is imported on m1; a
///   client listens to m1's events
/// - create `c1` on m1 with `?target=m3`: the operation runs on m3 (`location: m3`) and
///   the instance is on m3, as every member says
/// - a target no member has, or a bad body, is refused and creates nothing
/// - operate c1 only through m2: get with its ETag, start, state, exec (output and exit
///   code through the forwarded websockets), a PUT with a stale ETag refused, stop
/// - m1's event stream saw m3's lifecycle events of c1, with `location: m3`, and only once
/// - every member lists both instances with the right location and state (c2 on m1)
/// - an operation of m3 is listed by every member and found by id on m1 and m2; m1's
///   join token operation is cancelled through m2
/// - rename c1 through m2, delete it through m2: gone for every member
/// - kill m3: its instance `c3` lists as `Error` and the list still answers; restart it:
///   m1 relays its events again
/// - move c3 to m1 through m2: every member, m3 included, sends its requests to m1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_member_answers_for_any_instance() {
    let [m1, m2, mut m3]: [Member; 3] = form_cluster(&["127.0.0.50", "127.0.0.51", "127.0.0.52"])
        .await
        .try_into()
        .expect("three members");
    m1.import_busybox().await;
    let mut events = m1.client().events(&["lifecycle"]).await.expect("events");

    tracing::info!("--- create c1 on m1 with ?target=m3");
    let req = busybox_request("c1", &[], false);
    let op = m1
        .client()
        .create_instance(&req, Some("m3"))
        .await
        .expect("create c1 on m3");
    assert_eq!(op.location, "m3", "the create runs on m3: {op:?}");
    let done = m1.wait_op(&op).await.expect("create finishes");
    assert_eq!(done.location, "m3");
    for m in [&m1, &m2, &m3] {
        assert_eq!(location(m, "c1").await, "m3");
    }

    tracing::info!("--- a target no member has, or a bad body, creates nothing");
    let r = m1
        .raw(
            "POST",
            "/1.0/instances?target=nope",
            Some(
                &json!({"name": "c9", "source": {"type": "image", "alias": "busybox"}}).to_string(),
            ),
        )
        .await;
    assert_eq!(r.expect_error(404), "Cluster member not found");
    let r = m1
        .raw("POST", "/1.0/instances?target=m3", Some("{not json"))
        .await;
    r.expect_error(400);
    let r = m2.raw("GET", "/1.0/instances/c9", None).await;
    assert_eq!(r.expect_error(404), "Instance not found");

    tracing::info!("--- operate c1 through m2: get, start, state, exec, stop");
    let (inst, etag) = m2.client().instance_with_etag("c1").await.expect("get c1");
    assert_eq!(inst.location, "m3");
    assert!(
        etag.is_some(),
        "the ETag comes through the forwarding member"
    );
    let started = m2.change_state("c1", "start", false).await.expect("start");
    assert_eq!(started.location, "m3");
    assert_eq!(m2.status("c1").await, InstanceStatus::Running);
    assert!(m2.pid("c1").await > 0, "m2 shows m3's state of c1");
    let out = m2
        .exec(
            "c1",
            &["sh", "-c", "cat /etc/hostname; echo err >&2; exit 3"],
        )
        .await
        .expect("exec through m2");
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout.trim(), "c1", "{out:?}");
    assert_eq!(out.stderr.trim(), "err", "{out:?}");
    let put = api::instances::InstancePut {
        description: Some("changed".into()),
        ..Default::default()
    };
    let stale = m2
        .client()
        .replace_instance("c1", &put, Some("not-the-etag"))
        .await
        .expect_err("a stale ETag");
    assert!(
        matches!(stale, client::Error::Api { status: 412, .. }),
        "{stale:?}"
    );

    tracing::info!("--- m1's event stream saw m3's events of c1");
    let ev = drover_e2e::expect_lifecycle(&mut events, "instance-started", "c1", OP).await;
    assert_eq!(ev.location, "m3", "{ev:?}");

    tracing::info!("--- every member lists every instance with its state");
    m1.launch("c2", &[]).await;
    let between = lifecycle_until(&mut events, "instance-started", "c2").await;
    assert!(
        !between
            .iter()
            .any(|e| e.metadata["source"] == "/1.0/instances/c1"),
        "m3's events reach m1 once: {between:?}"
    );
    for m in [&m1, &m2, &m3] {
        let mut got = listing(m).await;
        got.sort();
        assert_eq!(
            got,
            [
                ("c1".into(), "m3".into(), "Running".into(), "Running".into()),
                ("c2".into(), "m1".into(), "Running".into(), "Running".into()),
            ],
        );
    }

    tracing::info!("--- m3's operations are visible from every member");
    let stop = m2
        .client()
        .update_instance_state(
            "c1",
            &api::InstanceStatePut {
                action: "stop".into(),
                timeout: -1,
                force: true,
                stateful: false,
            },
        )
        .await
        .expect("stop c1");
    assert_eq!(stop.location, "m3");
    for m in [&m1, &m2, &m3] {
        wait_until("the stop operation listed", OP, || async {
            operations(m)
                .await
                .contains(&(stop.id.clone(), "m3".to_string()))
        })
        .await;
    }
    for m in [&m1, &m2] {
        let r = m
            .raw("GET", &format!("/1.0/operations/{}", stop.id), None)
            .await;
        assert_eq!(r.metadata()["location"], "m3", "{}", r.text);
    }
    let waited = m1
        .raw(
            "GET",
            &format!("/1.0/operations/{}/wait?timeout=30", stop.id),
            None,
        )
        .await;
    assert_eq!(waited.metadata()["status"], "Success", "{}", waited.text);
    assert_eq!(m1.status("c1").await, InstanceStatus::Stopped);
    let r = m1
        .raw(
            "GET",
            "/1.0/operations/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(r.expect_error(404), "Operation not found");

    tracing::info!("--- m1's join token operation is cancelled through m2");
    let r = m1
        .raw(
            "POST",
            "/1.0/cluster/members",
            Some(&json!({"server_name": "m9"}).to_string()),
        )
        .await;
    let token = r.metadata()["id"].as_str().unwrap_or_default().to_string();
    let r = m2
        .raw("DELETE", &format!("/1.0/operations/{token}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = m3
        .raw(
            "GET",
            &format!("/1.0/operations/{token}/wait?timeout=10"),
            None,
        )
        .await;
    assert_eq!(r.metadata()["status"], "Cancelled", "{}", r.text);
    assert_eq!(r.metadata()["location"], "m1", "{}", r.text);

    tracing::info!("--- rename and delete c1 through m2");
    let r = m2
        .raw(
            "POST",
            "/1.0/instances/c1",
            Some(&json!({"name": "c1b"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let renamed: api::Operation = serde_json::from_value(r.metadata().clone()).expect("op");
    m2.wait_op(&renamed).await.expect("rename");
    assert_eq!(location(&m1, "c1b").await, "m3");
    m2.delete("c1b").await.expect("delete through m2");
    for m in [&m1, &m2, &m3] {
        let r = m.raw("GET", "/1.0/instances/c1b", None).await;
        assert_eq!(r.expect_error(404), "Instance not found");
    }

    tracing::info!("--- m3 is killed: its instances show Error, the list still answers");
    let op = m1
        .client()
        .create_instance(&busybox_request("c3", &[], false), Some("m3"))
        .await
        .expect("create c3 on m3");
    assert_eq!(op.location, "m3");
    m1.wait_op(&op).await.expect("c3 created");
    m3.kill();
    let mut got = listing(&m1).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("c2".into(), "m1".into(), "Running".into(), "Running".into()),
            ("c3".into(), "m3".into(), "Error".into(), String::new()),
        ],
    );

    tracing::info!("--- m3 restarts: m1 relays its events again");
    m3.start_again().await;
    let put = api::instances::InstancePut {
        description: Some("after the restart".into()),
        ..Default::default()
    };
    within("m1 relays m3's events again", OP, async {
        loop {
            // Refused while m3 comes back; each try that lands publishes an event on m3.
            let _ = m1.client().patch_instance("c3", &put).await;
            let next = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
            // Earlier events still queued are skipped.
            if let Ok(Some(Ok(ev))) = next
                && ev.location == "m3"
                && ev.metadata["action"] == "instance-updated"
                && ev.metadata["source"] == "/1.0/instances/c3"
            {
                break;
            }
        }
    })
    .await;

    tracing::info!("--- c3 moves from m3 to m1 through m2; its former member still answers for it");
    let body = json!({"name": "c3", "migration": true, "live": false});
    let r = m2
        .raw(
            "POST",
            "/1.0/instances/c3?target=m1",
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let moved: api::Operation = serde_json::from_value(r.metadata().clone()).expect("op");
    m2.wait_op(&moved).await.expect("move c3 to m1");
    for m in [&m1, &m2, &m3] {
        assert_eq!(location(m, "c3").await, "m1");
    }
    let started = m3
        .change_state("c3", "start", false)
        .await
        .expect("start c3 via m3");
    assert_eq!(started.location, "m1");
    assert_eq!(m2.status("c3").await, InstanceStatus::Running);
    m2.change_state("c3", "stop", true).await.expect("stop c3");
    m2.delete("c3").await.expect("delete c3 through m2");
    m1.change_state("c2", "stop", true).await.expect("stop c2");
    m1.delete("c2").await.expect("delete c2");
}

/// What does this test do?
/// - three real members form a cluster on 127.0.0.53–55; busybox is imported on m1
/// - LXD 5.0.2's `lxc` against m1: `lxc launch busybox c2 --target m3`
/// - `lxc list` shows LOCATION m3 for it
/// - `lxc exec c2 -- hostname` prints `c2` (through m1's forwarded websockets), and an
///   interactive `lxc exec` (a pty) echoes what is typed
/// - `lxc stop c2` and `lxc delete c2`: gone from every member
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_drives_an_instance_on_another_member() {
    require_lxc();
    let members = form_cluster(&["127.0.0.53", "127.0.0.54", "127.0.0.55"]).await;
    let (m1, m3) = (&members[0], &members[2]);
    m1.import_busybox().await;

    tracing::info!("--- lxc launch busybox c2 --target m3");
    m1.lxc(&["launch", "busybox", "c2", "--target", "m3"])
        .await
        .success();
    assert_eq!(location(m3, "c2").await, "m3");

    tracing::info!("--- lxc list shows LOCATION m3");
    let out = m1.lxc(&["list", "-f", "csv", "-c", "nsL"]).await;
    out.success();
    assert_eq!(out.stdout.trim(), "c2,RUNNING,m3", "{}", out.stdout);

    tracing::info!("--- lxc exec through m1");
    let out = m1.lxc(&["exec", "c2", "--", "hostname"]).await;
    out.success();
    assert_eq!(out.stdout.trim(), "c2", "{}", out.stdout);
    let out = m1.lxc(&["exec", "c2", "--", "sh", "-c", "exit 7"]).await;
    assert_eq!(out.code, 7, "{out:?}");
    let typed = within(
        "interactive lxc exec",
        OP,
        lxc_in_a_pty(m1, "exec c2 -- sh", b"echo hello-$((6*7))\nexit\n"),
    )
    .await;
    assert!(typed.contains("hello-42"), "{typed}");

    tracing::info!("--- lxc stop and delete c2");
    m1.lxc(&["stop", "c2"]).await.success();
    assert_eq!(m3.status("c2").await, InstanceStatus::Stopped);
    m1.lxc(&["delete", "c2"]).await.success();
    for m in &members {
        let r = m.raw("GET", "/1.0/instances/c2", None).await;
        assert_eq!(r.expect_error(404), "Instance not found");
    }
}
