//! What does this test do?
//! - three members in this process, each over its own files and serving its Raft routes on
//!   a real 127.0.0.1 port: member 1 bootstraps a one-voter group, 2 and 3 join as learners
//!   and become voters
//! - a write proposed on a follower is forwarded to the leader and lands in every DB
//! - a duplicate instance is rejected as `Exists` on the leader and through a follower,
//!   and the cluster goes on writing
//! - the leader crashes: another is elected and writes continue through both survivors;
//!   the crashed member restarts from its files and catches up; no committed write is lost
//! - a member that joins after the log was compacted catches up from a snapshot sent in
//!   several chunks
//! - a request this member cannot decode (an entry from a newer drover) is refused with
//!   422, nothing is stored, and the member keeps working
//! - a follower reads each of its own forwarded writes right after `propose` returns, with
//!   no other wait (read your writes)
//! - group commit: 20 writes proposed at once share log entries, and each keeps its own
//!   outcome (the duplicates among them are rejected, the others applied)
//! - a leader handing over asks a voter to stand for election at once: with followers that
//!   would wait a minute before standing on their own, the most up-to-date electable voter
//!   leads within the hand-over; one that does not stand refuses and the next one is asked
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{DEADLINE, Member, create, create_big, init_tracing};
use openraft::raft::AppendEntriesRequest;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raft::{ProposeError, Role, Settings, TypeConfig};
use tokio::net::TcpListener;

