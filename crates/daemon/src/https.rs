//! The HTTPS listener: this member's certificate and the `core.https_address` socket.
//!
//! The certificate (`$DROVER_DIR/server.crt`/`server.key`) is made on first start and
//! shown in `GET /1.0` whether or not HTTPS is on. The listener follows the server config
//! key `core.https_address`: [`Https::reconfigure`] binds the new address *before* the key
//! is stored, so an address that cannot be bound is refused and changes nothing, then
//! stops the old listener and serves on the new one, all without a restart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, Paths};

/// The server config key naming the HTTPS address.
pub const HTTPS_ADDRESS: &str = "core.https_address";
/// LXD's port when an address names none.
const DEFAULT_PORT: u16 = 8443;

/// This member's certificate and its HTTPS listener.
#[derive(Debug)]
pub struct Https {
    identity: tls::Identity,
    /// What the listener serves: this member's certificate, the cluster's once clustered.
    config: std::sync::Mutex<Arc<tls::rustls::ServerConfig>>,
    current: Mutex<Option<Listening>>,
}

/// A running listener.
#[derive(Debug)]
struct Listening {
    /// The config value it serves (`"127.0.0.11:8443"`).
    address: String,
    /// What it is bound to.
    local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Https {
    /// Loads this member's certificate from the state dir, making it on first start
    /// (CN `root@<hostname>`, DNS name `<hostname>`, as LXD's).
    ///
    /// # Errors
    ///
    /// When the files are unreadable, half present or do not match.
    pub fn load(paths: &Paths) -> anyhow::Result<Self> {
        let host = hostname();
        let identity = tls::Identity::load_or_create(
            &paths.state_dir,
            "server",
            &format!("root@{host}"),
            std::slice::from_ref(&host),
        )
        .context("load the server certificate")?;
        let config = tls::server_config(&identity).context("tls server config")?;
        Ok(Self {
            identity,
            config: std::sync::Mutex::new(config),
            current: Mutex::new(None),
        })
    }

    /// This member's certificate.
    pub fn identity(&self) -> &tls::Identity {
        &self.identity
    }

    /// The address the listener is bound to, if it runs.
    pub async fn local_addr(&self) -> Option<SocketAddr> {
        self.current.lock().await.as_ref().map(|l| l.local)
    }

    /// Where clients can reach the listener (`GET /1.0` → `environment.addresses`, the
    /// `addresses` of tokens): the bound address, or every address of the host when bound
    /// to a wildcard. Empty when HTTPS is off.
    pub async fn addresses(&self) -> Vec<String> {
        match self.local_addr().await {
            Some(local) if local.ip().is_unspecified() => host_addresses(local),
            Some(local) => vec![local.to_string()],
            None => Vec::new(),
        }
    }

    /// Starts the listener at start-up when `core.https_address` is set. A failure to bind
    /// is logged and the daemon goes on without HTTPS (as LXD does).
    pub async fn start_from_config(&self, d: &Daemon) {
        let config = match d.read(db::config::all).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the server config; https is off");
                return;
            }
        };
        let mut address = config.get(HTTPS_ADDRESS).filter(|a| !a.is_empty()).cloned();
        // A clustered member listens on its own cluster address: the server config is
        // shared by the whole cluster.
        if let Some(cluster) = d.cluster.identity() {
            *crate::state::lock(&self.config) = match tls::server_config(&cluster) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cluster certificate unusable; https is off");
                    return;
                }
            };
            let id = i64::try_from(d.replicator().id()).unwrap_or_default();
            match d.read(move |c| db::members::get_by_id(c, id)).await {
                Ok(Some(me)) if !me.address.is_empty() => address = Some(me.address),
                _ => tracing::warn!("this clustered member has no address of its own"),
            }
        }
        let Some(address) = address else {
            return;
        };
        if let Err(e) = self
            .reconfigure(d, Some(address.clone()), async { Ok(()) })
            .await
        {
            tracing::error!(address = %address, error = %e.message, "https listener not started");
        }
    }

    /// Moves the listener to `address` (`None`: stop it), storing the change with
    /// `commit` in between.
    ///
    /// # Contract
    ///
    /// - `address` is validated and bound before `commit` runs; when that fails, `commit`
    ///   does not run and the running listener is untouched (400).
    /// - When `commit` fails, the new socket is closed and the old listener keeps serving.
    /// - Otherwise the old listener stops (open connections finish their request) and the
    ///   new one serves.
    /// - The same address as now: only `commit` runs.
    /// - Concurrent calls are serialized.
    pub async fn reconfigure(
        &self,
        d: &Daemon,
        address: Option<String>,
        commit: impl Future<Output = ApiResult<()>>,
    ) -> ApiResult<()> {
        let mut current = self.current.lock().await;
        if current.as_ref().map(|l| &l.address) == address.as_ref() {
            return commit.await;
        }
        let Some(address) = address else {
            commit.await?;
            // Not awaited: this very request may be running on the old listener.
            if let Some(old) = current.take() {
                drop(old.stop());
            }
            return Ok(());
        };
        let target = parse_address(&address)?;
        let (listener, stopped_old) = match bind(target) {
            Ok(l) => (l, None),
            // The old listener may hold the port (127.0.0.11:8443 → 0.0.0.0:8443): stop it,
            // bind, and on failure put it back.
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && current
                        .as_ref()
                        .is_some_and(|l| l.local.port() == target.port()) =>
            {
                let old = current
                    .take()
                    .ok_or_else(|| ApiError::internal("https listener vanished"))?;
                let (old_address, old_local) = (old.address.clone(), old.local);
                drop(old.stop());
                match bind_soon(target).await {
                    Ok(l) => (l, Some((old_address, old_local))),
                    Err(e) => {
                        self.restore(&mut current, d, old_address, old_local).await;
                        return Err(bind_error(e));
                    }
                }
            }
            Err(e) => return Err(bind_error(e)),
        };
        if let Err(e) = commit.await {
            drop(listener);
            if let Some((old_address, old_local)) = stopped_old {
                self.restore(&mut current, d, old_address, old_local).await;
            }
            return Err(e);
        }
        // Not awaited: this very request may be running on the old listener.
        if let Some(old) = current.take() {
            drop(old.stop());
        }
        *current = Some(self.spawn(d, address, listener)?);
        Ok(())
    }

    /// Best effort: serves `address` on `local` again after a failed move.
    async fn restore(
        &self,
        current: &mut Option<Listening>,
        d: &Daemon,
        address: String,
        local: SocketAddr,
    ) {
        match bind_soon(local)
            .await
            .map_err(bind_error)
            .and_then(|l| self.spawn(d, address.clone(), l))
        {
            Ok(l) => *current = Some(l),
            Err(e) => {
                tracing::error!(address = %address, error = %e.message, "could not restore the https listener")
            }
        }
    }

    fn spawn(
        &self,
        d: &Daemon,
        address: String,
        listener: std::net::TcpListener,
    ) -> ApiResult<Listening> {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let mut app = crate::routes::router(d.clone());
        if d.cluster.is_clustered() {
            // Raft snapshots and member-to-member streams are as large as the data.
            app = app.merge(
                crate::cluster::internal_router(d)
                    .layer(axum::extract::DefaultBodyLimit::disable()),
            );
        }
        let (stop, stopped) = oneshot::channel();
        let config = crate::state::lock(&self.config).clone();
        let task = tokio::spawn(async move {
            tls::serve(listener, config, app, async {
                let _ = stopped.await;
            })
            .await;
        });
        tracing::info!(address = %address, local = %local, "serving the API over https");
        Ok(Listening {
            address,
            local,
            stop,
            task,
        })
    }

    /// Serves `cluster` instead of this member's certificate, and the member routes, from
    /// now on: restarts the listener on its address.
    ///
    /// # Errors
    ///
    /// 400 when no listener runs; 500 when the certificate is unusable.
    pub async fn serve_cluster(&self, d: &Daemon, cluster: &tls::Identity) -> ApiResult<()> {
        let address = self
            .current
            .lock()
            .await
            .as_ref()
            .map(|l| l.address.clone())
            .ok_or_else(|| ApiError::bad_request("The https listener is not running"))?;
        self.serve_cluster_at(d, cluster, &address).await
    }

    /// [`Https::serve_cluster`] on `address` (where the listener may not run yet).
    ///
    /// # Errors
    ///
    /// 400 when `address` cannot be bound; 500 when the certificate is unusable.
    pub async fn serve_cluster_at(
        &self,
        d: &Daemon,
        cluster: &tls::Identity,
        address: &str,
    ) -> ApiResult<()> {
        let config = tls::server_config(cluster)
            .map_err(|e| ApiError::internal(format!("cluster tls config: {e}")))?;
        *crate::state::lock(&self.config) = config;
        let target = parse_address(address)?;
        let mut current = self.current.lock().await;
        // Not awaited: this very request may be running on the old listener.
        if let Some(old) = current.take() {
            drop(old.stop());
        }
        let listener = bind_soon(target).await.map_err(bind_error)?;
        *current = Some(self.spawn(d, address.to_string(), listener)?);
        Ok(())
    }

    /// Stops the listener, if any, letting open requests finish (daemon shutdown).
    pub async fn shutdown(&self) {
        let Some(l) = self.current.lock().await.take() else {
            return;
        };
        if let Err(e) = l.stop().await {
            tracing::warn!(error = %e, "https listener task failed");
        }
    }
}

