//! The Raft type set and the response of applying one entry.

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// drover's Raft types: entries carry [`db::Command`]s, members are `u64` ids with their
    /// cluster address ([`openraft::BasicNode`]), snapshots are whole cluster-DB files held
    /// in memory.
    pub TypeConfig:
        D = db::Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The outcome of applying one log entry, the same on every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Applied {
    /// The command took effect, or the entry carried none (blank, membership).
    Ok,
    /// The command failed deterministically and changed nothing; later entries still apply.
    Rejected {
        /// Why, for mapping to an API error.
        kind: RejectKind,
        /// The DB error's message (`instance "c1" already exists`).
        message: String,
    },
}

/// Why a command was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectKind {
    /// The row it refers to does not exist.
    NotFound,
    /// A row with its key already exists.
    Exists,
    /// Anything else the data rules out.
    Invalid,
}

impl Applied {
    /// The outcome of one command as the DB reported it.
    pub(crate) fn from_db(outcome: db::Result<()>) -> Self {
        match outcome {
            Ok(()) => Applied::Ok,
            Err(e) => Applied::Rejected {
                kind: match e {
                    db::Error::NotFound(_) => RejectKind::NotFound,
                    db::Error::Exists(_) => RejectKind::Exists,
                    _ => RejectKind::Invalid,
                },
                message: e.to_string(),
            },
        }
    }

    /// Whether the command took effect.
    pub fn is_ok(&self) -> bool {
        matches!(self, Applied::Ok)
    }
}