/// Waits until every member in `members` has applied what `leader` has.
async fn converge(members: &[&Member], leader: &Member) -> anyhow::Result<()> {
    let target = leader.replicator.metrics().last_applied_index;
    for m in members {
        m.wait_applied(target).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_replicate_fail_over_and_catch_up() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let settings = Settings::default();

    tracing::info!("--- start three members, bootstrap member 1 alone");
    let m1 = Member::start_new(1, &tmp.path().join("m1"), &settings).await?;
    let m2 = Member::start_new(2, &tmp.path().join("m2"), &settings).await?;
    let m3 = Member::start_new(3, &tmp.path().join("m3"), &settings).await?;
    assert!(m1.replicator.bootstrap_single().await?);
    m1.wait("leader of its own group", |m| m.role == Role::Leader)
        .await?;
    // Idempotent: a second call finds the group initialized.
    assert!(!m1.replicator.bootstrap_single().await?);

    tracing::info!("--- add 2 and 3 as learners, then make them voters");
    m1.replicator.add_learner(2, &m2.addr.to_string()).await?;
    m1.replicator.add_learner(3, &m3.addr.to_string()).await?;
    m1.replicator.promote(2).await?;
    m1.replicator.promote(3).await?;
    for m in [&m1, &m2, &m3] {
        let metrics = m
            .wait("three voters", |m| {
                m.voters() == BTreeSet::from([1, 2, 3]) && m.leader == Some(1)
            })
            .await?;
        assert!(metrics.learners().is_empty());
    }

    tracing::info!("--- propose on follower 2: forwarded, applied everywhere");
    assert!(!m2.replicator.is_leader());
    m2.replicator.propose(create("c1")).await?;
    m2.replicator.ensure_linearizable().await?;
    assert_eq!(
        m2.instances(),
        vec!["c1"],
        "read-your-write on the follower"
    );
    converge(&[&m1, &m2, &m3], &m1).await?;
    for m in [&m1, &m2, &m3] {
        assert_eq!(m.instances(), vec!["c1"], "member {}", m.id);
    }

    tracing::info!("--- a duplicate is rejected as Exists, on the leader and via a follower");
    let on_leader = m1.replicator.propose(create("c1")).await;
    assert!(
        matches!(on_leader, Err(ProposeError::Exists(_))),
        "{on_leader:?}"
    );
    let via_follower = m3.replicator.propose(create("c1")).await;
    assert!(
        matches!(&via_follower, Err(ProposeError::Exists(m)) if m == "instance \"c1\" already exists"),
        "{via_follower:?}"
    );
    m3.replicator.propose(create("c2")).await?;
    converge(&[&m1, &m2, &m3], &m1).await?;
    for m in [&m1, &m2, &m3] {
        assert_eq!(m.instances(), vec!["c1", "c2"], "member {}", m.id);
    }

    tracing::info!("--- the leader crashes: a new one is elected, writes go on");
    let (id1, dir1, addr1) = m1.kill().await;
    let elected = m2
        .wait("a new leader", |m| matches!(m.leader, Some(2) | Some(3)))
        .await?;
    tracing::info!(leader = ?elected.leader, term = elected.term, "new leader");
    m2.replicator.propose(create("c3")).await?;
    m3.replicator.propose(create("c4")).await?;
    let (leader, other) = if elected.leader == Some(2) {
        (&m2, &m3)
    } else {
        (&m3, &m2)
    };
    converge(&[&m2, &m3], leader).await?;
    assert_eq!(other.instances(), vec!["c1", "c2", "c3", "c4"]);
    let status = leader.replicator.metrics();
    let lost = &status.members[&1];
    assert!(
        lost.last_contact
            .is_none_or(|d| d > std::time::Duration::ZERO),
        "{lost:?}"
    );

    tracing::info!("--- member 1 restarts from its files on its old address and catches up");
    let listener = TcpListener::bind(addr1).await?;
    let m1 = Member::start(id1, &dir1, listener, &settings).await?;
    converge(&[&m1], leader).await?;
    m1.wait("follows the new leader", |m| m.leader == elected.leader)
        .await?;
    m1.replicator.propose(create("c5")).await?;
    converge(&[&m1, &m2, &m3], leader).await?;

    tracing::info!("--- every member holds every committed write");
    for m in [&m1, &m2, &m3] {
        assert_eq!(
            m.instances(),
            vec!["c1", "c2", "c3", "c4", "c5"],
            "member {}",
            m.id
        );
    }
    let status = leader.replicator.metrics();
    for id in [1, 2, 3] {
        let member = &status.members[&id];
        assert!(member.voter);
        assert!(
            member.last_contact.is_some_and(|d| d < DEADLINE),
            "member {id}: {member:?}"
        );
    }
    for m in [m1, m2, m3] {
        m.kill().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_member_catches_up_from_a_snapshot() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let settings = Settings {
        snapshot_every: 5,
        keep_logs: 0,
        ..Settings::default()
    };

    tracing::info!("--- member 1 alone writes enough to snapshot and purge its log");
    let m1 = Member::start_new(1, &tmp.path().join("m1"), &settings).await?;
    m1.replicator.bootstrap_single().await?;
    m1.wait("leader", |m| m.role == Role::Leader).await?;
    // 20 x 200 kB: the snapshot spans several 1 MiB chunks.
    for i in 0..20 {
        m1.replicator
            .propose(create_big(&format!("c{i:02}"), 200_000))
            .await?;
    }
    m1.wait("a snapshot", |m| m.snapshot_index >= Some(15))
        .await?;

    tracing::info!("--- member 2 joins: it gets the snapshot, then the rest of the log");
    let m2 = Member::start_new(2, &tmp.path().join("m2"), &settings).await?;
    m1.replicator.add_learner(2, &m2.addr.to_string()).await?;
    m1.replicator.propose(create("late")).await?;
    converge(&[&m2], &m1).await?;
    assert_eq!(m2.instances(), m1.instances());
    assert_eq!(m2.instances().len(), 21);
    assert!(m2.replicator.metrics().snapshot_index.is_some());
    for m in [m1, m2] {
        m.kill().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_is_refused_and_nothing_changes() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let m1 = Member::start_new(1, &tmp.path().join("m1"), &Settings::default()).await?;
    m1.replicator.bootstrap_single().await?;
    m1.wait("leader", |m| m.role == Role::Leader).await?;
    m1.replicator.propose(create("c1")).await?;
    let before = m1.replicator.metrics();

    tracing::info!("--- a newer member's command and log entry are refused with 422");
    let http = reqwest::Client::new();
    let base = format!("http://{}", m1.addr);
    let response = http
        .post(format!("{base}{}", raft::PROPOSE_PATH))
        .json(&serde_json::json!({"command": "frobnicate_instance", "name": "c9"}))
        .send()
        .await?;
    assert_eq!(response.status(), 422);
    let term = before.term + 1;
    let rpc = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, 7),
        prev_log_id: None,
        entries: vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 7), 1),
            payload: EntryPayload::Normal(create("c9").into()),
        }],
        leader_commit: None,
    };
    let valid = serde_json::to_string(&rpc)?;
    let entry = valid.replace(
        r#""command":"create_instance""#,
        r#""command":"frobnicate_instance""#,
    );
    assert_ne!(entry, valid, "the command tag is where the test expects it");
    let response = http
        .post(format!("{base}{}", raft::APPEND_PATH))
        .header("content-type", "application/json")
        .body(entry)
        .send()
        .await?;
    assert_eq!(response.status(), 422, "{:?}", response.text().await);

    tracing::info!("--- the member is unchanged and still writes");
    let after = m1.replicator.metrics();
    assert_eq!(after.term, before.term);
    assert_eq!(after.last_log_index, before.last_log_index);
    m1.replicator.propose(create("c2")).await?;
    assert_eq!(m1.instances(), vec!["c1", "c2"]);
    m1.kill().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_reads_its_own_forwarded_writes_at_once() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let settings = Settings::default();
    let m1 = Member::start_new(1, &tmp.path().join("m1"), &settings).await?;
    let m2 = Member::start_new(2, &tmp.path().join("m2"), &settings).await?;
    m1.replicator.bootstrap_single().await?;
    m1.wait("leader", |m| m.role == Role::Leader).await?;
    m1.replicator.add_learner(2, &m2.addr.to_string()).await?;
    m1.replicator.promote(2).await?;
    m2.wait("two voters", |m| {
        m.voters() == BTreeSet::from([1, 2]) && m.leader == Some(1)
    })
    .await?;

    tracing::info!("--- 50 writes through follower 2, each read there at once");
    let mut expected = Vec::new();
    for i in 0..50 {
        let name = format!("c{i:02}");
        m2.replicator.propose(create(&name)).await?;
        expected.push(name);
        assert_eq!(m2.instances(), expected, "after write {i}");
    }
    for m in [m1, m2] {
        m.kill().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_keep_their_outcomes() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let m1 = Member::start_new(1, &tmp.path().join("m1"), &Settings::default()).await?;
    m1.replicator.bootstrap_single().await?;
    m1.wait("leader", |m| m.role == Role::Leader).await?;
    let before = m1.replicator.metrics().last_log_index.unwrap_or(0);

    tracing::info!("--- 20 creates at once, 5 of them duplicates of others");
    let names: Vec<String> = (0..15)
        .map(|i| format!("c{i:02}"))
        .chain((0..5).map(|i| format!("c{i:02}")))
        .collect();
    let mut writes = tokio::task::JoinSet::new();
    for name in &names {
        let (replicator, cmd) = (m1.replicator.clone(), create(name));
        writes.spawn(async move { replicator.propose(cmd).await });
    }
    let (mut applied, mut exists) = (0, 0);
    while let Some(outcome) = writes.join_next().await {
        match outcome? {
            Ok(()) => applied += 1,
            Err(ProposeError::Exists(_)) => exists += 1,
            Err(e) => anyhow::bail!("unexpected outcome {e}"),
        }
    }
    assert_eq!((applied, exists), (15, 5));
    assert_eq!(m1.instances().len(), 15);
    let entries = m1.replicator.metrics().last_log_index.unwrap_or(0) - before;
    tracing::info!(entries, writes = names.len(), "log entries for the writes");
    assert!(
        entries < 20,
        "20 concurrent writes took {entries} entries: none were batched"
    );
    Ok(())
}

