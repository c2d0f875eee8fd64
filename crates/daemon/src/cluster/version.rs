//! Versions through the cluster: what each member reports of itself, the replicated schema
//! update, and the refusal of writes by a member whose binary is behind.
//!
//! The design is `db`'s (see its `schema` module): at every start and after a join, a
//! member records its binary's schema version and API extension count, its memory and its
//! CPUs in its own row ([`report`]). When every member reports at least version `v` and
//! the DB is below `v`, the reporting member proposes `UpdateSchema { v }`: the DB
//! changes schema at that log index on every member. A member whose binary is older than
//! the cluster — the DB or another member is at a higher version — refuses writes
//! ([`check_writable`]) with LXD's message until it is upgraded.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// How long [`report`] keeps trying while the cluster has no leader.
const REPORT_DEADLINE: Duration = Duration::from_secs(300);

/// This machine's memory in bytes (`MemTotal`), `0` when unknown.
fn memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// This machine's CPU count, `0` when unknown.
fn cpu_count() -> i64 {
    std::thread::available_parallelism()
        .map(|n| i64::try_from(n.get()).unwrap_or(0))
        .unwrap_or(0)
}

/// The schema version the cluster is at: the DB's, or higher when a member already runs
/// a newer binary.
pub fn cluster_schema(db_version: i64, reported: &[i64]) -> i64 {
    reported.iter().copied().fold(db_version, i64::max)
}

/// The version to update the DB to, if any: the lowest any member reports (all must have
/// reported), capped by this binary, when it is above the DB's.
pub fn schema_target(binary: i64, db_version: i64, reported: &[i64]) -> Option<i64> {
    if reported.is_empty() || reported.contains(&0) {
        return None;
    }
    let lowest = reported.iter().copied().min()?.min(binary);
    (lowest > db_version).then_some(lowest)
}

/// Records this member's versions and size in its row, then proposes the schema update
/// every member is ready for, if any. Retries while there is no leader; logs failures
/// (a member that cannot report still serves).
pub async fn report(d: &Daemon) {
    let deadline = tokio::time::Instant::now() + REPORT_DEADLINE;
    loop {
        // One node for the whole report: a join replaces it, and the report must name the
        // member of the group it goes to.
        match try_report(&d.replicator(), &d.store).await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e.message, "cannot report this member's versions yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "gave up reporting this member's versions");
                return;
            }
        }
    }
}

/// At start-up, before anything reads the DB: when the DB is older than this binary and
/// this member already has a row (an upgrade, not a first start), reports at once so that
/// the schema update is committed before the tables it adds are used — at once on a
/// single member; in a cluster once the last member runs the new binary. Waits at most
/// `timeout`; a member whose peers are not upgraded yet starts anyway.
pub async fn catch_up(replicator: &raft::Replicator, store: &Arc<db::Store>, timeout: Duration) {
    let id = i64::try_from(replicator.id()).unwrap_or_default();
    let owned = store.clone();
    let known = tokio::task::spawn_blocking(move || {
        owned.read(|c| {
            Ok((
                db::schema_version(c)?,
                db::members::get_by_id(c, id)?.is_some(),
            ))
        })
    })
    .await;
    let Ok(Ok((version, true))) = known else {
        return;
    };
    if version >= db::SCHEMA_VERSION {
        return;
    }
    match tokio::time::timeout(timeout, try_report(replicator, store)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e.message, "could not update the schema at start-up"),
        Err(_) => tracing::warn!(
            schema = version,
            binary = db::SCHEMA_VERSION,
            "the schema update waits for the other members to be upgraded"
        ),
    }
}

async fn try_report(replicator: &raft::Replicator, store: &Arc<db::Store>) -> ApiResult<()> {
    let id = i64::try_from(replicator.id()).unwrap_or_default();
    let api_extensions = i64::try_from(api::extensions::API_EXTENSIONS.len()).unwrap_or(0);
    replicator
        .propose(db::Command::ReportMember {
            id,
            schema: db::SCHEMA_VERSION,
            api_extensions,
            memory: memory_bytes(),
            cpus: cpu_count(),
        })
        .await?;
    let (db_version, reported) = versions(store).await?;
    if let Some(version) = schema_target(db::SCHEMA_VERSION, db_version, &reported) {
        tracing::info!(
            from = db_version,
            to = version,
            "every member is ready: updating the schema"
        );
        replicator
            .propose(db::Command::UpdateSchema { version })
            .await?;
    }
    Ok(())
}

/// The DB's schema version and what every member reports: one short hold of the DB, run
/// in place (every write asks, see [`check_writable`]).
async fn versions(store: &Arc<db::Store>) -> ApiResult<(i64, Vec<i64>)> {
    let store = store.clone();
    Ok(crate::state::blocking_in_place(move || {
        store.read(|c| Ok((db::schema_current(c)?, db::members::schemas(c)?)))
    })
    .await??)
}

/// Refuses a write from a member whose binary is older than the cluster's schema.
///
/// # Errors
///
/// 503 `this node's version is behind, please upgrade` (LXD's words).
pub async fn check_writable(d: &Daemon) -> ApiResult<()> {
    use std::sync::atomic::Ordering;
    // The schemas only change with the config generation: once checked at one, every write
    // until the next passes (a write of its own that has to wait for nothing, where the
    // DB read took a blocking hand-off and two statements on every start and stop). Read
    // before the check's data, the generation is never newer than what was checked.
    let generation = d.store.config_generation();
    if d.writable_at.load(Ordering::Acquire) == generation + 1 {
        return Ok(());
    }
    let (db_version, reported) = versions(&d.store).await?;
    let cluster = cluster_schema(db_version, &reported);
    if cluster > db::SCHEMA_VERSION {
        return Err(ApiError {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "this node's version is behind, please upgrade (its schema is {}, the cluster's {cluster})",
                db::SCHEMA_VERSION
            ),
        });
    }
    d.writable_at.store(generation + 1, Ordering::Release);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_moves_once_every_member_is_ready() {
        // Not every member reported yet: wait.
        assert_eq!(schema_target(7, 6, &[7, 0, 7]), None);
        // One member still runs the old binary: wait.
        assert_eq!(schema_target(7, 6, &[7, 6, 7]), None);
        // All upgraded.
        assert_eq!(schema_target(7, 6, &[7, 7, 7]), Some(7));
        // Members ahead of this binary: only as far as this binary knows.
        assert_eq!(schema_target(7, 6, &[8, 8, 8]), Some(7));
        assert_eq!(schema_target(7, 7, &[7, 7]), None);
        assert_eq!(schema_target(7, 6, &[]), None);
    }

    #[test]
    fn a_member_behind_the_cluster_is_detected() {
        assert_eq!(cluster_schema(6, &[6, 6]), 6);
        assert_eq!(cluster_schema(6, &[6, 7]), 7);
        assert_eq!(cluster_schema(7, &[6, 0]), 7);
        assert!(memory_bytes() > 0);
        assert!(cpu_count() > 0);
    }
}
