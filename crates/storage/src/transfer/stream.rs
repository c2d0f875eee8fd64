//! Async adapters: a transfer as a `Stream` of `Bytes` (a reqwest request body or an axum
//! response body) and a receive fed from one (an axum request body or a reqwest response).
//!
//! The sync send/receive runs on a blocking thread; chunks of [`CHUNK`] bytes cross a
//! bounded channel, so memory stays at a few MiB whatever the volume size.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::TransferError;
use super::manifest::Manifest;
use super::receive::{ReceiveSummary, receive};
use super::send::{SendSummary, send_delta, send_full};

/// Size of the chunks handed to the async side.
pub const CHUNK: usize = 256 << 10;
/// Chunks in flight between the blocking thread and the async side.
const DEPTH: usize = 16;

/// Starts sending `src` (full when `base` is `None`, else a delta against it) and returns the
/// byte stream and the handle that yields the [`SendSummary`] once the stream is done.
///
/// If sending fails, the stream yields an error item (so an HTTP body aborts and the
/// receiver sees a truncated stream) and the handle returns the cause. Dropping the stream
/// stops the sender (its writes fail with `BrokenPipe`).
pub fn send_stream(
    src: PathBuf,
    base: Option<Manifest>,
) -> (
    impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    JoinHandle<Result<SendSummary, TransferError>>,
) {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let r = match &base {
            None => send_full(&src, &mut w),
            Some(b) => send_delta(&src, b, &mut w),
        };
        if let Err(e) = &r {
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        r
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (stream, handle)
}

/// Receives a stream from `body` into `dst` (see [`receive`] for the checks and the state
/// `dst` is left in on error). An error item of `body` fails the receive as a broken stream.
pub async fn receive_stream<S, E>(dst: PathBuf, body: S) -> Result<ReceiveSummary, TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        receive(
            &dst,
            ChannelReader {
                rx,
                cur: Bytes::new(),
            },
        )
    });
    let mut body = std::pin::pin!(body);
    while let Some(item) = body.next().await {
        let item =
            item.map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()));
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            // The receiver stopped (it has the error) or the body broke (it will see it).
            break;
        }
    }
    drop(tx);
    handle
        .await
        .map_err(|e| TransferError::Task(e.to_string()))?
}

struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "stream dropped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.push()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
