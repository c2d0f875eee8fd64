//! Instances that land on a member after its evacuation was planned.
//!
//! The plan is made from a snapshot, then journaled in the same write that makes the
//! member `evacuating`; from then on the member refuses creates and moves in. A create or
//! a move in that had passed that check before is still under way, though, and its
//! instance is in no plan: left alone, it would keep running on the member and the
//! evacuation would end with `still running`. So before executing, the evacuation waits
//! for those to end and adds their instances to its journal.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use api::evacuation::EvacuateMode;

use crate::error::ApiResult;
use crate::state::{Daemon, lock};

/// How long an evacuation waits for the creates and moves in that were under way when it
/// began.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(300);
/// Pause between two looks at what is under way.
const POLL: Duration = Duration::from_millis(200);

/// Waits (up to [`IN_FLIGHT_WAIT`]) for the creates on this member and the moves onto it
/// that were under way when the evacuation of `member` (this member, run by `operation`)
/// began, then plans (in `mode`) and journals the instances on it the plan does not have.
///
/// # Errors
///
/// On a DB failure; the evacuation then goes on with the plan it has.
pub(crate) async fn settle(
    d: &Daemon,
    member: &str,
    mode: EvacuateMode,
    operation: &str,
) -> ApiResult<()> {
    let deadline = Instant::now() + IN_FLIGHT_WAIT;
    loop {
        let creating = !lock(&d.creating).is_empty();
        let m = member.to_string();
        let moving_in = d
            .read(move |c| Ok(db::moves::unfinished(c)?.iter().any(|mv| mv.target == m)))
            .await?;
        if !creating && !moving_in {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(member = %member, creating, moving_in, "creates or moves in still under way: evacuating without them");
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    d.replicator().ensure_linearizable().await?;
    let m = member.to_string();
    let (here, rows) = d
        .read(move |c| {
            Ok((
                db::instances::list_on_member(c, &m)?,
                db::evacuations::list_for_member(c, &m)?,
            ))
        })
        .await?;
    let planned: BTreeSet<(String, String)> = rows
        .into_iter()
        .map(|r| (r.entry.project, r.entry.instance))
        .collect();
    let late: BTreeSet<(String, String)> = here
        .into_iter()
        .map(|r| (r.project, r.name))
        .filter(|k| !planned.contains(k))
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    let online = super::online_members(d).await?;
    let mut snap = super::snapshot::take(d, online).await?;
    snap.instances
        .retain(|i| i.member != member || late.contains(&(i.project.clone(), i.name.clone())));
    let entries = super::snapshot::entries(&cluster::plan_evacuation(&snap, member, mode));
    tracing::info!(member = %member, instances = ?late, "instances that landed while planning added to the plan");
    d.write(db::Command::AddEvacuationEntries {
        member: member.to_string(),
        operation: operation.to_string(),
        entries,
    })
    .await
}
