//! Bad requests get LXD's error envelope with the right status and change nothing.
//!
//! Requests are raw HTTP, so malformed bodies reach the daemon as sent. The error messages
//! are the ones droverd answers today (snapshots: a changed wording shows up here).
//! Instance names are unique across the e2e suite (daemons share the cgroup parent).

use std::path::PathBuf;
use std::time::Duration;

use drover_e2e::Member;
use serde_json::{Value, json};

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct World {
    /// `GET /1.0/instances?recursion=1`.
    instances: Value,
    /// Status of each instance (`GET .../state`).
    statuses: Vec<(String, String)>,
    /// `GET /1.0/images?recursion=1`.
    images: Value,
    /// `GET /1.0/images/aliases?recursion=1`.
    aliases: Value,
    /// Entries of the default pool's volume directory.
    volumes: Vec<String>,
    /// Entries of the image store directory.
    image_files: Vec<String>,
}

fn entries(dir: PathBuf) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn world(m: &Member) -> World {
    let instances = m
        .raw("GET", "/1.0/instances?recursion=1", None)
        .await
        .metadata()
        .clone();
    let mut statuses = Vec::new();
    for inst in instances.as_array().expect("instance list") {
        let name = inst["name"].as_str().expect("name").to_string();
        let state = m
            .raw("GET", &format!("/1.0/instances/{name}/state"), None)
            .await;
        statuses.push((name, state.metadata()["status"].to_string()));
    }
    World {
        instances,
        statuses,
        images: m
            .raw("GET", "/1.0/images?recursion=1", None)
            .await
            .metadata()
            .clone(),
        aliases: m
            .raw("GET", "/1.0/images/aliases?recursion=1", None)
            .await
            .metadata()
            .clone(),
        volumes: m.volume_entries(),
        image_files: entries(m.state_dir().join("images")),
    }
}

/// One refused request: what is sent and what must come back.
struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: String,
    status: u16,
    error: String,
}

/// The "status" of a case whose request is accepted (202) and whose operation then fails
/// with the case's error.
const ASYNC_FAILURE: u16 = 0;

fn case(
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: impl Into<String>,
    status: u16,
    error: impl Into<String>,
) -> Case {
    Case {
        what,
        method,
        path,
        body: body.into(),
        status,
        error: error.into(),
    }
}

fn create_body(name: &str, config: Value) -> String {
    json!({"name": name, "source": {"type": "image", "alias": "busybox"}, "config": config})
        .to_string()
}

