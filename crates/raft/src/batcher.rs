//! [`Batcher`]: group commit of the writes made on the leader.
//!
//! openraft 0.9 turns every `client_write` into its own log entry and its core waits for
//! that entry's append (one SQLite commit, one fsync) before it takes the next request, so N
//! concurrent writes cost N fsyncs in a row. The batcher keeps one `client_write` in flight
//! and gathers every command that arrives meanwhile into the next one: a single
//! [`Proposal`] entry, one append and one fsync for all of them. A lone write goes out at
//! once, so its latency does not change.

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::{Applied, Proposal, Raft, RejectKind};

/// The most commands one entry carries (a bound on the entry's size, not a wait).
const MAX_BATCH: usize = 256;

/// What became of one command handed to the [`Batcher`].
#[derive(Debug, Clone)]
pub(crate) enum Written {
    /// Committed and applied with this outcome, at this log index (`None` for a
    /// membership change refused before it reached the log).
    Applied(Applied, Option<u64>),
    /// This member is not the leader (or lost leadership before committing): nothing was
    /// committed; the leader it knows of.
    NotLeader(Option<u64>),
    /// The Raft node has stopped: nothing was committed.
    Stopped(String),
}

/// A command waiting for the next batch, and where its outcome goes.
struct Pending {
    cmd: db::Command,
    reply: oneshot::Sender<Written>,
}

/// The queue in front of this member's `client_write`; cheap to clone.
///
/// # Correctness
///
/// - Commands are proposed in the order they were queued, and those of one batch apply in
///   that order, each with its own outcome (see [`Proposal`]): batching changes how many
///   fsyncs they share, not what they do.
/// - The task ends when every handle is dropped; a command still queued then, or whose
///   batch fails, gets [`Written::NotLeader`] or [`Written::Stopped`] (nothing committed),
///   as openraft reported for the whole entry.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Starts the batching task over `raft`. Must be called within a tokio runtime.
    pub(crate) fn spawn(raft: Raft) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, pending));
        Self { queue }
    }

    /// Proposes `cmd` with whatever else is waiting, and returns its outcome once its entry
    /// is committed and applied (or failed).
    pub(crate) async fn write(&self, cmd: db::Command) -> Written {
        let (reply, outcome) = oneshot::channel();
        if self.queue.send(Pending { cmd, reply }).is_err() {
            return Written::Stopped("the write queue has stopped".into());
        }
        outcome
            .await
            .unwrap_or_else(|_| Written::Stopped("the write queue has stopped".into()))
    }
}

async fn run(raft: Raft, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::new();
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (commands, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|p| (p.cmd, p.reply)).unzip();
        let count = commands.len();
        if count > 1 {
            tracing::trace!(commands = count, "proposing a batch");
        }
        let outcomes: Vec<Written> = match raft.client_write(Proposal::new(commands)).await {
            Ok(response) if response.data.len() == count => {
                let index = Some(response.log_id.index);
                response
                    .data
                    .into_iter()
                    .map(|applied| Written::Applied(applied, index))
                    .collect()
            }
            Ok(response) => {
                // The state machine answers one outcome per command: anything else is a bug
                // that must not be reported as success.
                tracing::error!(
                    commands = count,
                    outcomes = response.data.len(),
                    "a batch was applied with the wrong number of outcomes"
                );
                let message = format!(
                    "a batch of {count} commands was applied with {} outcomes",
                    response.data.len()
                );
                vec![Written::Stopped(message); count]
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                vec![Written::NotLeader(f.leader_id); count]
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                let applied = Applied::Rejected {
                    kind: RejectKind::Invalid,
                    message: e.to_string(),
                };
                vec![Written::Applied(applied, None); count]
            }
            Err(RaftError::Fatal(f)) => vec![Written::Stopped(f.to_string()); count],
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The proposer may have gone away; its command's fate is in the log regardless.
            let _ = reply.send(outcome);
        }
    }
}
