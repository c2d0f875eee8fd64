//! What does this test do?
//! - restart: closing and reopening the log file, cluster DB and snapshot directory keeps the
//!   vote, the entries, the purge point, the committed id and the applied position
//! - a command that fails (a duplicate instance, a missing one) answers `Rejected`, changes
//!   nothing, and the entries after it, in the same batch and later, still apply
//! - a snapshot built on one member and installed on a fresh one reproduces every row,
//!   replaces what was there, and survives a restart; an install a crash cut short (the
//!   snapshot saved, the DB not yet replaced) is finished when the state machine opens
//! - determinism: the same entries, batched differently, give byte-for-byte equal table dumps
//! - group commit: commands batched into one entry apply with the outcomes and the DB they
//!   would have one per entry; a one-command proposal keeps the command's own JSON

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use api::MemberState;
use db::Command;
use db::instances::InstanceRecord;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder, Vote,
};
use raft::{Applied, LOG_FILE, LogStore, Proposal, RejectKind, StateMachine, TypeConfig};
use tempfile::TempDir;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn command(term: u64, index: u64, cmd: Command) -> Entry<TypeConfig> {
    entry(term, index, EntryPayload::Normal(cmd.into()))
}

fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TypeConfig> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes = voters
        .iter()
        .map(|id| (*id, BasicNode::new(format!("127.0.0.{id}:8443"))))
        .collect::<std::collections::BTreeMap<_, _>>();
    entry(
        term,
        index,
        EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    )
}

fn instance(name: &str) -> InstanceRecord {
    InstanceRecord {
        project: "default".into(),
        name: name.into(),
        kind: "container".into(),
        member: "m1".into(),
        architecture: "x86_64".into(),
        config: [("limits.memory".to_string(), "64MiB".to_string())].into(),
        devices: Default::default(),
        profiles: vec!["default".into()],
        ephemeral: false,
        description: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: "1970-01-01T00:00:00Z".into(),
    }
}

/// A story of entries 1..=9: a blank, a membership, then commands, two of which fail.
fn story() -> Vec<Entry<TypeConfig>> {
    vec![
        entry(1, 1, EntryPayload::Blank),
        membership(1, 2, &[1]),
        command(
            1,
            3,
            Command::CreateMember {
                name: "m1".into(),
                address: "127.0.0.1:8443".into(),
                state: MemberState::Created,
                architecture: "x86_64".into(),
            },
        ),
        command(
            1,
            4,
            Command::SetConfig {
                changes: [(
                    "cluster.https_address".to_string(),
                    Some("127.0.0.1:8443".to_string()),
                )]
                .into(),
            },
        ),
        command(1, 5, Command::CreateInstance(instance("c1"))),
        command(1, 6, Command::CreateInstance(instance("c1"))),
        command(1, 7, Command::CreateInstance(instance("c2"))),
        command(
            2,
            8,
            Command::DeleteInstance {
                project: "default".into(),
                name: "nope".into(),
            },
        ),
        command(
            2,
            9,
            Command::PatchInstanceConfig {
                project: "default".into(),
                name: "c2".into(),
                changes: [(
                    "volatile.last_state.power".to_string(),
                    Some("RUNNING".to_string()),
                )]
                .into(),
                last_used_at: Some("2026-01-02T00:00:00Z".into()),
            },
        ),
    ]
}

/// One member's files: log, cluster DB, snapshot directory.
struct Member {
    dir: TempDir,
}

impl Member {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn snapshot_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("snapshots")
    }

    fn db(&self) -> Arc<db::Store> {
        Arc::new(db::Store::open(&self.dir.path().join("cluster.db")).expect("open cluster DB"))
    }

    async fn log(&self) -> LogStore {
        LogStore::open(&self.dir.path().join(LOG_FILE))
            .await
            .expect("open log")
    }

    async fn state_machine(&self) -> (Arc<db::Store>, StateMachine) {
        let db = self.db();
        let sm = StateMachine::open(db.clone(), &self.snapshot_dir())
            .await
            .expect("open state machine");
        (db, sm)
    }
}