/// What does this test do?
///
/// 1. Sets up: the busybox image, `bad-run` (running) and `bad-stop` (stopped).
/// 2. Sends each refused request below; for every one: the HTTP status, LXD's envelope
///    (`type: error`, `error_code` = status) and the exact message; and instances (with
///    their status), images, aliases, volume dirs and image files are unchanged.
///    - malformed and empty JSON bodies;
///    - invalid instance names (`1abc`, `-x`, `a_b`, 64 characters);
///    - unknown image alias and fingerprint, unknown pool in the root device;
///    - a duplicate name (409);
///    - an unknown state action; starting a running instance and stopping a stopped one
///      (accepted, their operations fail, as in LXD 5.0.2);
///    - invalid config (`cluster.evacuate=sometimes`, `limits.memory=lots`, an unknown key)
///      on create, on PUT and on PATCH;
///    - exec in a stopped instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_answer_lxd_errors_and_change_nothing() {
    let m = Member::start().await;
    m.import_busybox().await;

    tracing::info!("--- set up bad-run (running) and bad-stop (stopped)");
    m.launch("bad-run", &[]).await;
    m.create(&drover_e2e::busybox_request("bad-stop", &[], false))
        .await
        .expect("create bad-stop");
    let long = "a".repeat(64);
    let evacuate = json!({"cluster.evacuate": "sometimes"});
    let memory = json!({"limits.memory": "lots"});
    let unknown = json!({"bogus.key": "1"});
    let evacuate_err = r#"Invalid config: Invalid value "sometimes" (not one of [auto migrate live-migrate stop force-stop])"#;
    let memory_err = "Invalid config: Invalid value: lots";
    let unknown_err = "Invalid config: Unknown configuration key: bogus.key";

    let cases = vec![
        case(
            "malformed JSON",
            "POST",
            "/1.0/instances",
            r#"{"name": "x","#,
            400,
            "Invalid request body: EOF while parsing a value at line 1 column 13",
        ),
        case(
            "empty body",
            "POST",
            "/1.0/instances",
            "",
            400,
            "Request body is empty",
        ),
        case(
            "name starting with a digit",
            "POST",
            "/1.0/instances",
            create_body("1abc", json!({})),
            400,
            "Invalid instance name: Name must not start with a number",
        ),
        case(
            "name starting with a hyphen",
            "POST",
            "/1.0/instances",
            create_body("-x", json!({})),
            400,
            r#"Invalid instance name: Name must not start with "-" character"#,
        ),
        case(
            "name with an underscore",
            "POST",
            "/1.0/instances",
            create_body("a_b", json!({})),
            400,
            "Invalid instance name: Name can only contain alphanumeric and hyphen characters",
        ),
        case(
            "name of 64 characters",
            "POST",
            "/1.0/instances",
            create_body(&long, json!({})),
            400,
            "Invalid instance name: Name must be 1-63 characters long",
        ),
        case(
            "unknown image alias",
            "POST",
            "/1.0/instances",
            json!({"name": "bad-x", "source": {"type": "image", "alias": "nope"}}).to_string(),
            404,
            r#"Image "nope" not found"#,
        ),
        case(
            "unknown image fingerprint",
            "POST",
            "/1.0/instances",
            json!({"name": "bad-x", "source": {"type": "image", "fingerprint": "deadbeef"}})
                .to_string(),
            404,
            r#"Image "deadbeef" not found"#,
        ),
        case(
            "unknown pool in the root device",
            "POST",
            "/1.0/instances",
            json!({
                "name": "bad-x",
                "source": {"type": "image", "alias": "busybox"},
                "devices": {"root": {"type": "disk", "path": "/", "pool": "nopool"}}
            })
            .to_string(),
            404,
            r#"Storage pool "nopool" not found"#,
        ),
        case(
            "duplicate name",
            "POST",
            "/1.0/instances",
            create_body("bad-run", json!({})),
            409,
            r#"Instance "bad-run" already exists"#,
        ),
        // Accepted, then the operation fails, as in LXD 5.0.2 (ASYNC_FAILURE).
        case(
            "start a running instance",
            "PUT",
            "/1.0/instances/bad-run/state",
            json!({"action": "start"}).to_string(),
            ASYNC_FAILURE,
            "The instance is already running",
        ),
        case(
            "stop a stopped instance",
            "PUT",
            "/1.0/instances/bad-stop/state",
            json!({"action": "stop"}).to_string(),
            ASYNC_FAILURE,
            "The instance is already stopped",
        ),
        case(
            "unknown state action",
            "PUT",
            "/1.0/instances/bad-run/state",
            json!({"action": "jump"}).to_string(),
            400,
            "Unknown action: 'jump'",
        ),
        case(
            "create with cluster.evacuate=sometimes",
            "POST",
            "/1.0/instances",
            create_body("bad-x", evacuate.clone()),
            400,
            evacuate_err,
        ),
        case(
            "create with limits.memory=lots",
            "POST",
            "/1.0/instances",
            create_body("bad-x", memory.clone()),
            400,
            memory_err,
        ),
        case(
            "create with an unknown key",
            "POST",
            "/1.0/instances",
            create_body("bad-x", unknown.clone()),
            400,
            unknown_err,
        ),
        case(
            "PUT cluster.evacuate=sometimes",
            "PUT",
            "/1.0/instances/bad-stop",
            json!({"config": evacuate, "devices": {}, "profiles": ["default"]}).to_string(),
            400,
            evacuate_err,
        ),
        case(
            "PUT limits.memory=lots",
            "PUT",
            "/1.0/instances/bad-run",
            json!({"config": memory, "devices": {}, "profiles": ["default"]}).to_string(),
            400,
            memory_err,
        ),
        case(
            "PUT an unknown key",
            "PUT",
            "/1.0/instances/bad-stop",
            json!({"config": unknown, "devices": {}, "profiles": ["default"]}).to_string(),
            400,
            unknown_err,
        ),
        case(
            "PATCH cluster.evacuate=sometimes",
            "PATCH",
            "/1.0/instances/bad-run",
            json!({"config": evacuate}).to_string(),
            400,
            evacuate_err,
        ),
        case(
            "PATCH limits.memory=lots",
            "PATCH",
            "/1.0/instances/bad-stop",
            json!({"config": memory}).to_string(),
            400,
            memory_err,
        ),
        case(
            "PATCH an unknown key",
            "PATCH",
            "/1.0/instances/bad-run",
            json!({"config": unknown}).to_string(),
            400,
            unknown_err,
        ),
        case(
            "exec in a stopped instance",
            "POST",
            "/1.0/instances/bad-stop/exec",
            json!({"command": ["true"], "wait-for-websocket": false}).to_string(),
            400,
            "Instance is not running",
        ),
    ];

    let before = world(&m).await;
    assert_eq!(before.statuses.len(), 2, "{:?}", before.statuses);
    let mut mismatches = Vec::new();
    for c in &cases {
        tracing::info!("--- refused: {}", c.what);
        let body = (!c.body.is_empty()).then_some(c.body.as_str());
        let resp = m.raw(c.method, c.path, body).await;
        let error = if c.status == ASYNC_FAILURE {
            assert_eq!(resp.status, 202, "{}: {:?}", c.what, resp.body);
            let op: api::Operation =
                serde_json::from_value(resp.body["metadata"].clone()).expect("operation record");
            m.wait_op(&op)
                .await
                .expect_err("the operation fails")
                .to_string()
        } else {
            resp.expect_error(c.status)
        };
        if error != c.error {
            mismatches.push(format!(
                "{}: expected {:?}, got {:?}",
                c.what, c.error, error
            ));
        }
        let after = world(&m).await;
        assert_eq!(after, before, "{} changed the world", c.what);
    }
    assert!(
        mismatches.is_empty(),
        "error messages differ:\n{}",
        mismatches.join("\n")
    );
}

