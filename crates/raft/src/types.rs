//! The Raft type set, what one entry carries and the outcome of applying it.

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

openraft::declare_raft_types!(
    /// drover's Raft types: entries carry a [`Proposal`] (one or more [`db::Command`]s) and
    /// yield one [`Applied`] per command, members are `u64` ids with their cluster address
    /// ([`openraft::BasicNode`]), snapshots are whole cluster-DB files held in memory.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Applied>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The commands one log entry carries: usually one, several when concurrent writes were
/// proposed together (group commit: one log append and one fsync for all of them).
///
/// # Correctness
///
/// Applying an entry applies its commands in order, each as if it were an entry of its
/// own: a command that fails deterministically is rolled back alone and the next ones still
/// apply, so the outcome of each is the same on every member.
///
/// On the wire and in the log a proposal of one command is that command's JSON, exactly
/// as entries were written before proposals could hold more; several are a JSON array.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal(Vec<db::Command>);

impl Proposal {
    /// A proposal of `commands`, applied in this order.
    pub fn new(commands: Vec<db::Command>) -> Self {
        Self(commands)
    }

    /// The commands, in the order they apply.
    pub fn commands(&self) -> &[db::Command] {
        &self.0
    }
}

impl From<db::Command> for Proposal {
    fn from(cmd: db::Command) -> Self {
        Self(vec![cmd])
    }
}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }
}

/// Reads a [`Proposal`]: one command's object, or an array of commands. Each shape is
/// decoded as what it is, so a bad command keeps its precise error (`unknown variant ...`).
struct ProposalVisitor;

impl<'de> Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a command object or an array of commands")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Proposal, A::Error> {
        db::Command::deserialize(MapAccessDeserializer::new(map)).map(Proposal::from)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Proposal, A::Error> {
        let mut commands = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(cmd) = seq.next_element()? {
            commands.push(cmd);
        }
        Ok(Proposal(commands))
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProposalVisitor)
    }
}

/// The outcome of applying one command, the same on every member.
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
