//! Copying an instance onto another cluster member (`lxc copy c1 c2 --target m2` when `c1`
//! is on `m1`): the member asked to hold the copy has the source's member make it there
//! (the same copy as [`super::copy`]), then move it here as a stopped instance (the
//! ordinary member-to-member move). The copy is stopped, as LXD leaves it; a failed move
//! deletes the copy on the source's member, so a failure leaves nothing behind.

use std::collections::BTreeMap;
use std::time::Duration;

use api::{InstancesPost, OperationClass};
use db::instances::InstanceRecord;
use reqwest::Method;

use super::{runtime_id, url, validate};
use crate::cluster::peer::Peer;
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// How long one wait on the source member's operation lasts before asking again.
const WAIT_STEP: Duration = Duration::from_secs(30);

/// Longest a copy or its move may take on the source's member.
const STEP_DEADLINE: Duration = Duration::from_secs(3600);

/// The source of copy request `req` when another member holds it (`None` for any other
/// request, or when the source does not exist: the local copy path answers that).
///
/// # Errors
///
/// 500 on a DB failure.
pub async fn source_elsewhere(
    d: &Daemon,
    project: &str,
    req: &InstancesPost,
) -> ApiResult<Option<InstanceRecord>> {
    if req.source.kind != "copy" || req.source.source.is_empty() || !d.cluster.is_clustered() {
        return Ok(None);
    }
    let (p, n) = (project.to_string(), req.source.source.clone());
    let src = d.read(move |c| db::instances::get(c, &p, &n)).await?;
    Ok(src.filter(|s| s.member != d.member()))
}

/// Starts copying `src` (held by another member) as `req.name` onto this member.
///
/// # Errors
///
/// Refusals known before anything changes, with nothing changed: a running virtual
/// machine, the name taken, this member not taking instances; 503 when the source's
/// member cannot be reached.
pub async fn start(
    d: &Daemon,
    project: &str,
    req: InstancesPost,
    src: InstanceRecord,
) -> ApiResult<api::Operation> {
    validate::name(&req.name)?;
    validate::config(&req.config)?;
    validate::devices(&req.devices)?;
    super::check_member_accepts(d).await?;
    super::copy::refuse_unsupported(project, &req.source)?;
    let profiles = super::load_profiles(d, project, &src.profiles).await?;
    let devices = super::expand_devices(&src.devices, &profiles);
    if let Some(disk) = super::disks::host_disks(&devices).first() {
        return Err(ApiError::bad_request(format!(
            "Instance {:?} cannot be copied to another cluster member: device {:?} (disk) is tied to {:?}",
            src.name, disk.name, src.member
        )));
    }
    super::create::check_name_free(d, project, &req.name).await?;
    let peer = Peer::connect(d, &src.member).await?;
    let resources = BTreeMap::from([("instances".to_string(), vec![url(&req.name)])]);
    let op = d
        .ops
        .create(OperationClass::Task, "Creating instance", resources, None);
    let record = op.record();
    let (d, project) = (d.clone(), project.to_string());
    tokio::spawn(async move {
        match copy_then_move(&d, &peer, &project, &req).await {
            Ok(()) => op.succeed(None),
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

/// The two steps on the source's member, undoing the first when the second fails.
async fn copy_then_move(
    d: &Daemon,
    peer: &Peer,
    project: &str,
    req: &InstancesPost,
) -> ApiResult<()> {
    let mut copy = req.clone();
    copy.start = false;
    let body = serde_json::to_value(&copy)
        .map_err(|e| ApiError::internal(format!("encode the copy request: {e}")))?;
    let me = d.member();
    // In transit: the source's member makes the copy even when it is evacuated.
    let path = format!("/1.0/instances?project={project}&transit={me}");
    run_on(peer, Method::POST, &path, Some(&body)).await?;
    let moved = serde_json::json!({"name": req.name, "migration": true, "live": false});
    let path = format!(
        "/1.0/instances/{}?project={project}&target={me}&transit={me}",
        req.name
    );
    if let Err(e) = run_on(peer, Method::POST, &path, Some(&moved)).await {
        let path = format!("/1.0/instances/{}?project={project}", req.name);
        if let Err(undo) = run_on(peer, Method::DELETE, &path, None).await {
            tracing::warn!(instance = %req.name, member = peer.name(), error = %undo.message, "copy left on the source's member");
        }
        return Err(ApiError {
            status: e.status,
            message: format!("Failed to move the copy to {me:?}: {}", e.message),
        });
    }
    if req.start {
        let rec = super::load(d, project, &req.name).await?;
        let lock = d.instance_lock(&runtime_id(project, &req.name));
        let _guard = lock.lock().await;
        super::lifecycle::start_instance(d, &rec).await?;
    }
    Ok(())
}

/// Sends a request to `peer` and, when it answers with an operation, waits for it.
async fn run_on(
    peer: &Peer,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> ApiResult<()> {
    let reply = peer.request(method, path, body).await?;
    let crate::cluster::peer::Reply::Async(op) = reply else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    loop {
        let now = peer.wait_operation(&op.id, WAIT_STEP).await?;
        match now.status_code {
            200 => return Ok(()),
            400 | 401 => {
                return Err(ApiError::bad_request(if now.err.is_empty() {
                    format!("{:?}", now.status)
                } else {
                    now.err
                }));
            }
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::internal(format!(
                    "operation {} on {} did not finish in time",
                    op.id,
                    peer.name()
                )));
            }
            _ => {}
        }
    }
}
