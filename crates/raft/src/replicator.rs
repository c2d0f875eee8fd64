//! [`Replicator`]: how the rest of drover writes to the replicated DB and manages the group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use crate::batcher::{Batcher, Written};
use crate::network::{
    CAMPAIGN_PATH, CallError, Contacts, PROPOSE_PATH, READ_INDEX_PATH, Transport,
};
use crate::{Applied, Raft, RejectKind};

/// Why a write did not take effect.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// Committed, and rejected by every member: the row it refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Committed, and rejected by every member: a row with its key already exists.
    #[error("{0}")]
    Exists(String),
    /// Committed, and rejected by every member for another reason in the data, or the
    /// leader cannot take it (it cannot decode the command).
    #[error("{0}")]
    Invalid(String),
    /// No leader took the write within the deadline: nothing was committed by this call.
    #[error("no raft leader took the write within {waited:?} (last: {last})")]
    NoLeader {
        /// How long this call tried.
        waited: Duration,
        /// The last reason an attempt failed.
        last: String,
    },
    /// The write reached a leader but its answer was lost: it may or may not be committed.
    #[error("the outcome of the write is unknown")]
    Uncertain(String),
    /// This member's Raft node has stopped (shut down or failed storage).
    #[error("raft node stopped: {0}")]
    Stopped(String),
}

impl ProposeError {
    fn from_applied(applied: Applied) -> Result<(), Self> {
        match applied {
            Applied::Ok => Ok(()),
            Applied::Rejected { kind, message } => Err(match kind {
                RejectKind::NotFound => ProposeError::NotFound(message),
                RejectKind::Exists => ProposeError::Exists(message),
                RejectKind::Invalid => ProposeError::Invalid(message),
            }),
        }
    }
}

/// Why a membership change did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MembershipError {
    /// Membership changes run on the leader; this member is not it.
    #[error("this member is not the raft leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this member knows of.
        leader: Option<u64>,
    },
    /// openraft refused the change (another change in progress, unknown member, ...).
    #[error("membership change refused: {0}")]
    Refused(String),
    /// The condition was not reached in time.
    #[error("{0}")]
    Timeout(String),
    /// This member's Raft node has stopped.
    #[error("raft node stopped: {0}")]
    Stopped(String),
}

/// What a member is in the Raft group right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Replicates but does not vote.
    Learner,
    /// A voter following a leader.
    Follower,
    /// A voter asking for votes.
    Candidate,
    /// The voter whose log everyone follows.
    Leader,
    /// The node has stopped.
    Shutdown,
}

/// What this member knows of another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its cluster address.
    pub address: String,
    /// Whether it votes.
    pub voter: bool,
    /// Index of the last entry known to be in its log: reported on the leader only.
    pub matched_index: Option<u64>,
    /// Time since it was last heard from (an answer to one of our RPCs, or one it sent us),
    /// `None` if never since this process started. On the leader this follows heartbeats.
    pub last_contact: Option<Duration>,
}

/// A snapshot of this member's view of the Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetrics {
    /// This member's id.
    pub id: u64,
    /// What this member is.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader this member knows of.
    pub leader: Option<u64>,
    /// Every member in the effective membership, voters and learners, by id.
    pub members: BTreeMap<u64, MemberStatus>,
    /// Index of the last entry in this member's log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to this member's DB.
    pub last_applied_index: Option<u64>,
    /// Index of the last entry in the current snapshot.
    pub snapshot_index: Option<u64>,
}

