//! `/1.0/events`: the event websocket as a [`Stream`] of [`api::Event`].

use api::Event;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{Client, Error, Result};

/// Events as they arrive; ends when the daemon closes the websocket.
pub type EventStream = BoxStream<'static, Result<Event>>;

impl Client {
    /// Subscribe to events of the given types (`operation`, `lifecycle`, `logging`; empty:
    /// all of them). The subscription is live once this returns.
    pub async fn events(&self, types: &[&str]) -> Result<EventStream> {
        let path = if types.is_empty() {
            "/1.0/events".to_string()
        } else {
            format!("/1.0/events?type={}", types.join(","))
        };
        let ws = self.websocket(&path).await?;
        Ok(decode_events(ws).boxed())
    }
}

/// Turn websocket messages into events: text (and binary) frames carry one JSON event each;
/// a close frame ends the stream; pings and pongs are skipped.
pub(crate) fn decode_events<S, E>(ws: S) -> impl Stream<Item = Result<Event>>
where
    S: Stream<Item = std::result::Result<Message, E>>,
    E: Into<Error>,
{
    ws.take_while(|m| futures::future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(|m| async move {
            match m {
                Ok(Message::Text(t)) => Some(serde_json::from_str(t.as_str()).map_err(Error::from)),
                Ok(Message::Binary(b)) => Some(serde_json::from_slice(&b).map_err(Error::from)),
                Ok(_) => None,
                Err(e) => Some(Err(e.into())),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn text_frames_become_events_and_close_ends() {
        let line = r#"{"location":"m1","metadata":{"action":"instance-started","source":"/1.0/instances/c1"},"project":"default","timestamp":"2026-11-24T07:09:15Z","type":"lifecycle"}"#;
        let frames: Vec<std::result::Result<Message, Error>> = vec![
            Ok(Message::Ping(Default::default())),
            Ok(Message::text(line)),
            Ok(Message::Close(None)),
            Ok(Message::text(line)),
        ];
        let events: Vec<_> = decode_events(futures::stream::iter(frames)).collect().await;
        assert_eq!(events.len(), 1);
        let ev = events.into_iter().next().expect("one").expect("decodes");
        assert_eq!(ev.kind, "lifecycle");
        assert_eq!(ev.location, "m1");
        assert_eq!(ev.metadata["action"], "instance-started");
    }
}
