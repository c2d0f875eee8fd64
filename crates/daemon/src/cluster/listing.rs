//! Cluster-wide listings: what every member knows, gathered by the member that was asked.
//!
//! The DB says which instances exist and where; their runtime state is only known on the
//! member that holds them. [`instance_views`] builds the views of this member's instances
//! itself and asks each other member once, in parallel and within [`FANOUT_DEADLINE`], for
//! the views of its own. An instance whose member does not answer shows status `Error`
//! (as LXD shows instances of unreachable members) instead of failing the whole list.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use api::{Instance, InstanceStatus};
use db::instances::InstanceRecord;

use super::peer::Peer;
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// How long a member may take to answer its part of a cluster-wide listing.
pub const FANOUT_DEADLINE: Duration = Duration::from_secs(10);

/// The API views of `records` (in their order): this member's built here, the others'
/// asked of their members (`recursion` 1 or 2, 2 with state). With `local_only` (the
/// request was forwarded by a member gathering a listing) only this member's instances.
///
/// # Errors
///
/// Only this member's own failures; other members' failures become `Error` views.
pub async fn instance_views(
    d: &Daemon,
    project: &str,
    records: Vec<InstanceRecord>,
    recursion: u8,
    local_only: bool,
) -> ApiResult<Vec<Instance>> {
    let me = d.member();
    let with_state = recursion >= 2;
    let mut remote: BTreeMap<String, Vec<&InstanceRecord>> = BTreeMap::new();
    for rec in &records {
        if !is_local(rec, &me) {
            remote.entry(rec.member.clone()).or_default().push(rec);
        }
    }
    let asked = if local_only || !d.cluster.is_clustered() {
        HashMap::new()
    } else {
        gather(d, project, remote.keys().cloned().collect(), recursion).await
    };
    let mut views = Vec::with_capacity(records.len());
    for rec in &records {
        if is_local(rec, &me) {
            views.push(crate::instances::instance_view(d, rec, with_state).await?);
            continue;
        }
        if local_only {
            continue;
        }
        match asked.get(&rec.member) {
            Some(Ok(theirs)) => match theirs.get(&rec.name) {
                Some(view) => views.push(view.clone()),
                None => views.extend(moved_view(d, project, rec, recursion).await?),
            },
            Some(Err(_)) | None => views.push(error_view(d, rec).await?),
        }
    }
    Ok(views)
}

/// Whether this member holds `rec` (an empty member is a standalone member's record).
fn is_local(rec: &InstanceRecord, me: &str) -> bool {
    rec.member.is_empty() || rec.member == me
}

/// Each of `members`' own instances of `project`, by name, asked in parallel.
async fn gather(
    d: &Daemon,
    project: &str,
    members: Vec<String>,
    recursion: u8,
) -> HashMap<String, ApiResult<HashMap<String, Instance>>> {
    let path = format!(
        "/1.0/instances?recursion={}&project={project}",
        recursion.max(1)
    );
    let calls = members.into_iter().map(|member| {
        let path = path.clone();
        async move {
            let answer = async {
                let peer = Peer::connect(d, &member).await?;
                let list: Vec<Instance> = peer
                    .request_within(reqwest::Method::GET, &path, None, FANOUT_DEADLINE)
                    .await?
                    .into_sync()?;
                Ok::<_, ApiError>(list.into_iter().map(|i| (i.name.clone(), i)).collect())
            }
            .await;
            if let Err(e) = &answer {
                tracing::warn!(member = %member, error = %e, "member's instances unavailable");
            }
            (member, answer)
        }
    });
    futures::future::join_all(calls).await.into_iter().collect()
}

/// The view of an instance its member did not list although the records said it held it:
/// it moved (a live move's ownership switch, say) or was deleted in between. Read again:
/// built here or asked of its new member; `None` when it is gone; `Error` only when it
/// still belongs to the member that did not list it.
async fn moved_view(
    d: &Daemon,
    project: &str,
    rec: &InstanceRecord,
    recursion: u8,
) -> ApiResult<Option<Instance>> {
    let now = match d
        .read({
            let (p, n) = (project.to_string(), rec.name.clone());
            move |c| db::instances::get(c, &p, &n)
        })
        .await?
    {
        Some(now) => now,
        None => return Ok(None),
    };
    if now.member == rec.member {
        return error_view(d, rec).await.map(Some);
    }
    if is_local(&now, &d.member()) {
        return crate::instances::instance_view(d, &now, recursion >= 2)
            .await
            .map(Some);
    }
    let mut asked = gather(d, project, vec![now.member.clone()], recursion).await;
    match asked.remove(&now.member) {
        Some(Ok(mut theirs)) if theirs.contains_key(&now.name) => Ok(theirs.remove(&now.name)),
        _ => error_view(d, &now).await.map(Some),
    }
}

/// The view of an instance whose member did not answer: what the DB knows, status `Error`.
async fn error_view(d: &Daemon, rec: &InstanceRecord) -> ApiResult<Instance> {
    let mut view = crate::instances::instance_view(d, rec, false).await?;
    view.status = InstanceStatus::Error;
    view.status_code = InstanceStatus::Error.code();
    Ok(view)
}
