//! Operations: async work with a status, progress metadata and an outcome.

use serde::{Deserialize, Serialize};

/// An operation's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationClass {
    /// Background work (start, stop, create, evacuate).
    Task,
    /// Work that needs websockets from the client (exec, console).
    Websocket,
    /// A token (cluster join).
    Token,
}

/// An operation's status with LXD's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationStatus {
    /// 105: created, not started.
    Pending,
    /// 103: in progress.
    Running,
    /// 200: done.
    Success,
    /// 400: failed; `err` says why.
    Failure,
    /// 401: cancelled.
    Cancelled,
}

impl OperationStatus {
    /// LXD's `status_code` for this status.
    pub fn code(self) -> u16 {
        match self {
            Self::Pending => 105,
            Self::Running => 103,
            Self::Success => 200,
            Self::Failure => 400,
            Self::Cancelled => 401,
        }
    }

    /// Whether the operation has finished.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Cancelled)
    }

    /// The key used in `GET /1.0/operations` (`running`, `success`, ...).
    pub fn list_key(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An operation record (`GET /1.0/operations/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    /// UUID (`"0d05a3f3-5d26-47b9-8c66-de0110626a5d"`).
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: OperationClass,
    /// What it does (`"Starting instance"`).
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Status name.
    pub status: OperationStatus,
    /// Status code (see [`OperationStatus::code`]).
    pub status_code: u16,
    /// Affected resources (`{"instances": ["/1.0/instances/c1"]}`).
    pub resources: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Progress and results (`{"return": 0}` for exec).
    pub metadata: Option<serde_json::Value>,
    /// Whether `DELETE` cancels it.
    pub may_cancel: bool,
    /// Error message when failed.
    pub err: String,
    /// The member running it (`"none"` when not clustered).
    pub location: String,
}
