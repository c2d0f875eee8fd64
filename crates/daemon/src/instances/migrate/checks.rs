//! Every refusal of a move, checked before anything changes; the result is the plan the
//! move then carries out.

use api::MemberState;
use db::instances::InstanceRecord;

use super::{MoveOptions, is_running};
use crate::cluster::peer::Peer;
use crate::error::{ApiError, ApiResult};
use crate::instances::{expand_devices, read_profiles, root_pool, runtime_id};
use crate::state::Daemon;

/// A checked move, ready to run.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// Move id.
    pub id: String,
    /// The instance as it was when checked.
    pub rec: InstanceRecord,
    /// This member.
    pub source: String,
    /// The member to move to.
    pub target: String,
    /// The pool of the root disk.
    pub pool: String,
    /// Whether the volume's data is copied (member-local pool) or stays (shared).
    pub copy_data: bool,
    /// Whether it ran when checked.
    pub was_running: bool,
    /// Whether it runs on the target afterwards.
    pub start_after: bool,
    /// Its `boot.autostart` (expanded): a stopped instance with it starts on the target.
    pub autostart: bool,
}

impl Plan {
    /// The volume (and runtime) name of the instance.
    pub fn volume(&self) -> String {
        runtime_id(&self.rec.project, &self.rec.name)
    }

    /// The journal record of this move as it starts.
    pub fn started_record(&self) -> db::moves::MoveRecord {
        db::moves::MoveRecord {
            id: self.id.clone(),
            project: self.rec.project.clone(),
            instance: self.rec.name.clone(),
            source: self.source.clone(),
            target: self.target.clone(),
            pool: self.pool.clone(),
            copy_data: self.copy_data,
            was_running: self.was_running,
            step: db::moves::MoveStep::Started,
            error: String::new(),
            created_at: ops::now_rfc3339(),
            updated_at: ops::now_rfc3339(),
        }
    }
}

/// Whether volumes on pools of `driver` are reachable from every member (nothing to copy).
pub(super) fn shared_driver(driver: &str) -> bool {
    driver == "shared-fs"
}

/// LXD's refusal of a live move of a running container, naming the way out.
fn no_live_migration() -> ApiError {
    ApiError::bad_request(
        "Unable to perform container live migration. CRIU isn't installed: \
         move it stopped with --stateless (lxc move --stateless, or live: false)",
    )
}

/// Checks everything a move of `name` to `opts.target` needs, in order, changing nothing.
pub(super) async fn check(
    d: &Daemon,
    project: &str,
    name: &str,
    opts: &MoveOptions,
) -> ApiResult<Plan> {
    Daemon::check_project(project)?;
    if !d.cluster.is_clustered() {
        return Err(ApiError::bad_request(
            "Moving an instance needs a cluster: this server isn't part of one",
        ));
    }
    let source = d.member();
    let target = opts.target.clone();
    let (p, n, t) = (project.to_string(), name.to_string(), target.clone());
    let (rec, target_member, profiles, unfinished) = d
        .read(move |c| {
            let rec = db::instances::get(c, &p, &n)?;
            let profiles = match &rec {
                Some(r) => Some(read_profiles(c, &p, &r.profiles)?),
                None => None,
            };
            Ok((
                rec,
                db::members::get(c, &t)?,
                profiles,
                db::moves::unfinished_of(c, &p, &n)?,
            ))
        })
        .await?;
    let rec = rec.ok_or_else(|| ApiError::not_found("Instance not found"))?;
    if rec.member != source {
        return Err(ApiError::bad_request(format!(
            "Instance {name:?} is on cluster member {:?}: move it from there",
            rec.member
        )));
    }
    if let Some(m) = unfinished {
        return Err(ApiError::conflict(format!(
            "Instance {name:?} is already moving to cluster member {:?}",
            m.target
        )));
    }
    let mut target_member = target_member.ok_or_else(|| {
        ApiError::not_found(format!("Target cluster member {target:?} not found"))
    })?;
    if target_member.state != MemberState::Created {
        // This member's copy may predate the target's restore (a move back asked right
        // after the restore began): refuse only on what the cluster has committed.
        d.replicator().ensure_linearizable().await?;
        let t = target.clone();
        if let Some(m) = d.read(move |c| db::members::get(c, &t)).await? {
            target_member = m;
        }
    }
    if target == source {
        // LXD 5.0.2's words for a move onto the member that holds the instance.
        return Err(ApiError::bad_request(
            "Target must be different than instance's current location",
        ));
    }
    match target_member.state {
        // A restore brings its instances home.
        MemberState::Restoring
            if crate::instances::member_takes(target_member.state, &target, &rec.config) => {}
        MemberState::Evacuated | MemberState::Evacuating | MemberState::Restoring => {
            return Err(ApiError::bad_request(
                "The destination cluster member is evacuated",
            ));
        }
        MemberState::Pending => {
            return Err(ApiError::bad_request(format!(
                "Target cluster member {target:?} is still joining"
            )));
        }
        MemberState::Created => {}
    }
    let was_running = is_running(d, project, name);
    if was_running && opts.live && rec.kind != "virtual-machine" {
        return Err(no_live_migration());
    }
    if was_running && opts.live && crate::instances::is_frozen(d, project, name) {
        return Err(ApiError::bad_request(
            "A frozen instance cannot move live: unfreeze it first, or move it stopped",
        ));
    }
    if was_running && opts.live && d.vms.is_none() {
        return Err(ApiError::bad_request(
            "Live migration needs QEMU on this member: it is unavailable",
        ));
    }
    let profiles = profiles
        .unwrap_or_else(|| Ok(Vec::new()))
        .map_err(crate::instances::missing_profile)?;
    let devices = expand_devices(&rec.devices, &profiles);
    let autostart = !opts.keep_stopped
        && crate::instances::validate::is_true(
            crate::instances::expand_config(&rec.config, &profiles).get("boot.autostart"),
        );
    for (dev, conf) in &devices {
        let kind = conf.get("type").map(String::as_str).unwrap_or("");
        let is_root = kind == "disk" && conf.get("path").map(String::as_str) == Some("/");
        if kind == "none" || (is_root && conf.get("source").is_none_or(String::is_empty)) {
            continue;
        }
        return Err(ApiError::bad_request(format!(
            "Instance {name:?} cannot move: device {dev:?} ({kind}) is tied to this member"
        )));
    }
    let pool = root_pool(&devices)
        .ok_or_else(|| ApiError::bad_request("Instance has no root disk device"))?;
    let pool_name = pool.clone();
    let pool_rec = d
        .read(move |c| db::pools::get(c, &pool_name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Storage pool {pool:?} not found")))?;
    let copy_data = !shared_driver(&pool_rec.driver);
    let plan = Plan {
        id: opts
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        rec,
        source,
        target: target.clone(),
        pool,
        copy_data,
        was_running,
        start_after: was_running || opts.start || autostart,
        autostart,
    };
    target_accepts(d, &plan).await?;
    Ok(plan)
}

/// Asks the target whether it can take the instance (online, has the pool, no volume of
/// that name, not evacuated by its own view).
async fn target_accepts(d: &Daemon, plan: &Plan) -> ApiResult<()> {
    let peer = Peer::connect(d, &plan.target).await?;
    let path = super::internal::check_path(plan);
    match peer
        .request_within(reqwest::Method::GET, &path, None, CHECK_DEADLINE)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            Err(ApiError::bad_request(format!(
                "The destination cluster member {:?} is offline: {}",
                plan.target, e.message
            )))
        }
        Err(e) => Err(e),
    }
}

/// How long the target may take to answer the pre-move check.
const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
