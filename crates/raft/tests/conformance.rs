//! What does this test do?
//! - runs openraft's own storage conformance suite against [`LogStore`] and [`StateMachine`]
//! - every case gets fresh files in its own temporary directory: a log file, a cluster DB
//!   file and a snapshot directory, all real SQLite on disk

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use raft::{LOG_FILE, LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

/// Builds a fresh store pair in a new temporary directory, which lives as long as the case.
struct FreshStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FreshStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = LogStore::open(&dir.path().join(LOG_FILE))
            .await
            .expect("open the log store");
        let db = db::Store::open(&dir.path().join("cluster.db")).expect("open the cluster DB");
        let sm = StateMachine::open(Arc::new(db), &dir.path().join("snapshots"))
            .await
            .expect("open the state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(FreshStores).expect("openraft storage suite");
}
