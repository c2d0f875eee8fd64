//! Waiting for events on `/1.0/events`.

use std::time::Duration;

use futures::StreamExt;

/// Reads `stream` until a lifecycle event with `action` for instance `name` arrives, and
/// returns it; other events are skipped (and logged).
///
/// # Panics
///
/// When the stream ends or fails, or nothing matches within `timeout`.
pub async fn expect_lifecycle(
    stream: &mut client::EventStream,
    action: &str,
    name: &str,
    timeout: Duration,
) -> api::Event {
    let source = format!("/1.0/instances/{name}");
    let what = format!("lifecycle event {action} of {source}");
    crate::within(&what, timeout, async {
        loop {
            let ev = stream
                .next()
                .await
                .unwrap_or_else(|| panic!("event stream ended before {action}"))
                .unwrap_or_else(|e| panic!("event stream failed before {action}: {e}"));
            if ev.kind == "lifecycle"
                && ev.metadata["action"] == action
                && ev.metadata["source"] == source.as_str()
            {
                return ev;
            }
            tracing::debug!(kind = %ev.kind, metadata = %ev.metadata, "event skipped");
        }
    })
    .await
}
