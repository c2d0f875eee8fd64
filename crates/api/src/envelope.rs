//! LXD's response envelope: `sync`, `async` (an operation was created) or `error`.

use serde::{Deserialize, Serialize};

/// Which kind of envelope a response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseType {
    /// The result is in `metadata`.
    Sync,
    /// An operation was created; its URL is in `operation`, its record in `metadata`.
    Async,
    /// `error_code` and `error` say what failed.
    Error,
}

/// Every `/1.0` answer: `{"type": "sync", "status": "Success", "status_code": 200, ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response<T = serde_json::Value> {
    /// `sync`, `async` or `error`.
    #[serde(rename = "type")]
    pub kind: ResponseType,
    /// `"Success"`, `"Operation created"`, or `""` for errors.
    #[serde(default)]
    pub status: String,
    /// 200 (sync), 100 (async), 0 (error).
    #[serde(default)]
    pub status_code: u16,
    /// `/1.0/operations/<id>` for async responses, else `""`.
    #[serde(default)]
    pub operation: String,
    /// The HTTP status of an error, else 0.
    #[serde(default)]
    pub error_code: u16,
    /// The error message (`"Instance not found"`), else `""`.
    #[serde(default)]
    pub error: String,
    /// The payload.
    pub metadata: T,
}

impl<T> Response<T> {
    /// A `sync` success carrying `metadata`.
    pub fn sync(metadata: T) -> Self {
        Self {
            kind: ResponseType::Sync,
            status: "Success".into(),
            status_code: 200,
            operation: String::new(),
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }

    /// An `async` response for the operation at `url` whose record is `metadata`.
    pub fn async_op(url: String, metadata: T) -> Self {
        Self {
            kind: ResponseType::Async,
            status: "Operation created".into(),
            status_code: 100,
            operation: url,
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }
}

/// The body of an error response (`metadata` is `null`).
pub type ErrorBody = Response<Option<serde_json::Value>>;

impl ErrorBody {
    /// An error envelope with HTTP status `code` and message `error`.
    pub fn error(code: u16, error: impl Into<String>) -> Self {
        Self {
            kind: ResponseType::Error,
            status: String::new(),
            status_code: 0,
            operation: String::new(),
            error_code: code,
            error: error.into(),
            metadata: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_matches_lxd() {
        let body = serde_json::to_value(ErrorBody::error(400, "Unknown action \"bogus\""))
            .expect("serializes");
        assert_eq!(
            body,
            serde_json::json!({
                "type": "error", "status": "", "status_code": 0, "operation": "",
                "error_code": 400, "error": "Unknown action \"bogus\"", "metadata": null
            })
        );
    }
}
