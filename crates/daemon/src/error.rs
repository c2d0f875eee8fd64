//! API errors: typed where they arise, turned into LXD's error envelope in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to a client: an HTTP status and LXD's message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The message, worded as LXD words it where LXD has one.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message: message.into(),
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 412.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::PRECONDITION_FAILED,
            message: message.into(),
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// 503: not now; the same request may succeed later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    /// 501.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_IMPLEMENTED,
            message: message.into(),
        }
    }
}

impl From<db::Error> for ApiError {
    fn from(e: db::Error) -> Self {
        match e {
            db::Error::NotFound(what) => Self::not_found(format!("{what} not found")),
            db::Error::Exists(what) => Self::conflict(format!("{what} already exists")),
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<raft::ProposeError> for ApiError {
    fn from(e: raft::ProposeError) -> Self {
        use raft::ProposeError as P;
        match e {
            P::NotFound(message) => Self::not_found(message),
            P::Exists(message) => Self::conflict(message),
            P::NoLeader { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: e.to_string(),
            },
            e @ (P::Invalid(_) | P::Uncertain(_) | P::Stopped(_)) => Self::internal(e.to_string()),
        }
    }
}

impl From<drivers::DriverError> for ApiError {
    /// A state race (the instance stopped, or started, between the handler's check and the
    /// driver call, as during a move) is the client's 400 in LXD's words; the rest is a 500.
    fn from(e: drivers::DriverError) -> Self {
        match e {
            drivers::DriverError::NotRunning => Self::bad_request("Instance is not running"),
            drivers::DriverError::AlreadyRunning => {
                Self::bad_request("The instance is already running")
            }
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("background task failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = api::ErrorBody::error(self.status.as_u16(), self.message);
        (self.status, axum::Json(body)).into_response()
    }
}

/// Result of a service call.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error and its causes, one line, `: `-separated (the text of many errors, reqwest's
/// for one, names only what failed, not why).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What does this test do?
    /// - the driver's state races become LXD's 400s, other driver failures stay 500s
    #[test]
    fn driver_state_races_are_client_errors() {
        let e = ApiError::from(drivers::DriverError::NotRunning);
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "Instance is not running")
        );
        let e = ApiError::from(drivers::DriverError::AlreadyRunning);
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "The instance is already running")
        );
        let e = ApiError::from(drivers::DriverError::Invalid("bad signal".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
