//! drover's replication layer: the only crate that names openraft types.
//!
//! This part holds the storage openraft runs on:
//!
//! - [`TypeConfig`]: the Raft type set; each log entry carries one [`db::Command`] and
//!   yields one [`Applied`].
//! - [`LogStore`]: the Raft log, vote, committed id and purge point, in their own SQLite file
//!   ([`LOG_FILE`]), synced before anything is acknowledged.
//! - [`StateMachine`]: applies committed entries to the cluster DB ([`db::Store`]) and keeps
//!   the log position in the same transaction; snapshots are whole copies of that DB, the
//!   current one kept on disk under a snapshot directory.
//!
//! On top of these:
//!
//! - [`RaftNode::open`] builds a member's node from its files; [`Replicator`] is the handle
//!   the rest of drover uses: [`Replicator::propose`] a [`db::Command`] from any member
//!   (forwarded to the leader; on the leader, concurrent writes share one log entry and one
//!   fsync), [`Replicator::ensure_linearizable`] before a read that must
//!   see every earlier write, membership changes, and [`ClusterMetrics`].
//! - The network: [`Transport`] (the caller's HTTP client and scheme) carries openraft's
//!   RPCs as JSON over `POST /internal/raft/*`; [`router`] serves them, behind a
//!   [`PeerGuard`].
//!
//! # Correctness
//!
//! - All SQLite and file work runs off the async executor: the log store on one dedicated
//!   thread (which also orders its writes), the state machine in `spawn_blocking`.
//! - A command that fails deterministically is recorded as its entry's response on every
//!   member and the state machine goes on; a failure of the environment stops it (openraft
//!   shuts the node down) rather than let members diverge.

mod batcher;
mod error;
mod log_store;
mod network;
mod node;
mod replicator;
mod routes;
mod snapshot_file;
mod state_machine;
mod types;

pub use error::{Error, Result};
pub use log_store::{LOG_FILE, LogReader, LogStore};
pub use network::{
    APPEND_PATH, Network, PROPOSE_PATH, Peer, READ_INDEX_PATH, SNAPSHOT_PATH, Scheme, Transport,
    VOTE_PATH,
};
pub use node::{NODE_ID_FILE, Raft, RaftNode, SNAPSHOT_DIR, Settings, load_or_create_node_id};
pub use replicator::{
    ClusterMetrics, MemberStatus, MembershipError, ProposeError, Replicator, Role,
};
pub use routes::{AdmitAll, PeerGuard, router};
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use types::{Applied, Proposal, RejectKind, TypeConfig};
