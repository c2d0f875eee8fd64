//! `droverd`: the drover member daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// mimalloc instead of glibc's malloc: the request path (HTTP, JSON, the operation's
/// records) allocates small, short-lived objects from a few threads, which mimalloc's
/// per-thread free lists serve with less work (measured in bench/README.md, session 12).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The drover member daemon: serves LXD's REST API on `$DROVER_DIR/unix.socket`.
#[derive(Debug, Parser)]
#[command(name = "droverd", version)]
struct Args {
    /// State directory (database, images, pools, socket).
    #[arg(long, env = "DROVER_DIR", default_value = "/var/lib/drover")]
    state_dir: PathBuf,
    /// Preferred OCI runtime; the other one is used if it does not work here.
    #[arg(long, env = "DROVER_RUNTIME", default_value = "crun")]
    runtime: String,
    /// Log filter (tracing's `RUST_LOG` syntax).
    #[arg(long, env = "DROVER_LOG", default_value = "info,openraft=warn")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // crun refuses hybrid cgroups unless it runs in a mount namespace without the cgroup2
    // mount; this must happen while the process is still single-threaded.
    let isolated = driver_oci::prepare_mount_namespace();
    let bus = ops::EventBus::new("none");
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(daemon::EventLayer::new(bus.clone()))
        .init();
    match isolated {
        Ok(true) => tracing::info!("private mount namespace without the cgroup2 mount (for crun)"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not prepare a private mount namespace; crun may not work")
        }
    }
    let runtime = match args.runtime.parse() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = daemon::Config {
        state_dir: args.state_dir,
        runtime,
    };
    match rt.block_on(daemon::run(cfg, bus)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
