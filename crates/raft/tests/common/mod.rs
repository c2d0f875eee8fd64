//! In-process members for the cluster tests: each one a Raft node over its own files in
//! its own directory, serving `/internal/raft/*` over plain HTTP on a 127.0.0.1 port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use db::instances::InstanceRecord;
use raft::{AdmitAll, ClusterMetrics, Raft, RaftNode, Replicator, Scheme, Settings, Transport};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How long any condition in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A plain-HTTP client, as the tests' stand-in for the daemon's mTLS one.
pub fn transport() -> Transport {
    Transport::new(reqwest::Client::new(), Scheme::Http)
}

/// One running member.
pub struct Member {
    pub id: u64,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub store: Arc<db::Store>,
    pub raft: Raft,
    pub replicator: Replicator,
    server: JoinHandle<()>,
}

/// Serves `router` on `listener`, each connection in a task of one set: aborting the
/// returned task drops the listener and every connection, as a crash would.
fn serve(listener: TcpListener, router: axum::Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            connections.spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(io, service)
                .await;
            });
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
        }
    })
}

impl Member {
    /// Starts member `id` over the files in `dir` (created if needed), listening on
    /// `listener`.
    pub async fn start(
        id: u64,
        dir: &Path,
        listener: TcpListener,
        settings: &Settings,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let addr = listener.local_addr()?;
        let store = Arc::new(db::Store::open(&dir.join("cluster.db"))?);
        let (raft, replicator) = RaftNode::open_with(
            dir,
            store.clone(),
            id,
            &addr.to_string(),
            transport(),
            settings,
        )
        .await
        .with_context(|| format!("open member {id}"))?;
        let server = serve(
            listener,
            raft::router(replicator.clone(), Arc::new(AdmitAll)),
        );
        Ok(Self {
            id,
            dir: dir.to_path_buf(),
            addr,
            store,
            raft,
            replicator,
            server,
        })
    }

    /// Starts member `id` on a fresh ephemeral port.
    pub async fn start_new(id: u64, dir: &Path, settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::start(id, dir, listener, settings).await
    }

    /// Crashes the member: its server and every connection go away at once, then its
    /// Raft node stops. Returns what is needed to start it again from its files.
    pub async fn kill(self) -> (u64, PathBuf, SocketAddr) {
        self.server.abort();
        let _ = self.server.await;
        self.replicator.shutdown().await;
        (self.id, self.dir, self.addr)
    }

    /// The instance names in this member's DB.
    pub fn instances(&self) -> Vec<String> {
        instance_names(&self.store)
    }

    /// Waits until this member's metrics satisfy `condition`.
    pub async fn wait(
        &self,
        what: &str,
        condition: impl Fn(&ClusterMetrics) -> bool,
    ) -> anyhow::Result<ClusterMetrics> {
        Ok(self
            .replicator
            .wait_for(DEADLINE, &format!("member {}: {what}", self.id), condition)
            .await?)
    }

    /// Waits until this member has applied at least up to `index`.
    pub async fn wait_applied(&self, index: Option<u64>) -> anyhow::Result<()> {
        self.wait(&format!("applied up to {index:?}"), |m| {
            m.last_applied_index >= index
        })
        .await?;
        Ok(())
    }
}

pub fn instance_names(store: &db::Store) -> Vec<String> {
    store
        .read(|c| db::instances::list(c, "default"))
        .expect("read instances")
        .into_iter()
        .map(|i| i.name)
        .collect()
}

pub fn instance(name: &str) -> InstanceRecord {
    InstanceRecord {
        project: "default".into(),
        name: name.into(),
        kind: "container".into(),
        member: "m1".into(),
        architecture: "x86_64".into(),
        config: Default::default(),
        devices: Default::default(),
        profiles: vec!["default".into()],
        ephemeral: false,
        description: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: "1970-01-01T00:00:00Z".into(),
    }
}

pub fn create(name: &str) -> db::Command {
    db::Command::CreateInstance(instance(name))
}

/// A command creating an instance whose description is `bytes` long, to make snapshots
/// span several chunks.
pub fn create_big(name: &str, bytes: usize) -> db::Command {
    let mut record = instance(name);
    record.description = "x".repeat(bytes);
    db::Command::CreateInstance(record)
}
