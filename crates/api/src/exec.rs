//! `POST /1.0/instances/{name}/exec`.

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// What `lxc exec` sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceExecPost {
    /// Argument vector (`["cat", "/etc/hostname"]`).
    pub command: Vec<String>,
    /// Extra environment (`{"TERM": "xterm"}`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub environment: ConfigMap,
    /// Give the command a terminal (one websocket for all stdio).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub interactive: bool,
    /// Wait for the client to connect the websockets before running.
    #[serde(
        default,
        deserialize_with = "crate::de::null_default",
        rename = "wait-for-websocket"
    )]
    pub wait_for_websocket: bool,
    /// Record output to files instead of websockets (accepted; output is recorded to the log).
    #[serde(
        default,
        deserialize_with = "crate::de::null_default",
        rename = "record-output"
    )]
    pub record_output: bool,
    /// Terminal width.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub width: u16,
    /// Terminal height.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub height: u16,
    /// User id to run as (0 = root).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub user: u32,
    /// Group id to run as.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub group: u32,
    /// Working directory.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub cwd: String,
}

/// A message on the exec control websocket
/// (`{"command": "window-resize", "args": {"width": "80", "height": "24"}}`,
/// `{"command": "signal", "signal": 15}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecControl {
    /// `window-resize` or `signal`.
    pub command: String,
    /// For `window-resize`: `width` and `height` as strings.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub args: ConfigMap,
    /// For `signal`: the signal number.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub signal: i32,
}
