//! Opening a member's Raft node from its files, and the member's persisted node id.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::network::{Contacts, Network, Transport};
use crate::{Error, LOG_FILE, LogStore, Replicator, Result, StateMachine, TypeConfig};

/// This member's Raft node (openraft's handle).
pub type Raft = openraft::Raft<TypeConfig>;

/// The file, in a member's database directory, that holds its Raft node id.
pub const NODE_ID_FILE: &str = "node.json";

/// The subdirectory of a member's database directory that holds its snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Timing and log-compaction settings of a Raft node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in `election_min..election_max`
    /// starts an election.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// Build a snapshot every this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot (so a member that was briefly away
    /// catches up from the log rather than a whole snapshot).
    pub keep_logs: u64,
    /// How long [`Replicator::propose`] waits for a leader to take a write.
    pub propose_deadline: Duration,
    /// The deadline of one snapshot chunk's transfer and install.
    pub snapshot_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            election_min: Duration::from_millis(1500),
            election_max: Duration::from_millis(3000),
            snapshot_every: 1000,
            keep_logs: 500,
            propose_deadline: Duration::from_secs(10),
            snapshot_timeout: Duration::from_secs(10),
        }
    }
}

/// Bytes of DB copy per install-snapshot request.
const SNAPSHOT_CHUNK: u64 = 1 << 20;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Settings {
    fn config(&self) -> Result<Config> {
        let config = Config {
            cluster_name: "drover".into(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_min),
            election_timeout_max: millis(self.election_max),
            install_snapshot_timeout: millis(self.snapshot_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // Chunks travel as JSON arrays of numbers (up to 4 bytes per byte): keep each
            // request well under the routes' body limit.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

/// Builds a member's Raft node.
#[derive(Debug)]
pub struct RaftNode;

impl RaftNode {
    /// Opens the Raft node of member `node_id`, reachable by the others at `addr`
    /// (`host:port`, empty while the member has no cluster address), with default
    /// [`Settings`].
    ///
    /// `dir` holds the log ([`LOG_FILE`]) and the snapshots ([`SNAPSHOT_DIR`]); `store` is
    /// the cluster DB the state machine applies to. `transport` reaches the other members.
    ///
    /// # Correctness
    ///
    /// From here on only the returned node may write to `store`: every write goes through
    /// [`Replicator::propose`]. The node starts as it was left: a member that was the
    /// single voter is leader again at once; a new one is uninitialized until
    /// [`Replicator::bootstrap_single`] or a leader adds it.
    pub async fn open(
        dir: &Path,
        store: Arc<db::Store>,
        node_id: u64,
        addr: &str,
        transport: Transport,
    ) -> Result<(Raft, Replicator)> {
        Self::open_with(dir, store, node_id, addr, transport, &Settings::default()).await
    }

    /// [`RaftNode::open`] with explicit settings.
    pub async fn open_with(
        dir: &Path,
        store: Arc<db::Store>,
        node_id: u64,
        addr: &str,
        transport: Transport,
        settings: &Settings,
    ) -> Result<(Raft, Replicator)> {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let log = LogStore::open(&dir.join(LOG_FILE)).await?;
        let sm = StateMachine::open(store, &dir.join(SNAPSHOT_DIR)).await?;
        let contacts = Contacts::default();
        let network = Network::new(node_id, transport.clone(), contacts.clone());
        let raft = Raft::new(node_id, Arc::new(settings.config()?), network, log, sm)
            .await
            .map_err(|e| Error::Start(e.to_string()))?;
        let replicator = Replicator::new(
            raft.clone(),
            node_id,
            addr.to_string(),
            transport,
            contacts,
            settings.propose_deadline,
        );
        Ok((raft, replicator))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct NodeIdFile {
    node_id: u64,
}

/// This member's Raft node id, from `dir/`[`NODE_ID_FILE`]; on first use, `fresh` is
/// written there (durably) and returned.
///
/// A member's id never changes once written: the Raft log and the other members know it
/// by it.
pub fn load_or_create_node_id(dir: &Path, fresh: u64) -> Result<u64> {
    let path = dir.join(NODE_ID_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice::<NodeIdFile>(&bytes)?.node_id),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let staging = dir.join(format!("{NODE_ID_FILE}.tmp"));
            let text = serde_json::to_vec(&NodeIdFile { node_id: fresh })?;
            {
                let mut file = fs::File::create(&staging).map_err(Error::io(&staging))?;
                std::io::Write::write_all(&mut file, &text).map_err(Error::io(&staging))?;
                file.sync_all().map_err(Error::io(&staging))?;
            }
            fs::rename(&staging, &path).map_err(Error::io(&path))?;
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Error::io(dir))?;
            Ok(fresh)
        }
        Err(e) => Err(Error::io(path)(e)),
    }
}