/// What does this test do?
///
/// 1. Uploads 64 KiB of garbage as an image.
/// 2. The upload is refused, or its operation fails, with a message saying why.
/// 3. No image, alias or image file is left behind, and the upload scratch file is gone.
#[tokio::test]
async fn a_garbage_image_import_fails_and_leaves_no_image() {
    let m = Member::start().await;
    let before = world(&m).await;

    tracing::info!("--- upload garbage as an image");
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| u8::try_from(i.wrapping_mul(2_654_435_761) >> 24).unwrap_or(0))
        .collect();
    let resp = m.raw_bytes("POST", "/1.0/images", garbage).await;
    let error = if resp.status == 202 {
        let op: api::Operation =
            serde_json::from_value(resp.body["metadata"].clone()).expect("operation record");
        let err = m.wait_op(&op).await.expect_err("import of garbage fails");
        err.to_string()
    } else {
        resp.expect_error(400)
    };
    tracing::info!(%error, "garbage import refused");
    assert!(
        error.starts_with("Failed importing image: "),
        "unexpected error: {error}"
    );

    tracing::info!("--- nothing left");
    assert_eq!(world(&m).await, before);
    let uploads = m.state_dir().join("uploads");
    assert_eq!(
        entries(uploads),
        Vec::<String>::new(),
        "upload scratch left"
    );
}

/// What does this test do?
///
/// 1. Imports busybox, then hides the unpacked image's `rootfs/` (a damaged image store),
///    so that a create passes validation and fails while making the volume.
/// 2. The create operation fails with a message naming the missing rootfs.
/// 3. No record and no volume directory (nor a half-made temporary one) is left behind.
/// 4. With the rootfs back, the same create succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_failing_midway_leaves_no_volume_and_no_record() {
    let m = Member::start().await;
    let fingerprint = m.import_busybox().await;
    let rootfs = m
        .state_dir()
        .join("images")
        .join(format!("{fingerprint}.unpacked"))
        .join("rootfs");
    assert!(rootfs.is_dir(), "{} missing", rootfs.display());
    let hidden = rootfs.with_file_name("rootfs.hidden");
    let before = world(&m).await;

    tracing::info!("--- create bad-mid with the image rootfs hidden");
    std::fs::rename(&rootfs, &hidden).expect("hide the image rootfs");
    let req = drover_e2e::busybox_request("bad-mid", &[], true);
    let err = m
        .create(&req)
        .await
        .expect_err("create without the image rootfs fails");
    std::fs::rename(&hidden, &rootfs).expect("restore the image rootfs");
    let msg = err.to_string();
    tracing::info!(%msg, "create failed");
    assert!(msg.contains("rootfs"), "message names the rootfs: {msg}");

    tracing::info!("--- nothing left");
    let resp = m.raw("GET", "/1.0/instances/bad-mid", None).await;
    assert_eq!(resp.expect_error(404), "Instance not found");
    assert_eq!(world(&m).await, before);

    tracing::info!("--- the same create works with the image whole");
    drover_e2e::within("create bad-mid", Duration::from_secs(60), m.create(&req))
        .await
        .expect("create bad-mid");
    // The rootfs is an overlay mounted in the daemon's mount namespace: look through it.
    let pid = m.daemon_pid().expect("daemon running");
    let rootfs = std::path::Path::new(&format!("/proc/{pid}/root"))
        .join(m.volume_dir("bad-mid").strip_prefix("/").expect("absolute"))
        .join("rootfs/bin");
    assert!(rootfs.is_dir(), "{} missing", rootfs.display());
}

/// What does this test do?
///
/// 1. A method a resource does not have (`DELETE /1.0/profiles`,
///    `PUT /1.0/operations`) answers LXD's error envelope with 405, not an empty body.
/// 2. The profile is still there.
#[tokio::test]
async fn unsupported_methods_answer_an_error_envelope() {
    let m = drover_e2e::Member::start().await;
    let msg = m
        .raw("DELETE", "/1.0/profiles", None)
        .await
        .expect_error(405);
    assert_eq!(msg, "method not allowed");
    m.raw("PUT", "/1.0/operations", Some("{}"))
        .await
        .expect_error(405);
    assert_eq!(
        m.raw("GET", "/1.0/profiles/default", None).await.status,
        200
    );
}
