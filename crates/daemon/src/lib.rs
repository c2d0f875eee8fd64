//! `droverd`: one drover member.
//!
//! Start-up ([`run`]): open the cluster DB and this member's Raft node (a one-voter group
//! on first start; every DB write is then proposed through it), bootstrap this member, the
//! `default` pool and the `default` profile on first start, probe the container runtime
//! with a real container, re-attach to instances that still run and start those that
//! should, then serve LXD's REST API on `$DROVER_DIR/unix.socket`, and over HTTPS (mTLS)
//! when `core.https_address` is set. SIGTERM stops serving and leaves instances running;
//! the next start re-attaches to them.

mod auth;
mod certificates;
mod cluster;
mod command_lookup;
mod console;
mod error;
mod exec;
mod filter;
mod https;
mod image_share;
mod images;
mod instances;
mod logging;
mod networks;
mod pools;
mod profiles;
mod projects;
mod resources;
mod routes;
mod server;
mod server_config;
mod state;
mod volumes;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use api::MemberState;

pub use logging::EventLayer;
pub use state::Paths;

use crate::state::{Daemon, Inner};

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `$DROVER_DIR`.
    pub state_dir: PathBuf,
    /// The preferred runtime (`crun` or `runc`); the other is the fallback.
    pub runtime: driver_oci::RuntimeKind,
}

/// The cgroup parent of this daemon's containers: `drover` for the default state directory,
/// else `drover-<hash of the state directory>`, so that several daemons on one host (tests,
/// a local cluster) never share, and never kill, each other's cgroups.
pub fn cgroup_parent(state_dir: &std::path::Path) -> String {
    use sha2::Digest;
    if state_dir == std::path::Path::new("/var/lib/drover") {
        return "drover".into();
    }
    let digest = sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    format!("drover-{}", &hex::encode(digest)[..12])
}

/// This member's name until it joins or forms a cluster (LXD says `none`).
pub(crate) const STANDALONE: &str = "none";

/// Creates this member's row, the `default` pool and the `default` profile if missing,
/// through the Raft leader like every other write.
async fn bootstrap(
    store: &db::Store,
    replicator: &raft::Replicator,
    paths: &Paths,
) -> anyhow::Result<()> {
    let members = store.read(db::members::list)?;
    if members.is_empty() {
        replicator
            .propose(db::Command::CreateMember {
                name: STANDALONE.into(),
                address: String::new(),
                state: MemberState::Created,
                architecture: std::env::consts::ARCH.into(),
            })
            .await?;
    }
    if store.read(db::pools::list)?.is_empty() {
        let source = paths.pools.join("default");
        replicator
            .propose(db::Command::CreatePool {
                name: "default".into(),
                driver: "dir".into(),
                description: String::new(),
                config: [("source".to_string(), source.display().to_string())].into(),
            })
            .await?;
    }
    if store
        .read(|c| db::profiles::get(c, "default", "default"))?
        .is_none()
    {
        let root = [
            ("type".to_string(), "disk".to_string()),
            ("path".to_string(), "/".to_string()),
            ("pool".to_string(), "default".to_string()),
        ];
        replicator
            .propose(db::Command::CreateProfile {
                project: "default".into(),
                name: "default".into(),
                description: "Default drover profile".into(),
                config: Default::default(),
                devices: [("root".to_string(), root.into())].into(),
            })
            .await?;
    }
    Ok(())
}

/// The Raft node id of a member that starts a group; members that join get theirs from the
/// leader.
const FIRST_NODE_ID: u64 = 1;

