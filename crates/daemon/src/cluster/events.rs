//! Events fan-in: a client of any member's `/1.0/events` sees the whole cluster's
//! operation and lifecycle events, as LXD's members do by listening to each other.
//!
//! Every clustered member keeps one websocket to each other member's `/1.0/events`
//! (marked forwarded, with its member certificate) and republishes what arrives on its
//! own bus, unchanged ([`ops::EventBus::relay`]): each event keeps the `location` of the
//! member where it happened.
//!
//! # No duplicates, no loops
//!
//! A member answers a forwarded events stream with the events *it* published only (their
//! `location` is its name), never the ones it relays. So each event travels one hop,
//! from the member where it happened to each other member, exactly once per connection.
//!
//! # Reconnection
//!
//! A supervisor reads the member list every [`SUPERVISE_EVERY`]: it starts a relay for a
//! new member, and stops the relay of a member that left or moved. A relay whose stream
//! ends or cannot connect (the member restarts, or is down) retries with exponential
//! backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]. Events published while a member was
//! unreachable are not replayed (LXD does not either).

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::peer::Peer;
use crate::state::Daemon;

/// How often the supervisor reconciles relays with the member list.
pub const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// First retry delay of a relay that lost its member.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay of a relay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a relay pings its member, so that a dead connection is noticed.
const PING_EVERY: Duration = Duration::from_secs(15);

/// The event types relayed between members.
const RELAYED: &str = "/1.0/events?type=operation,lifecycle";

/// The members whose events this member relays right now (one daemon per process).
static CONNECTED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// Marks member `name`'s relay connected while it lives.
struct Connected(String);

impl Connected {
    fn new(name: &str) -> Self {
        crate::state::lock(&CONNECTED).insert(name.to_string());
        Self(name.to_string())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        crate::state::lock(&CONNECTED).remove(&self.0);
    }
}

/// Waits (at most `timeout`) until this member relays member `name`'s events, so that a
/// client here that waits on an operation `name` is about to start sees it end (a member
/// that just joined, or whose relay is reconnecting, would otherwise finish it unseen and
/// leave `lxc` waiting for ever). Returns whether the relay is up.
pub async fn wait_relayed(name: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if crate::state::lock(&CONNECTED).contains(name) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When each relay of this member began (it starts within [`SUPERVISE_EVERY`] of a join or
/// of this member's start).
static STARTED: LazyLock<Mutex<HashMap<String, std::time::Instant>>> =
    LazyLock::new(Mutex::default);

/// Waits (at most `timeout`) until this member relays the events of every other member
/// whose relay is new (begun less than `timeout` ago, or about to begin), so that a client
/// subscribing here just after a join, or just after this member started, sees what then
/// happens anywhere in the cluster; an event of another member would otherwise be lost to
/// it. A relay that has been trying for longer (its member is down) is not waited for, so
/// a listener is not held up in a cluster with a member down.
pub async fn wait_all_relayed(d: &Daemon, timeout: Duration) {
    if !d.cluster.is_clustered() {
        return;
    }
    let Ok(members) = d.read(db::members::list).await else {
        return;
    };
    let me = d.member();
    let deadline = tokio::time::Instant::now() + timeout;
    for m in members
        .iter()
        .filter(|m| m.name != me && !m.address.is_empty())
    {
        loop {
            if crate::state::lock(&CONNECTED).contains(&m.name) {
                break;
            }
            let fresh = crate::state::lock(&STARTED)
                .get(&m.name)
                .is_none_or(|t| t.elapsed() < timeout);
            if !fresh || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts the supervisor of this member's relays; it lives as long as the runtime and
/// does nothing while this member is not clustered.
pub fn spawn_relays(d: &Daemon) -> JoinHandle<()> {
    let d = d.clone();
    tokio::spawn(async move { supervise(d).await })
}

/// Whether `event` is one this member must send to another member's relay: it happened
/// here (not relayed from a third member).
pub fn is_own(d: &Daemon, event: &api::Event) -> bool {
    event.location == d.bus.location()
}

async fn supervise(d: Daemon) {
    let mut relays: HashMap<String, (String, JoinHandle<()>)> = HashMap::new();
    loop {
        if d.cluster.is_clustered() {
            match d.read(db::members::list).await {
                Ok(members) => {
                    let me = d.member();
                    let wanted: HashMap<String, String> = members
                        .into_iter()
                        .filter(|m| m.name != me && !m.address.is_empty())
                        .map(|m| (m.name, m.address))
                        .collect();
                    relays.retain(|name, (address, task)| {
                        let keep = wanted.get(name) == Some(address);
                        if !keep {
                            tracing::info!(member = %name, "stopping the events relay");
                            task.abort();
                        }
                        keep
                    });
                    for (name, address) in wanted {
                        relays.entry(name.clone()).or_insert_with(|| {
                            let task = tokio::spawn(relay(d.clone(), name, address.clone()));
                            (address, task)
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "events relays: cannot read the members"),
            }
        }
        tokio::time::sleep(SUPERVISE_EVERY).await;
    }
}

/// Republishes member `name`'s own events here, reconnecting with backoff, until aborted.
async fn relay(d: Daemon, name: String, address: String) {
    crate::state::lock(&STARTED).insert(name.clone(), std::time::Instant::now());
    let mut backoff = BACKOFF_MIN;
    loop {
        match d.cluster.peers.get(&d) {
            Ok(client) => {
                let peer = Peer::new(&name, &address, client);
                match super::websocket::connect(&d, &peer, RELAYED).await {
                    Ok(ws) => {
                        tracing::info!(member = %name, "relaying the member's events");
                        backoff = BACKOFF_MIN;
                        let _up = Connected::new(&name);
                        pump(&d, ws).await;
                        tracing::info!(member = %name, "events relay lost its member; reconnecting");
                    }
                    Err(e) => {
                        tracing::debug!(member = %name, error = %e, "events relay cannot connect");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "events relay: no member client"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Republishes the events of `ws` until it ends.
async fn pump(d: &Daemon, ws: super::websocket::Remote) {
    let (mut tx, mut rx) = ws.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => publish(d, text.as_bytes()),
                Some(Ok(Message::Binary(bytes))) => publish(d, &bytes),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn publish(d: &Daemon, bytes: &[u8]) {
    match serde_json::from_slice::<api::Event>(bytes) {
        Ok(ev) => d.bus.relay(ev),
        Err(e) => tracing::debug!(error = %e, "events relay: not an event"),
    }
}