/// Every row of every table, in a stable order, as text.
fn dump(db: &db::Store) -> Vec<String> {
    db.read(|conn| {
        let mut out = Vec::new();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for table in tables {
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY rowid"))?;
            let columns = stmt.column_count();
            let rows = stmt.query_map([], |r| {
                (0..columns)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?;
            for row in rows {
                out.push(format!("{table}: {:?}", row?));
            }
        }
        Ok(out)
    })
    .expect("dump")
}

fn instance_names(db: &db::Store) -> Vec<String> {
    db.read(|c| db::instances::list(c, "default"))
        .expect("list instances")
        .into_iter()
        .map(|i| i.name)
        .collect()
}

fn to_json(entries: &[Entry<TypeConfig>]) -> Vec<String> {
    entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("encode entry"))
        .collect()
}

#[tokio::test]
async fn restart_keeps_vote_log_committed_and_applied() {
    let member = Member::new();
    let entries = story();

    tracing::info!(
        "--- write vote, entries 1..=9, committed 9; apply 1..=9; purge ..=2, truncate 9.."
    );
    {
        let mut log = member.log().await;
        log.save_vote(&Vote::new_committed(2, 1))
            .await
            .expect("vote");
        log.blocking_append(entries.clone()).await.expect("append");
        log.save_committed(Some(log_id(2, 9)))
            .await
            .expect("committed");
        log.purge(log_id(1, 2)).await.expect("purge");
        log.truncate(log_id(2, 9)).await.expect("truncate");

        let (_db, mut sm) = member.state_machine().await;
        sm.apply(entries.clone()).await.expect("apply");
    }

    tracing::info!("--- reopen everything and read it back");
    let mut log = member.log().await;
    assert_eq!(
        log.read_vote().await.expect("vote"),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(2, 9))
    );
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 8)));
    let kept = log.try_get_log_entries(..).await.expect("entries");
    assert_eq!(to_json(&kept), to_json(&entries[2..8]));
    let mut reader = log.get_log_reader().await;
    let some = reader.try_get_log_entries(4..=5).await.expect("range");
    assert_eq!(to_json(&some), to_json(&entries[3..5]));

    let (db, mut sm) = member.state_machine().await;
    let (applied, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(2, 9)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 2)));
    assert_eq!(
        membership.nodes().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(instance_names(&db), vec!["c1", "c2"]);
}

#[tokio::test]
async fn failing_commands_are_rejected_and_the_machine_goes_on() {
    let member = Member::new();
    let (db, mut sm) = member.state_machine().await;

    tracing::info!("--- one batch with a duplicate create and a delete of a missing instance");
    let replies = sm.apply(story()).await.expect("apply");
    assert_eq!(replies.len(), 9);
    assert!(
        replies[0].is_empty() && replies[1].is_empty(),
        "a blank or membership entry carries no command: {replies:?}"
    );
    for (i, reply) in replies.iter().enumerate().skip(2) {
        let [reply] = reply.as_slice() else {
            panic!("entry {} carries one command: {reply:?}", i + 1)
        };
        match i {
            5 => assert!(
                matches!(reply, Applied::Rejected { kind: RejectKind::Exists, message } if message.contains("c1")),
                "{reply:?}"
            ),
            7 => assert!(
                matches!(
                    reply,
                    Applied::Rejected {
                        kind: RejectKind::NotFound,
                        ..
                    }
                ),
                "{reply:?}"
            ),
            _ => assert_eq!(reply, &Applied::Ok, "entry {}", i + 1),
        }
    }
    assert_eq!(instance_names(&db), vec!["c1", "c2"]);
    let c2 = db
        .read(|c| db::instances::get(c, "default", "c2"))
        .expect("get c2")
        .expect("c2 exists");
    assert_eq!(c2.last_used_at, "2026-01-02T00:00:00Z");

    tracing::info!("--- a failing entry alone, then a good one: both recorded, position moves");
    let replies = sm
        .apply([command(2, 10, Command::CreateInstance(instance("c2")))])
        .await
        .expect("apply");
    assert!(!replies[0][0].is_ok());
    assert_eq!(
        sm.applied_state().await.expect("state").0,
        Some(log_id(2, 10))
    );
    let replies = sm
        .apply([command(2, 11, Command::CreateInstance(instance("c3")))])
        .await
        .expect("apply");
    assert_eq!(replies, vec![vec![Applied::Ok]]);
    assert_eq!(instance_names(&db), vec!["c1", "c2", "c3"]);
    assert_eq!(
        sm.applied_state().await.expect("state").0,
        Some(log_id(2, 11))
    );
}

