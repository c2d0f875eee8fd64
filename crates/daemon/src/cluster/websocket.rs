//! Websockets through a forwarding member: an operation's websocket (exec's streams) on
//! the member that runs it, reached through the member the client talks to.
//!
//! [`proxy`] first opens the websocket to the member that runs the operation (with this
//! member's certificate, pinning the cluster's, marked forwarded), so that a refusal
//! there (`permission denied` for a wrong secret, `Operation not found`) is the client's
//! answer; only then does it accept the client's upgrade and relay frames both ways,
//! unchanged, until either side closes.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::peer::{FORWARDED_HEADER, Peer};
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// How long opening the websocket on the other member may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// A websocket opened on another member.
pub type Remote =
    tokio_tungstenite::WebSocketStream<tls::tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens `path_and_query` (with its `secret`) as a websocket on `peer`, then accepts the
/// client's `upgrade` and relays between the two.
///
/// # Errors
///
/// The other member's refusal (its HTTP status and error message); 503 when it cannot be
/// reached in time.
pub async fn proxy(
    d: &Daemon,
    peer: &Peer,
    path_and_query: &str,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let remote = connect(d, peer, path_and_query).await?;
    let member = peer.name().to_string();
    Ok(upgrade.on_upgrade(move |client| async move {
        relay(client, remote).await;
        tracing::debug!(member = %member, "forwarded websocket closed");
    }))
}

/// Opens `path_and_query` as a websocket on `peer`, marked forwarded, within
/// [`CONNECT_DEADLINE`].
///
/// # Errors
///
/// As [`proxy`].
pub async fn connect(d: &Daemon, peer: &Peer, path_and_query: &str) -> ApiResult<Remote> {
    tokio::time::timeout(CONNECT_DEADLINE, open(d, peer, path_and_query))
        .await
        .map_err(|_| unavailable(peer, "did not answer in time"))?
}

async fn open(d: &Daemon, peer: &Peer, path_and_query: &str) -> ApiResult<Remote> {
    let cluster = d
        .cluster
        .identity()
        .ok_or_else(|| ApiError::bad_request("Server isn't part of a cluster"))?;
    let config = tls::client_config(
        Some(d.https.identity()),
        Some(cluster.fingerprint().to_string()),
    )
    .map_err(|e| ApiError::internal(format!("member tls client: {e}")))?;
    let addr = tokio::net::lookup_host(peer.address())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| unavailable(peer, "its address does not resolve"))?;
    let stream = tls::connect(addr, config)
        .await
        .map_err(|e| unavailable(peer, &e.to_string()))?;
    let mut request = format!("wss://{}{path_and_query}", peer.address())
        .into_client_request()
        .map_err(|e| ApiError::bad_request(format!("Invalid websocket request: {e}")))?;
    request
        .headers_mut()
        .insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(refusal(resp.status().as_u16(), resp.body())),
        Err(e) => Err(unavailable(peer, &e.to_string())),
    }
}

/// The other member's refusal of the upgrade, with its LXD error message when it sent one.
fn refusal(status: u16, body: &Option<Vec<u8>>) -> ApiError {
    let message = body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<api::ErrorBody>(b).ok())
        .map(|e| e.error)
        .unwrap_or_else(|| "websocket refused by the cluster member".into());
    ApiError {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        message,
    }
}

fn unavailable(peer: &Peer, why: &str) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "Failed to reach cluster member {} for the websocket: {why}",
            peer.name()
        ),
    }
}

/// Relays frames between the client and the other member until either closes; a close
/// from one side is passed to the other.
async fn relay(client: WebSocket, remote: Remote) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut remote_tx, mut remote_rx) = remote.split();
    let up = async {
        while let Some(Ok(msg)) = client_rx.next().await {
            let closing = matches!(msg, Message::Close(_));
            if remote_tx.send(to_remote(msg)).await.is_err() || closing {
                break;
            }
        }
        let _ = remote_tx.close().await;
    };
    let down = async {
        while let Some(Ok(msg)) = remote_rx.next().await {
            let Some(msg) = to_client(msg) else { continue };
            let closing = matches!(msg, Message::Close(_));
            if client_tx.send(msg).await.is_err() || closing {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    // When one direction ends, the other gets a moment to pass the answering close frame
    // (the closing handshake), then is dropped: both sockets close.
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut up => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut down).await;
        }
        () = &mut down => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut up).await;
        }
    }
}

/// How long a relay whose one side closed waits for the other side's close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn to_remote(msg: Message) -> tungstenite::Message {
    match msg {
        Message::Text(t) => tungstenite::Message::text(t.as_str()),
        Message::Binary(b) => tungstenite::Message::Binary(b),
        Message::Ping(b) => tungstenite::Message::Ping(b),
        Message::Pong(b) => tungstenite::Message::Pong(b),
        Message::Close(frame) => {
            tungstenite::Message::Close(frame.map(|f| tungstenite::protocol::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }))
        }
    }
}

fn to_client(msg: tungstenite::Message) -> Option<Message> {
    Some(match msg {
        tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
        tungstenite::Message::Binary(b) => Message::Binary(b),
        tungstenite::Message::Ping(b) => Message::Ping(b),
        tungstenite::Message::Pong(b) => Message::Pong(b),
        tungstenite::Message::Close(frame) => Message::Close(frame.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}
