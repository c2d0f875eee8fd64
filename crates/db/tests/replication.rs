//! What does this test do?
//! - applies a batch of entries: failing commands are outcomes, the rest and the log
//!   position commit together
//! - copies a DB out (`backup_to`) and into another one (`restore_from`): same rows, same
//!   position, the target stays a WAL database and stays writable
//! - refuses a copy written by a newer schema, leaving the target unchanged
//! - moves its config generation on for every write but an instance's bookkeeping patch
//!   (applied alone, in a batch or by a restore), never for a read
//! - holds its file alone: no shared WAL index (`-shm`) beside it, another connection
//!   cannot read it while the store is open, and a reopened store finds what was written
#![allow(clippy::unwrap_used)]

use db::instances::InstanceRecord;
use db::{Command, Connection, Error, RaftState, Store};

fn instance(name: &str) -> InstanceRecord {
    InstanceRecord {
        project: "default".into(),
        name: name.into(),
        kind: "container".into(),
        member: "m1".into(),
        architecture: "x86_64".into(),
        config: Default::default(),
        devices: Default::default(),
        profiles: vec![],
        ephemeral: false,
        description: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: "1970-01-01T00:00:00Z".into(),
    }
}

fn names(store: &Store) -> Vec<String> {
    store
        .read(|c| db::instances::list(c, "default"))
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

fn position(n: u32) -> RaftState {
    RaftState {
        last_applied: Some(format!("log {n}")),
        last_membership: Some("members".into()),
    }
}

#[test]
fn a_batch_records_outcomes_and_its_position_together() {
    let store = Store::in_memory().unwrap();
    let create_c1 = Command::CreateInstance(instance("c1"));
    let create_c2 = Command::CreateInstance(instance("c2"));
    let outcomes = store
        .apply_entries(
            [None, Some(&create_c1), Some(&create_c1), Some(&create_c2)],
            &position(4),
        )
        .unwrap();
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok() && outcomes[3].is_ok());
    assert!(matches!(outcomes[2], Err(Error::Exists(_))), "{outcomes:?}");
    assert_eq!(names(&store), vec!["c1", "c2"]);
    assert_eq!(store.read(db::raft_state::get).unwrap(), position(4));
}

#[test]
fn a_copy_restores_into_another_db() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("a.db")).unwrap();
    source
        .apply_entries(
            [Some(&Command::CreateInstance(instance("c1")))],
            &position(1),
        )
        .unwrap();
    let copy = dir.path().join("copy.db");
    assert_eq!(source.backup_to(&copy).unwrap(), position(1));
    assert_eq!(Store::inspect(&copy).unwrap(), position(1));

    let target = Store::open(&dir.path().join("b.db")).unwrap();
    target
        .execute(&Command::CreateInstance(instance("stale")))
        .unwrap();
    assert_eq!(target.restore_from(&copy).unwrap(), position(1));
    assert_eq!(names(&target), vec!["c1"]);
    let mode: String = target
        .read(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?))
        .unwrap();
    assert_eq!(mode, "wal");
    target
        .execute(&Command::CreateInstance(instance("c2")))
        .unwrap();
    assert_eq!(names(&target), vec!["c1", "c2"]);
}

#[test]
fn a_copy_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("a.db")).unwrap();
    let copy = dir.path().join("copy.db");
    source.backup_to(&copy).unwrap();
    Connection::open(&copy)
        .unwrap()
        .execute("INSERT INTO schema (version) VALUES (999)", [])
        .unwrap();
    assert!(matches!(
        Store::inspect(&copy),
        Err(Error::SchemaTooNew { found: 999, .. })
    ));

    let target = Store::in_memory().unwrap();
    target
        .execute(&Command::CreateInstance(instance("kept")))
        .unwrap();
    assert!(matches!(
        target.restore_from(&copy),
        Err(Error::SchemaTooNew { .. })
    ));
    assert_eq!(names(&target), vec!["kept"]);
}

#[test]
fn the_store_holds_its_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.db");
    let store = Store::open(&path).unwrap();
    store
        .execute(&Command::CreateInstance(instance("c1")))
        .unwrap();
    assert_eq!(names(&store), vec!["c1"]);
    assert!(
        !dir.path().join("cluster.db-shm").exists(),
        "the WAL index must stay in the store's memory"
    );
    let other = Connection::open(&path).unwrap();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    let err = other
        .query_row("SELECT COUNT(*) FROM instances", [], |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(other);
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(names(&reopened), vec!["c1"]);
}

#[test]
fn the_config_generation_moves_on_for_all_but_instance_patches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let g0 = store.config_generation();
    store
        .execute(&Command::CreateInstance(instance("c1")))
        .unwrap();
    let g1 = store.config_generation();
    assert!(g1 > g0, "creating an instance may change volumes");
    let patch = Command::PatchInstanceConfig {
        project: "default".into(),
        name: "c1".into(),
        changes: [(
            "volatile.last_state.power".to_string(),
            Some("RUNNING".to_string()),
        )]
        .into(),
        last_used_at: None,
    };
    store.execute(&patch).unwrap();
    store
        .apply_entries([Some(&patch), None], &position(1))
        .unwrap();
    names(&store);
    assert_eq!(store.config_generation(), g1);
    let profile = Command::CreateProfile {
        project: "default".into(),
        name: "p1".into(),
        description: String::new(),
        config: Default::default(),
        devices: Default::default(),
    };
    store
        .apply_entries([Some(&patch), Some(&profile)], &position(2))
        .unwrap();
    let g2 = store.config_generation();
    assert!(g2 > g1, "a batch with a profile in it");
    let copy = dir.path().join("copy.db");
    store.backup_to(&copy).unwrap();
    store.restore_from(&copy).unwrap();
    assert!(
        store.config_generation() > g2,
        "a restore replaces everything"
    );
}