impl Listening {
    /// Asks the listener to stop: its socket closes at once, open connections finish their
    /// current request (bounded by `tls::serve`'s drain deadline) before the task ends.
    fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(());
        self.task
    }
}

/// Parses a `core.https_address` value as LXD accepts it: `host:port`, `[v6]:port`, a bare
/// IP (port 8443) or `:port` (every address).
///
/// # Errors
///
/// 400 when it is none of these, or names port 0 (which could not be advertised).
pub fn parse_address(value: &str) -> ApiResult<SocketAddr> {
    let invalid = || {
        ApiError::bad_request(format!(
            "Invalid {HTTPS_ADDRESS} {value:?}: expected <ip>:<port>"
        ))
    };
    let addr = if let Ok(a) = value.parse::<SocketAddr>() {
        a
    } else if let Ok(ip) = value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        SocketAddr::new(ip, DEFAULT_PORT)
    } else if let Some(port) = value.strip_prefix(':') {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port.parse().map_err(|_| invalid())?,
        )
    } else {
        return Err(invalid());
    };
    if addr.port() == 0 {
        return Err(invalid());
    }
    Ok(addr)
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// [`bind`], retried for up to 2 s while the address is still in use (a listener that was
/// just asked to stop closes its socket within a scheduler tick or two).
async fn bind_soon(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

fn bind_error(e: std::io::Error) -> ApiError {
    ApiError::bad_request(format!("Cannot listen on https socket: {e}"))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "drover".into())
}

/// Every non-link-local address of the host with `local`'s port (a wildcard listener).
fn host_addresses(local: SocketAddr) -> Vec<String> {
    let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() else {
        return vec![local.to_string()];
    };
    let mut out: Vec<String> = ifaddrs
        .filter_map(|i| i.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| local.is_ipv6() || ip.is_ipv4())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|ip| SocketAddr::new(ip, local.port()).to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_lxd_accepts_them() {
        let p = |s: &str| parse_address(s).map(|a| a.to_string());
        assert_eq!(
            p("127.0.0.11:8443").ok().as_deref(),
            Some("127.0.0.11:8443")
        );
        assert_eq!(p("127.0.0.11").ok().as_deref(), Some("127.0.0.11:8443"));
        assert_eq!(p("[::1]:9000").ok().as_deref(), Some("[::1]:9000"));
        assert_eq!(p("::1").ok().as_deref(), Some("[::1]:8443"));
        assert_eq!(p(":8443").ok().as_deref(), Some("0.0.0.0:8443"));
        for bad in [
            "",
            "nonsense",
            "127.0.0.11:",
            "127.0.0.11:99999",
            "127.0.0.11:0",
            "host:8443",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
