//! The operation of an evacuation or restore, as the replicated journal tells it.
//!
//! The operation itself lives in the registry of the member it concerns (the
//! coordinator). While that member is down, any other member still answers for it from
//! the journal every member has: the job is running, this is its plan and how far each
//! instance has got. Once the coordinator is back (its restart resumes the job under the
//! same id), it answers again itself.

use std::collections::BTreeMap;

use api::evacuation::PLAN_KEY;
use api::{Operation, OperationClass, OperationStatus};
use db::evacuations::EvacuationRow;

use crate::error::ApiResult;
use crate::state::Daemon;

/// The record of the job whose journal rows are `rows` (one member's, all owned by one
/// operation).
fn record(id: &str, rows: &[EvacuationRow]) -> Option<Operation> {
    let first = rows.first()?;
    let now = ops::now_rfc3339();
    let entries: Vec<_> = rows.iter().map(|r| r.entry.clone()).collect();
    Some(Operation {
        id: id.to_string(),
        class: OperationClass::Task,
        description: super::description(first.kind).to_string(),
        created_at: now.clone(),
        updated_at: now,
        status: OperationStatus::Running,
        status_code: OperationStatus::Running.code(),
        resources: None,
        metadata: Some(serde_json::json!({ PLAN_KEY: entries })),
        may_cancel: false,
        err: String::new(),
        location: first.member.clone(),
    })
}

/// How long a listing of operations waits to catch up with the leader.
const LIST_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Every job the journal says runs, by operation id.
async fn journaled(d: &Daemon) -> ApiResult<BTreeMap<String, Vec<EvacuationRow>>> {
    let rows = d.read(db::evacuations::list).await?;
    let mut by_op: BTreeMap<String, Vec<EvacuationRow>> = BTreeMap::new();
    for row in rows.into_iter().filter(|r| !r.operation.is_empty()) {
        by_op.entry(row.operation.clone()).or_default().push(row);
    }
    Ok(by_op)
}

/// Operation `id` when it is a job the journal says runs.
///
/// # Errors
///
/// On a DB failure.
pub async fn operation(d: &Daemon, id: &str) -> ApiResult<Option<Operation>> {
    if let Some(op) = journaled(d)
        .await?
        .get(id)
        .and_then(|rows| record(id, rows))
    {
        return Ok(Some(op));
    }
    // This member may not have applied the journal yet: catch up with the leader (when
    // there is one) and look again.
    if d.replicator().ensure_linearizable().await.is_err() {
        return Ok(None);
    }
    Ok(journaled(d)
        .await?
        .get(id)
        .and_then(|rows| record(id, rows)))
}

/// Every job the journal says runs, as operations.
///
/// # Errors
///
/// On a DB failure.
pub async fn operations(d: &Daemon) -> ApiResult<Vec<Operation>> {
    // A follower learns that an entry is committed with the leader's next message (up to a
    // heartbeat later): right after a coordinator died, its journal may be committed but not
    // applied here yet. Catch up first, as a lookup by id does; during an election, list
    // what this member has after a short while rather than hang.
    let _ = tokio::time::timeout(LIST_CATCH_UP, d.replicator().ensure_linearizable()).await;
    Ok(journaled(d)
        .await?
        .iter()
        .filter_map(|(id, rows)| record(id, rows))
        .collect())
}
