//! Waiting for operations, with a spinner showing their progress on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use api::Operation;
use client::Client;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// Wait for `op` to succeed. On a terminal a spinner shows `what` and then the operation's
/// progress strings (metadata keys ending in `_progress`, from operation events); otherwise
/// nothing is printed.
pub async fn wait(client: &Client, op: &Operation, what: &str) -> anyhow::Result<Operation> {
    if !std::io::stdout().is_terminal() {
        return Ok(client.wait_done(op).await?);
    }
    let spinner = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        spinner.set_style(style);
    }
    spinner.set_message(what.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    let listener = {
        let client = client.clone();
        let id = op.id.clone();
        let spinner = spinner.clone();
        tokio::spawn(async move {
            let Ok(mut events) = client.events(&["operation"]).await else {
                return;
            };
            while let Some(Ok(ev)) = events.next().await {
                if ev.metadata["id"].as_str() == Some(id.as_str())
                    && let Some(text) = progress_text(&ev.metadata["metadata"])
                {
                    spinner.set_message(text);
                }
            }
        })
    };
    let done = client.wait_done(op).await;
    listener.abort();
    spinner.finish_and_clear();
    Ok(done?)
}

/// The progress string of an operation's metadata: the first key ending in `_progress`
/// (`{"create_instance_from_image_unpack_progress": "Unpack: 42%"}`).
pub fn progress_text(metadata: &serde_json::Value) -> Option<String> {
    let map = metadata.as_object()?;
    let mut keys: Vec<_> = map.keys().filter(|k| k.ends_with("_progress")).collect();
    keys.sort();
    keys.first()
        .and_then(|k| map[k.as_str()].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text_picks_the_progress_key() {
        let meta = serde_json::json!({"fds": {}, "create_instance_from_image_unpack_progress": "Unpack: 42%"});
        assert_eq!(progress_text(&meta).as_deref(), Some("Unpack: 42%"));
        assert_eq!(progress_text(&serde_json::json!({"return": 0})), None);
        assert_eq!(progress_text(&serde_json::Value::Null), None);
    }
}
