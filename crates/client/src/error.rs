//! The client's error type.

/// What can go wrong talking to droverd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon answered with an LXD error envelope (or an HTTP error status). The message
    /// is the daemon's, verbatim (`"Instance not found"`), so it prints as LXD's client does.
    #[error("{message}")]
    Api {
        /// HTTP status (`error_code` of the envelope).
        status: u16,
        /// The `error` field of the envelope.
        message: String,
    },
    /// An operation finished in `Failure` or `Cancelled`; the message is its `err`.
    #[error("{message}")]
    OperationFailed {
        /// Operation id.
        id: String,
        /// The operation's `err` (`"Failed to start instance"`).
        message: String,
    },
    /// The unix socket could not be reached.
    #[error("cannot connect to {path}")]
    Connect {
        /// The socket path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A connect or request deadline passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// HTTP-level failure on an established connection.
    #[error("http transport failed")]
    Http(#[from] hyper::Error),
    /// Building a request failed (bad header value, bad URI).
    #[error("invalid request")]
    Request(#[from] hyper::http::Error),
    /// A websocket failed.
    #[error("websocket failed")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A body was not the JSON we expected.
    #[error("cannot decode response")]
    Decode(#[from] serde_json::Error),
    /// Local I/O (reading an image file, writing exec output).
    #[error("i/o failed")]
    Io(#[from] std::io::Error),
    /// The daemon answered something that breaks the protocol (a sync answer where an
    /// operation was expected, missing exec fds, ...).
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}

impl Error {
    /// The HTTP status of an API error (`Some(404)` for "not found"), else `None`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is an API error with status 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