#[tokio::test]
async fn a_snapshot_moves_the_whole_db_to_a_fresh_member() {
    let leader = Member::new();
    let (leader_db, mut leader_sm) = leader.state_machine().await;
    leader_sm.apply(story()).await.expect("apply on leader");

    tracing::info!("--- the follower has rows of its own that the snapshot must replace");
    let follower = Member::new();
    let (follower_db, mut follower_sm) = follower.state_machine().await;
    follower_sm
        .apply([command(1, 1, Command::CreateInstance(instance("stale")))])
        .await
        .expect("apply on follower");

    tracing::info!("--- build on the leader");
    let built = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(built.meta.last_log_id, Some(log_id(2, 9)));
    assert_eq!(built.meta.last_membership.log_id(), &Some(log_id(1, 2)));

    tracing::info!("--- install on the follower");
    let mut incoming = follower_sm
        .begin_receiving_snapshot()
        .await
        .expect("begin receiving");
    incoming
        .get_mut()
        .extend_from_slice(built.snapshot.get_ref());
    follower_sm
        .install_snapshot(&built.meta, incoming)
        .await
        .expect("install");

    assert_eq!(dump(&follower_db), dump(&leader_db));
    assert_eq!(instance_names(&follower_db), vec!["c1", "c2"]);
    assert_eq!(
        follower_db.read(db::members::list).expect("members"),
        leader_db.read(db::members::list).expect("members")
    );
    assert_eq!(
        follower_sm.applied_state().await.expect("state"),
        leader_sm.applied_state().await.expect("state")
    );

    tracing::info!("--- the follower keeps applying after the install");
    let replies = follower_sm
        .apply([command(2, 10, Command::CreateInstance(instance("c3")))])
        .await
        .expect("apply after install");
    assert_eq!(replies, vec![vec![Applied::Ok]]);

    tracing::info!("--- after a restart both still serve their current snapshot");
    // A restart closes each member's DB too: a store holds its file alone.
    drop((follower_sm, follower_db));
    drop((leader_sm, leader_db));
    let (_, mut follower_sm) = follower.state_machine().await;
    let (_, mut leader_sm) = leader.state_machine().await;
    let current = follower_sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
    let current = leader_sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(
        follower_sm.applied_state().await.expect("state").0,
        Some(log_id(2, 10))
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for f in std::fs::read_dir(from).expect("read dir") {
        let f = f.expect("dir entry");
        std::fs::copy(f.path(), to.join(f.file_name())).expect("copy");
    }
}

#[tokio::test]
async fn an_install_cut_short_is_finished_on_open() {
    let leader = Member::new();
    let (leader_db, mut leader_sm) = leader.state_machine().await;
    leader_sm.apply(story()).await.expect("apply on leader");
    let built = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");

    tracing::info!("--- a member whose snapshot was saved but whose DB was not yet replaced");
    let follower = Member::new();
    copy_dir(&leader.snapshot_dir(), &follower.snapshot_dir());
    assert!(instance_names(&follower.db()).is_empty());

    tracing::info!("--- opening the state machine restores the DB from the snapshot");
    let (follower_db, mut follower_sm) = follower.state_machine().await;
    assert_eq!(dump(&follower_db), dump(&leader_db));
    assert_eq!(
        follower_sm.applied_state().await.expect("state").0,
        built.meta.last_log_id
    );
}

#[tokio::test]
async fn the_same_entries_give_the_same_db() {
    let entries = story();

    tracing::info!("--- member a applies everything in one batch");
    let a = Member::new();
    let (a_db, mut a_sm) = a.state_machine().await;
    let a_replies = a_sm.apply(entries.clone()).await.expect("apply on a");

    tracing::info!("--- member b applies one entry at a time");
    let b = Member::new();
    let (b_db, mut b_sm) = b.state_machine().await;
    let mut b_replies = Vec::new();
    for e in entries {
        b_replies.extend(b_sm.apply([e]).await.expect("apply on b"));
    }

    assert_eq!(a_replies, b_replies);
    let (a_dump, b_dump) = (dump(&a_db), dump(&b_db));
    assert!(a_dump.iter().any(|row| row.starts_with("instances:")));
    assert_eq!(a_dump, b_dump);
}

/// What does this test do?
/// - takes the commands of the story (two of which fail) and proposes them as batches: the
///   first two in one entry, the remaining five in another
/// - a member applying the batches gets one outcome per command, the same outcomes as a
///   member applying one command per entry, and the same DB
#[tokio::test]
async fn a_batched_entry_applies_like_one_entry_per_command() {
    let entries = story();
    let commands: Vec<Command> = entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Normal(p) => Some(p.commands().to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(commands.len(), 7);

    tracing::info!("--- member a applies the story one command per entry");
    let a = Member::new();
    let (a_db, mut a_sm) = a.state_machine().await;
    let a_replies: Vec<Applied> = a_sm
        .apply(entries.clone())
        .await
        .expect("apply on a")
        .into_iter()
        .flatten()
        .collect();

    tracing::info!("--- member b applies blank, membership, then two batched entries");
    let b = Member::new();
    let (b_db, mut b_sm) = b.state_machine().await;
    let batched = vec![
        entries[0].clone(),
        entries[1].clone(),
        entry(
            1,
            3,
            EntryPayload::Normal(Proposal::new(commands[..2].to_vec())),
        ),
        entry(
            2,
            4,
            EntryPayload::Normal(Proposal::new(commands[2..].to_vec())),
        ),
    ];
    let b_replies = b_sm.apply(batched).await.expect("apply on b");
    assert_eq!(
        b_replies.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![0, 0, 2, 5]
    );
    let b_replies: Vec<Applied> = b_replies.into_iter().flatten().collect();

    assert_eq!(a_replies, b_replies);
    assert_eq!(b_replies.iter().filter(|r| !r.is_ok()).count(), 2);
    // Same rows, but for the recorded log position (9 entries on a, 4 on b).
    let rows = |db: &db::Store| -> Vec<String> {
        dump(db)
            .into_iter()
            .filter(|row| !row.starts_with("raft_state:"))
            .collect()
    };
    assert_eq!(rows(&a_db), rows(&b_db));
    assert_eq!(
        b_sm.applied_state().await.expect("state").0,
        Some(log_id(2, 4))
    );
}

/// What does this test do?
/// - a proposal of one command is written exactly as that command (the log and the wire
///   read as they did before batches existed), several as a JSON array
/// - both read back to the same proposal; an unknown command is refused by name
#[test]
fn a_proposal_of_one_command_reads_and_writes_as_that_command() {
    let one = Command::CreateInstance(instance("c1"));
    let single = Proposal::from(one.clone());
    assert_eq!(
        serde_json::to_value(&single).expect("encode"),
        serde_json::to_value(&one).expect("encode")
    );
    let back: Proposal = serde_json::from_value(serde_json::to_value(&one).expect("encode"))
        .expect("a bare command reads as a proposal");
    assert_eq!(back, single);

    let two = Proposal::new(vec![one.clone(), Command::CreateInstance(instance("c2"))]);
    let text = serde_json::to_string(&two).expect("encode");
    assert!(text.starts_with('['), "{text}");
    assert_eq!(
        serde_json::from_str::<Proposal>(&text).expect("decode"),
        two
    );

    let unknown = serde_json::json!({"command": "frobnicate_instance", "name": "c9"});
    let error = serde_json::from_value::<Proposal>(unknown)
        .expect_err("an unknown command")
        .to_string();
    assert!(error.contains("frobnicate_instance"), "{error}");
}
