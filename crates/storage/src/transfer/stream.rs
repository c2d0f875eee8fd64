//! Async adapters: a transfer as a `Stream` of `Bytes` (a reqwest request body or an axum
//! response body) and a receive fed from one (an axum request body or a reqwest response).
//!
//! The sync send/receive runs on a blocking thread. Sending, chunks of [`CHUNK`] bytes (file
//! data read straight into them) cross a channel of 16; receiving, the body's pieces cross
//! as they are, up to 16 MiB ahead of the writer. Memory stays at a few MiB per transfer
//! whatever the volume size.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::error::TransferError;
use super::format::{Out, PutError};
use super::manifest::Manifest;
use super::receive::{ReceiveSummary, receive_buffered};
use super::send::{SendSummary, send};

/// Size of the chunks handed to the async side.
pub const CHUNK: usize = 256 << 10;
/// Chunks in flight between the blocking thread and the async side.
const DEPTH: usize = 16;
/// A file read into a chunk with less room than this starts the next chunk, so reads stay
/// big.
const MIN_READ: usize = 64 << 10;
/// Bytes of a received body held between the async side and the blocking receiver: the
/// network keeps flowing while the receiver waits on the disk.
const RECEIVE_BUDGET: usize = 16 << 20;

/// Starts sending `src` (full when `base` is `None`, else a delta against it) and returns the
/// byte stream and the handle that yields the [`SendSummary`] once the stream is done.
///
/// File data is read straight into the chunks the stream yields: no copy between the file
/// and the HTTP body.
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
        let out = ChunkOut {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let r = send(&src, base.as_ref(), out);
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

/// Receives a stream from `body` into `dst` (see [`super::receive`] for the checks and the
/// state `dst` is left in on error). An error item of `body` fails the receive as a broken
/// stream.
///
/// The body's pieces go to the blocking receiver as they are (file data is written from
/// them, not copied), up to [`RECEIVE_BUDGET`] bytes ahead of it.
pub async fn receive_stream<S, E>(dst: PathBuf, body: S) -> Result<ReceiveSummary, TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (tx, rx) = mpsc::unbounded_channel::<io::Result<Bytes>>();
    let budget = Arc::new(Semaphore::new(RECEIVE_BUDGET));
    let reader = ChannelReader {
        rx,
        cur: Bytes::new(),
        budget: budget.clone(),
        held: 0,
    };
    let handle = tokio::task::spawn_blocking(move || receive_buffered(&dst, reader));
    let mut body = std::pin::pin!(body);
    while let Some(item) = body.next().await {
        let item =
            item.map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()));
        let failed = item.is_err();
        let cost = item.as_ref().map_or(0, |b| permits(b.len()));
        // Closed when the receiver stopped (it has the error).
        let Ok(held) = budget.acquire_many(cost).await else {
            break;
        };
        held.forget();
        if tx.send(item).is_err() || failed {
            // The receiver stopped or the body broke (it will see it).
            break;
        }
    }
    drop(tx);
    handle
        .await
        .map_err(|e| TransferError::Task(e.to_string()))?
}

/// The budget a piece of `len` bytes takes (a piece bigger than the whole budget takes all
/// of it).
fn permits(len: usize) -> u32 {
    u32::try_from(len.min(RECEIVE_BUDGET)).unwrap_or(u32::MAX)
}

/// The sender's output: framing is copied into the current chunk, file data is read into
/// its free capacity; a full chunk goes to the channel as it is.
struct ChunkOut {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkOut {
    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "stream dropped"))
    }

    fn room(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }
}

impl Out for ChunkOut {
    fn put(&mut self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            if self.room() == 0 {
                self.push()?;
            }
            let n = b.len().min(self.room());
            self.buf.extend_from_slice(&b[..n]);
            b = &b[n..];
        }
        Ok(())
    }

    fn put_from(&mut self, file: &File, max: usize) -> Result<&[u8], PutError> {
        if self.room() < MIN_READ {
            self.push().map_err(PutError::Write)?;
        }
        let start = self.buf.len();
        let n = loop {
            match rustix::io::read(file, rustix::buffer::spare_capacity(&mut self.buf)) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r.map_err(|e| PutError::Read(e.into()))?,
            }
        };
        // A file that grew since its size was sent: the rest is not part of this stream.
        self.buf.truncate(start + n.min(max));
        Ok(&self.buf[start..])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

/// The receiver's input: the body's pieces as they came, handed out in place
/// ([`BufRead`]); each piece's budget goes back once it is used up.
struct ChannelReader {
    rx: mpsc::UnboundedReceiver<io::Result<Bytes>>,
    cur: Bytes,
    budget: Arc<Semaphore>,
    /// Budget taken by `cur`.
    held: usize,
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.cur.is_empty() {
            self.budget.add_permits(std::mem::take(&mut self.held));
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.held = permits(b.len()) as usize;
                    self.cur = b;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(&[]),
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, n: usize) {
        self.cur.advance(n);
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Drop for ChannelReader {
    /// A receiver that stops early lets the async side stop waiting for budget.
    fn drop(&mut self) {
        self.budget.close();
    }
}