/// How long start-up waits for this member's Raft group to have a leader.
const LEADER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens this member's Raft node over the files in `db_dir` and the cluster DB `store`,
/// makes it a one-voter group on first start, and waits for a leader.
///
/// A single member is a one-voter group: its writes take the same path as a cluster's.
/// It has no member-to-member listener yet, so its Raft address is empty and the HTTP
/// client is never used while it is alone. A clustered member's client presents its own
/// certificate (`member`) and pins the cluster's.
async fn start_raft(
    db_dir: &std::path::Path,
    store: Arc<db::Store>,
    member: &tls::Identity,
    cluster: Option<&tls::Identity>,
) -> anyhow::Result<raft::Replicator> {
    let node_id = raft::load_or_create_node_id(db_dir, FIRST_NODE_ID)?;
    let client = match cluster {
        Some(c) => cluster::member_client(member, c.fingerprint())
            .map_err(|e| anyhow::anyhow!(e.message))?,
        None => reqwest::Client::builder()
            .build()
            .context("build the member-to-member HTTP client")?,
    };
    let transport = raft::Transport::new(client, raft::Scheme::Https);
    let (_raft, replicator) = raft::RaftNode::open(db_dir, store, node_id, "", transport).await?;
    if replicator.bootstrap_single().await? {
        tracing::info!(node = node_id, "new one-member raft group");
    }
    match replicator.wait_leader(LEADER_DEADLINE).await {
        Ok(leader) => tracing::info!(node = node_id, leader, "raft group ready"),
        // A clustered member comes up even while the cluster has no quorum (the other
        // members may be starting too): reads work, writes wait for a leader.
        Err(e) if cluster.is_some() => {
            tracing::warn!(node = node_id, error = %e, "no raft leader yet; serving anyway");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(replicator)
}

/// Containers, and virtual machines too when QEMU is installed: VM runtime files go under
/// `<state>/vms`; the accelerator is probed with the first VM's own kernel. Also returns
/// the VM driver itself (live migration needs more of it than the instance driver trait).
async fn with_vms(
    state_dir: &std::path::Path,
    containers: Arc<dyn drivers::InstanceDriver>,
) -> (
    Arc<dyn drivers::InstanceDriver>,
    Option<driver_qemu::QemuDriver>,
) {
    let Some(qemu) = driver_qemu::find_qemu() else {
        tracing::info!("qemu-system-x86_64 not found: virtual machines are unavailable");
        return (containers, None);
    };
    let probe = std::time::Duration::from_secs(6);
    match driver_qemu::QemuDriver::new_probing(qemu, state_dir.join("vms"), probe).await {
        Ok(vms) => {
            tracing::info!(qemu = %drivers::InstanceDriver::describe(&vms), "virtual machines ready");
            let both = Arc::new(driver_qemu::ByType::new(containers, vms.clone()));
            (both, Some(vms))
        }
        Err(e) => {
            tracing::warn!(error = %e, "QEMU unusable: virtual machines are unavailable");
            (containers, None)
        }
    }
}

/// Binds the unix socket, refusing to take it from a live daemon.
async fn bind(socket: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            anyhow::bail!("another daemon is serving {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("remove stale {}", socket.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down, leaving instances running"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down, leaving instances running"),
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: Config, bus: ops::EventBus) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("create {}", cfg.state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&cfg.state_dir)?;
    let paths = Paths::new(state_dir);
    for dir in [&paths.state_dir, &paths.run, &paths.pools] {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::set_permissions(&paths.state_dir, std::fs::Permissions::from_mode(0o711))?;
    let db_dir = paths.state_dir.join("database");
    std::fs::create_dir_all(&db_dir)?;
    let store =
        Arc::new(db::Store::open(&db_dir.join("drover.db")).context("open the cluster database")?);
    let https = https::Https::load(&paths)?;
    let cluster_state = cluster::ClusterState::load(&paths)?;
    let replicator = start_raft(
        &db_dir,
        store.clone(),
        https.identity(),
        cluster_state.identity().as_deref(),
    )
    .await
    .context("start the raft node")?;
    // A DB from an older drover gets its schema update before anything reads it.
    cluster::version::catch_up(&replicator, &store, LEADER_DEADLINE).await;
    bootstrap(&store, &replicator, &paths)
        .await
        .context("bootstrap the database")?;
    let node = i64::try_from(replicator.id()).unwrap_or_default();
    let member = match store.read(|c| db::members::get_by_id(c, node))? {
        Some(me) if cluster_state.is_clustered() => me.name,
        _ => STANDALONE.to_string(),
    };

    let driver = driver_oci::probe(
        cfg.runtime,
        paths.state_dir.join("runtime"),
        paths.state_dir.join("probe"),
    )
    .await
    .context("no usable container runtime")?
    .with_cgroup_parent(cgroup_parent(&paths.state_dir));
    let runtime_name = driver.runtime_name().to_string();
    tracing::info!(runtime = %drivers::InstanceDriver::describe(&driver), "container runtime ready");
    let (driver, vms) = with_vms(&paths.state_dir, Arc::new(driver)).await;
    let images = storage::ImageStore::new(paths.images.clone()).context("open the image store")?;
    let _ = std::fs::remove_dir_all(paths.state_dir.join("uploads"));

    bus.set_location(&member);
    let d = Daemon::new(Inner {
        member: std::sync::RwLock::new(member.clone()),
        store,
        replicator: std::sync::RwLock::new(replicator),
        ops: ops::Registry::new(bus.clone()),
        bus,
        driver,
        vms,
        runtime_name,
        images,
        running: Default::default(),
        creating: Default::default(),
        frozen: Default::default(),
        locks: Default::default(),
        exec: Default::default(),
        paths: paths.clone(),
        https,
        cert_tokens: Default::default(),
        image_fetches: Default::default(),
        cluster: cluster_state,
        records: Default::default(),
        writable_at: Default::default(),
    });
    let to_start = instances::reattach_all(&d)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
        .context("re-attach instances")?;

    // Before the autostarts: each records the instance's power state through the Raft
    // leader and waits until this member has applied it, which needs this member's Raft
    // endpoint listening (without it every autostart of a restarted member timed out after
    // 10 s and failed, and the member, deaf to the leader, called elections).
    d.https.start_from_config(&d).await;
    instances::autostart_all(&d, to_start).await;
    cluster::events::spawn_relays(&d);
    cluster::reset::spawn_watch(&d);
    let reporter = d.clone();
    tokio::spawn(async move { cluster::version::report(&reporter).await });
    instances::migrate::recover::spawn(&d);
    cluster::evacuate::spawn_resume(&d);

    let listener = bind(&paths.socket).await?;
    tracing::info!(socket = %paths.socket.display(), "serving the API");
    let app = routes::router(d.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = std::fs::remove_file(&paths.socket);
    d.https.shutdown().await;
    d.replicator().shutdown().await;
    Ok(())
}
