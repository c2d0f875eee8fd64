//! `GET /1.0/events`: a websocket of JSON events.

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};

use crate::cluster::forward::Forwarded;
use crate::state::Daemon;

/// How long a new client listener waits for this member to relay the other members'
/// events (only just after a join, or while a relay reconnects).
const RELAY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, serde::Deserialize)]
struct EventsQuery {
    #[serde(default, rename = "type")]
    kinds: Option<String>,
}

async fn events(
    State(d): State<Daemon>,
    Query(q): Query<EventsQuery>,
    forwarded: Option<Extension<Forwarded>>,
    ws: WebSocketUpgrade,
) -> Response {
    // A member relaying this member's events takes only the events that happened here.
    let own_only = forwarded.is_some();
    let kinds: Vec<String> = q
        .kinds
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if !own_only {
        // A client (not a member's relay): the whole cluster's events from now on.
        crate::cluster::events::wait_all_relayed(&d, RELAY_WAIT).await;
    }
    let mut rx = d.bus.subscribe();
    ws.on_upgrade(move |socket| async move {
        let (mut tx, mut incoming) = socket.split();
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if !kinds.is_empty() && !kinds.contains(&ev.kind) {
                            continue;
                        }
                        if own_only && !crate::cluster::events::is_own(&d, &ev) {
                            continue;
                        }
                        let Ok(text) = serde_json::to_string(&ev) else { continue };
                        if tx.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "events listener lagged");
                    }
                    Err(_) => break,
                },
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
            }
        }
    })
}

pub fn routes() -> Router<Daemon> {
    Router::new().route("/1.0/events", get(events))
}