impl ClusterMetrics {
    /// Ids of the voters.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ids of the learners.
    pub fn learners(&self) -> BTreeSet<u64> {
        self.members
            .iter()
            .filter(|(_, m)| !m.voter)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The answer to a forwarded proposal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum ForwardAnswer {
    /// Committed and applied with this outcome. `index` is the entry's log index: the
    /// proposer waits until it has applied that far itself, so that its own reads see the
    /// write. Absent from older members' answers.
    Applied {
        applied: Applied,
        #[serde(default)]
        index: Option<u64>,
    },
    /// The receiver is not the leader (or lost leadership before committing): nothing was
    /// committed; ask `leader`.
    NotLeader { leader: Option<u64> },
    /// The receiver's Raft node has stopped: nothing was committed.
    Stopped { message: String },
}

/// The answer to a forwarded read-index request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum ReadIndexAnswer {
    /// Reads are linearizable once the asker has applied up to `index`.
    Index { index: Option<u64> },
    /// The receiver is not the leader.
    NotLeader { leader: Option<u64> },
    /// The receiver's Raft node has stopped.
    Stopped { message: String },
}

/// A request from the leader that hands its leadership over: stand for election now.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CampaignRequest {
    /// The leader asking (it must be the one the receiver follows).
    pub leader: u64,
}

/// The answer to a [`CampaignRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum CampaignAnswer {
    /// The receiver stands for election.
    Started,
    /// The receiver does not: why.
    Refused { why: String },
}

/// One attempt's outcome: finished, or worth retrying (with why).
enum Step<T> {
    Done(T),
    Retry(String),
}