/// Member 1 leads 2 and 3, which would not stand for election on their own for a minute:
/// only the campaign request of a hand-over elects one within its 10 s.
async fn slow_followers(tmp: &std::path::Path) -> anyhow::Result<[Member; 3]> {
    let patient = Settings {
        election_min: std::time::Duration::from_secs(60),
        election_max: std::time::Duration::from_secs(90),
        ..Settings::default()
    };
    let m1 = Member::start_new(1, &tmp.join("m1"), &Settings::default()).await?;
    let m2 = Member::start_new(2, &tmp.join("m2"), &patient).await?;
    let m3 = Member::start_new(3, &tmp.join("m3"), &patient).await?;
    assert!(m1.replicator.bootstrap_single().await?);
    let bootstrapped = tokio::time::Instant::now();
    m1.wait("leader of its own group", |m| m.role == Role::Leader)
        .await?;
    m1.replicator.add_learner(2, &m2.addr.to_string()).await?;
    m1.replicator.add_learner(3, &m3.addr.to_string()).await?;
    m1.replicator.promote(2).await?;
    m1.replicator.promote(3).await?;
    m1.replicator.propose(create("before")).await?;
    converge(&[&m1, &m2, &m3], &m1).await?;
    // The old leader grants its vote only once its own lease (its election_max, 3 s) has
    // run out since it was elected; a cluster evacuates its leader later than that.
    tokio::time::sleep_until(bootstrapped + std::time::Duration::from_millis(3500)).await;
    Ok([m1, m2, m3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_handing_over_has_a_voter_stand_at_once() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let [m1, m2, m3] = slow_followers(tmp.path()).await?;
    let started = std::time::Instant::now();
    let leader = m1
        .replicator
        .hand_over_leadership(std::time::Duration::from_secs(10))
        .await?;
    tracing::info!(?leader, elapsed = ?started.elapsed(), "handed over");
    assert_eq!(
        leader,
        Some(2),
        "the voter asked first (lowest id of equals) leads"
    );
    for m in [&m1, &m2, &m3] {
        m.wait("member 2 leads", |m| m.leader == Some(2)).await?;
    }
    // The group goes on: a write through the old leader is forwarded to the new one.
    m1.replicator.propose(create("after")).await?;
    converge(&[&m1, &m2, &m3], &m2).await?;
    assert_eq!(m3.instances(), vec!["after", "before"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_does_not_stand_refuses_and_the_next_is_asked() -> anyhow::Result<()> {
    init_tracing();
    let tmp = tempfile::tempdir()?;
    let [m1, m2, m3] = slow_followers(tmp.path()).await?;
    // Member 2 is under maintenance too (evacuated): it votes but does not stand.
    m2.replicator.set_electable(false);
    let leader = m1
        .replicator
        .hand_over_leadership(std::time::Duration::from_secs(10))
        .await?;
    assert_eq!(leader, Some(3));
    m2.wait("member 3 leads", |m| m.leader == Some(3)).await?;
    m3.replicator.propose(create("after")).await?;
    converge(&[&m1, &m2, &m3], &m3).await?;
    Ok(())
}