/// The handle to this member's Raft node: propose writes, read linearizably, change the
/// membership, observe the group. Cheap to clone.
///
/// # Correctness
///
/// - [`Replicator::propose`] returns `Ok` only once the command is committed and applied
///   to this member's DB (on the leader) or the leader's (forwarded). A follower applies it
///   shortly after; use [`Replicator::ensure_linearizable`] before a read that must see it.
/// - A proposal is retried only when nothing was committed for sure: no leader known, the
///   leader could not be connected to, it answered that it is not (or no longer) leader,
///   or its node stopped. When the answer of a forwarded write is lost after it was sent,
///   the call fails with [`ProposeError::Uncertain`] rather than risk applying it twice.
/// - Every wait is bounded by the propose deadline.
/// - Writes made on the leader at the same time share log entries (group commit, see
///   [`Proposal`](crate::Proposal)); each keeps its own outcome.
#[derive(Debug, Clone)]
pub struct Replicator {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    batcher: Batcher,
    id: u64,
    addr: String,
    transport: Transport,
    contacts: Contacts,
    deadline: Duration,
    /// Whether this member stands for election ([`Replicator::set_electable`]).
    electable: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// How long a leader handing over waits for one voter's answer to a campaign request.
const CAMPAIGN_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest pause between two attempts while waiting for the group to settle.
const RETRY_PACE: Duration = Duration::from_millis(100);

impl Replicator {
    pub(crate) fn new(
        raft: Raft,
        id: u64,
        addr: String,
        transport: Transport,
        contacts: Contacts,
        deadline: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                batcher: Batcher::spawn(raft.clone()),
                raft,
                id,
                addr,
                transport,
                contacts,
                deadline,
                electable: AtomicBool::new(true),
            }),
        }
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub(crate) fn contacts(&self) -> &Contacts {
        &self.inner.contacts
    }

    /// This member's Raft node id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The leader this member knows of.
    pub fn leader_id(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Whether this member believes it is the leader (it may have been deposed without
    /// knowing yet; [`Replicator::ensure_linearizable`] checks with a quorum).
    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.inner.id)
    }

    /// Commits `cmd` through the Raft leader, from any member, and returns its outcome.
    ///
    /// Waits up to the propose deadline for a leader; see the type's `# Correctness`.
    pub async fn propose(&self, cmd: db::Command) -> Result<(), ProposeError> {
        let started = Instant::now();
        let deadline = started + self.inner.deadline;
        loop {
            let step = match self.leader_id() {
                Some(leader) if leader == self.inner.id => self.write_here(cmd.clone()).await,
                Some(leader) => self.forward(leader, &cmd, deadline).await,
                None => Step::Retry("no leader known".into()),
            };
            match step {
                Step::Done(outcome) => return outcome,
                Step::Retry(why) => {
                    if !self.settle(deadline).await {
                        return Err(ProposeError::NoLeader {
                            waited: started.elapsed(),
                            last: why,
                        });
                    }
                }
            }
        }
    }

    /// One attempt on this member, as the leader.
    async fn write_here(&self, cmd: db::Command) -> Step<Result<(), ProposeError>> {
        match self.inner.batcher.write(cmd).await {
            Written::Applied(applied, _) => Step::Done(ProposeError::from_applied(applied)),
            Written::NotLeader(leader) => Step::Retry(format!("leadership moved to {leader:?}")),
            Written::Stopped(message) => Step::Done(Err(ProposeError::Stopped(message))),
        }
    }

    /// Handles a proposal forwarded to this member: commits it if this member is the
    /// leader, never forwards it again.
    pub(crate) async fn propose_forwarded(&self, cmd: db::Command) -> ForwardAnswer {
        if !self.is_leader() {
            return ForwardAnswer::NotLeader {
                leader: self.leader_id(),
            };
        }
        match self.inner.batcher.write(cmd).await {
            Written::Applied(applied, index) => ForwardAnswer::Applied { applied, index },
            Written::NotLeader(leader) => ForwardAnswer::NotLeader { leader },
            Written::Stopped(message) => ForwardAnswer::Stopped { message },
        }
    }

    /// One attempt through the leader `leader`.
    async fn forward(
        &self,
        leader: u64,
        cmd: &db::Command,
        deadline: Instant,
    ) -> Step<Result<(), ProposeError>> {
        let Some(addr) = self.address_of(leader) else {
            return Step::Retry(format!("leader {leader} has no known address"));
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self
            .inner
            .transport
            .post::<_, ForwardAnswer>(&addr, PROPOSE_PATH, cmd, remaining)
            .await
        {
            Ok(ForwardAnswer::Applied { applied, index }) => {
                self.inner.contacts.saw(leader);
                self.applied_here(index, deadline).await;
                Step::Done(ProposeError::from_applied(applied))
            }
            Ok(ForwardAnswer::NotLeader { leader: next }) => {
                Step::Retry(format!("{leader} is not the leader (it knows {next:?})"))
            }
            Ok(ForwardAnswer::Stopped { message }) => {
                Step::Retry(format!("{leader} stopped: {message}"))
            }
            Err(e @ CallError::Connect { .. }) => Step::Retry(error_chain(&e)),
            Err(CallError::Status {
                status: 422, body, ..
            }) => Step::Done(Err(ProposeError::Invalid(format!(
                "leader {leader} cannot decode the command: {body}"
            )))),
            Err(e @ CallError::Status { .. }) => Step::Retry(error_chain(&e)),
            Err(e) => Step::Done(Err(ProposeError::Uncertain(error_chain(&e)))),
        }
    }

    /// Waits until this member has applied the entry at `index`, which the leader has
    /// committed for it, so that a write is followed by reads that see it on the member
    /// that asked for it (read your writes). Past `deadline` it gives up with a warning:
    /// the write is committed either way, and the member catches up on its own.
    async fn applied_here(&self, index: Option<u64>, deadline: Instant) {
        let Some(index) = index else { return };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self
            .inner
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "own write applied")
            .await
        {
            tracing::warn!(index, error = %e, "a forwarded write is committed but not applied here yet");
        }
    }

    /// Waits until reads on this member's DB see every write committed before the call:
    /// confirms leadership with a quorum (on the leader) or asks the leader for its commit
    /// index, then waits until this member has applied up to it.
    pub async fn ensure_linearizable(&self) -> Result<(), ProposeError> {
        let started = Instant::now();
        let deadline = started + self.inner.deadline;
        loop {
            let step = match self.leader_id() {
                Some(leader) if leader == self.inner.id => match self.read_index_here().await {
                    ReadIndexAnswer::Index { .. } => Step::Done(Ok(())),
                    ReadIndexAnswer::NotLeader { leader } => {
                        Step::Retry(format!("leadership moved to {leader:?}"))
                    }
                    ReadIndexAnswer::Stopped { message } => {
                        Step::Done(Err(ProposeError::Stopped(message)))
                    }
                },
                Some(leader) => self.read_index_from(leader, deadline).await,
                None => Step::Retry("no leader known".into()),
            };
            match step {
                Step::Done(outcome) => return outcome,
                Step::Retry(why) => {
                    if !self.settle(deadline).await {
                        return Err(ProposeError::NoLeader {
                            waited: started.elapsed(),
                            last: why,
                        });
                    }
                }
            }
        }
    }

    /// The read index on this member, if it is the leader; waits until it is applied here.
    pub(crate) async fn read_index_here(&self) -> ReadIndexAnswer {
        match self.inner.raft.ensure_linearizable().await {
            Ok(log_id) => ReadIndexAnswer::Index {
                index: log_id.map(|l| l.index),
            },
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                ReadIndexAnswer::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                ReadIndexAnswer::NotLeader { leader: None }
            }
            Err(RaftError::Fatal(f)) => ReadIndexAnswer::Stopped {
                message: f.to_string(),
            },
        }
    }

    async fn read_index_from(
        &self,
        leader: u64,
        deadline: Instant,
    ) -> Step<Result<(), ProposeError>> {
        let Some(addr) = self.address_of(leader) else {
            return Step::Retry(format!("leader {leader} has no known address"));
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let index = match self
            .inner
            .transport
            .post::<_, ReadIndexAnswer>(&addr, READ_INDEX_PATH, &(), remaining)
            .await
        {
            Ok(ReadIndexAnswer::Index { index }) => index,
            Ok(ReadIndexAnswer::NotLeader { leader: next }) => {
                return Step::Retry(format!("{leader} is not the leader (it knows {next:?})"));
            }
            Ok(ReadIndexAnswer::Stopped { message }) => {
                return Step::Retry(format!("{leader} stopped: {message}"));
            }
            // A read index changes nothing: any failure can be retried.
            Err(e) => return Step::Retry(error_chain(&e)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self
            .inner
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(index, "read index applied")
            .await
        {
            Ok(_) => Step::Done(Ok(())),
            Err(e) => Step::Done(Err(ProposeError::NoLeader {
                waited: self.inner.deadline,
                last: e.to_string(),
            })),
        }
    }

    /// Waits for the metrics to change, at most [`RETRY_PACE`]; `false` once `deadline`
    /// has passed.
    async fn settle(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let mut metrics = self.inner.raft.metrics();
        metrics.borrow_and_update();
        let pause = RETRY_PACE.min(deadline - now);
        let _ = tokio::time::timeout(pause, metrics.changed()).await;
        Instant::now() < deadline
    }

    fn address_of(&self, member: u64) -> Option<String> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&member)
            .map(|n| n.addr.clone())
    }

    /// This member's view of the group.
    pub fn metrics(&self) -> ClusterMetrics {
        let m = self.inner.raft.metrics().borrow().clone();
        self.convert(&m)
    }

    fn convert(&self, m: &RaftMetrics<u64, BasicNode>) -> ClusterMetrics {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let now = Instant::now();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|l| l.map(|l| l.index));
                let last_contact = if *id == m.id {
                    Some(Duration::ZERO)
                } else {
                    self.inner
                        .contacts
                        .last_seen(*id)
                        .map(|t| now.saturating_duration_since(t))
                };
                let status = MemberStatus {
                    address: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index,
                    last_contact,
                };
                (*id, status)
            })
            .collect();
        ClusterMetrics {
            id: m.id,
            role: match m.state {
                ServerState::Learner => Role::Learner,
                ServerState::Follower => Role::Follower,
                ServerState::Candidate => Role::Candidate,
                ServerState::Leader => Role::Leader,
                ServerState::Shutdown => Role::Shutdown,
            },
            term: m.current_term,
            leader: m.current_leader,
            members,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
        }
    }

    /// Waits until `condition` holds on this member's metrics, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&ClusterMetrics) -> bool,
    ) -> Result<ClusterMetrics, MembershipError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.inner.raft.metrics();
        loop {
            let current = self.convert(&rx.borrow_and_update());
            if condition(&current) {
                return Ok(current);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(MembershipError::Timeout(format!(
                    "{what}: not reached within {timeout:?} (term {}, leader {:?}, role {:?})",
                    current.term, current.leader, current.role
                )));
            }
            // Contacts are not part of openraft's metrics: re-check them at the pace too.
            if let Ok(Err(_)) = tokio::time::timeout(remaining.min(RETRY_PACE), rx.changed()).await
            {
                return Err(MembershipError::Stopped("metrics channel closed".into()));
            }
        }
    }

    /// Makes this member the single voter of a new group, unless the group is already
    /// initialized (on this member's disk). Returns whether it initialized it.
    ///
    /// Idempotent across restarts: a member that was initialized, or that joined another
    /// group, is left alone.
    pub async fn bootstrap_single(&self) -> Result<bool, MembershipError> {
        let raft = &self.inner.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| MembershipError::Stopped(e.to_string()))?
        {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.inner.id, BasicNode::new(&self.inner.addr))]);
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(
                    member = self.inner.id,
                    "raft group initialized with one voter"
                );
                Ok(true)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(MembershipError::Refused(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(MembershipError::Stopped(f.to_string())),
        }
    }

    /// Lets this member stand for election (`true`, the default) or not (`false`: it still
    /// votes and replicates, but never becomes the leader: a member under maintenance).
    /// Not persisted: a restarted member stands again.
    pub fn set_electable(&self, electable: bool) {
        self.inner.electable.store(electable, Ordering::SeqCst);
        self.inner.raft.runtime_config().elect(electable);
    }

    /// Answers a [`CampaignRequest`]: when `leader` is the leader this member follows and
    /// this member stands for election, it starts an election now.
    pub(crate) async fn campaign_here(&self, leader: u64) -> CampaignAnswer {
        let refused = |why: String| CampaignAnswer::Refused { why };
        if !self.inner.electable.load(Ordering::SeqCst) {
            return refused("this member does not stand for election".into());
        }
        let known = self.leader_id();
        if known != Some(leader) || leader == self.inner.id {
            return refused(format!(
                "member {leader} is not the leader this member follows ({known:?})"
            ));
        }
        match self.inner.raft.trigger().elect().await {
            Ok(()) => CampaignAnswer::Started,
            Err(e) => refused(e.to_string()),
        }
    }

    /// While this leader hands over: asks the voter most likely to win (the one whose log
    /// matches the most of ours, heard from lately) to stand for election at once, instead
    /// of letting every follower wait out its election timeout. The old leader votes for
    /// it, so it wins without the other followers' leases running out. Best effort: on any
    /// refusal the next voter is asked, and if none starts, the timeouts still elect one.
    async fn ask_successor(&self) {
        let m = self.metrics();
        let mut voters: Vec<(u64, Option<u64>, String)> = m
            .members
            .iter()
            .filter(|(id, s)| {
                **id != m.id
                    && s.voter
                    && s.last_contact.is_some_and(|c| c < Duration::from_secs(2))
            })
            .map(|(id, s)| (*id, s.matched_index, s.address.clone()))
            .collect();
        voters.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let request = CampaignRequest { leader: m.id };
        for (id, matched, addr) in voters {
            match self
                .inner
                .transport
                .post::<_, CampaignAnswer>(&addr, CAMPAIGN_PATH, &request, CAMPAIGN_TIMEOUT)
                .await
            {
                Ok(CampaignAnswer::Started) => {
                    tracing::info!(member = id, ?matched, "asked to stand for raft election");
                    return;
                }
                Ok(CampaignAnswer::Refused { why }) => {
                    tracing::info!(member = id, %why, "did not stand for raft election");
                }
                Err(e) => {
                    tracing::info!(member = id, error = %error_chain(&e), "campaign request failed");
                }
            }
        }
    }

    /// Hands leadership over when this member leads: it stops standing for election and
    /// pauses its heartbeats until another voter has been elected (at most `timeout`), then
    /// resumes them. Returns the new leader, or `None` when this member did not lead.
    /// Leaves this member unelectable; [`Replicator::set_electable`] undoes that.
    ///
    /// # Errors
    ///
    /// [`MembershipError::Timeout`] when no other member took over in time (this member
    /// then still leads, heartbeats resumed).
    pub async fn hand_over_leadership(
        &self,
        timeout: Duration,
    ) -> Result<Option<u64>, MembershipError> {
        self.set_electable(false);
        if !self.is_leader() {
            return Ok(None);
        }
        let config = self.inner.raft.runtime_config();
        config.heartbeat(false);
        self.ask_successor().await;
        let me = self.inner.id;
        let outcome = self
            .wait_for(timeout, "another raft leader", move |m| {
                m.leader.is_some_and(|l| l != me)
            })
            .await;
        config.heartbeat(true);
        outcome.map(|m| m.leader)
    }

    /// Waits until some member is the leader, at most `timeout`; returns it.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<u64, MembershipError> {
        let m = self
            .wait_for(timeout, "a raft leader", |m| m.leader.is_some())
            .await?;
        m.leader
            .ok_or_else(|| MembershipError::Timeout("no raft leader".into()))
    }

    fn leader_only(&self) -> Result<(), MembershipError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(MembershipError::NotLeader {
                leader: self.leader_id(),
            })
        }
    }

    fn membership_result<T>(
        &self,
        r: Result<T, RaftError<u64, ClientWriteError<u64, BasicNode>>>,
    ) -> Result<(), MembershipError> {
        match r {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(MembershipError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(MembershipError::Refused(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(MembershipError::Stopped(f.to_string())),
        }
    }

    /// Adds member `id` at `addr` as a learner and waits until it has caught up with the
    /// leader's log. Leader only.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<(), MembershipError> {
        self.leader_only()?;
        let r = self
            .inner
            .raft
            .add_learner(id, BasicNode::new(addr), true)
            .await;
        self.membership_result(r)
    }

    /// Changes the address the group knows member `id` by (a standalone member that gets a
    /// cluster address). Leader only.
    ///
    /// # Correctness
    ///
    /// Only for a member whose identity stays the same (same node, new address); it is not
    /// a way to swap one member for another.
    pub async fn set_address(&self, id: u64, addr: &str) -> Result<(), MembershipError> {
        self.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(
            id,
            BasicNode::new(addr),
        )])))
        .await
    }

    /// The transport this node reaches the others with.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Makes the learner `id` a voter. Leader only.
    pub async fn promote(&self, id: u64) -> Result<(), MembershipError> {
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await
    }

    /// Makes exactly `voters` the voters (each must already be a member); removed voters
    /// stay as learners. Leader only.
    pub async fn set_voters(&self, voters: BTreeSet<u64>) -> Result<(), MembershipError> {
        self.leader_only()?;
        let r = self.inner.raft.change_membership(voters, true).await;
        self.membership_result(r)
    }

    /// Removes member `id` from the group, voter or learner. Leader only.
    pub async fn remove(&self, id: u64) -> Result<(), MembershipError> {
        let ids = BTreeSet::from([id]);
        // Removing a voter without retaining it as a learner removes it altogether.
        if self.metrics().voters().contains(&id) {
            self.change_membership(ChangeMembers::RemoveVoters(ids))
                .await
        } else {
            self.change_membership(ChangeMembers::RemoveNodes(ids))
                .await
        }
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<u64, BasicNode>,
    ) -> Result<(), MembershipError> {
        self.leader_only()?;
        let r = self.inner.raft.change_membership(change, false).await;
        self.membership_result(r)
    }

    /// Stops this member's Raft node. Proposals fail with [`ProposeError::Stopped`] after.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft node did not stop cleanly");
        }
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
