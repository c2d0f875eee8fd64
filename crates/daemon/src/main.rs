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

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the same number in its v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory mimalloc no longer uses stays with droverd before it goes back to the
/// system, ms (mimalloc's own default: 1 s).
///
/// With 1 s, memory freed between two bursts of work was handed back (`madvise`
/// `MADV_DONTNEED`, ~17 MiB a second in a start-stop benchmark, `strace` of 5 s) and
/// faulted in again, zeroed, on the next burst: droverd's CPU per start or stop was ~0.1 ms
/// higher (1.27-1.38 ms against 1.16-1.20 without purging, three alternating pairs of
/// 21-run benches). Ten seconds covers any pause between the steps of one task; memory of
/// a burst that is over (a large import) still goes back.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`].
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: `mi_option_set` stores one integer option of the allocator, with no pointer
    // argument; mimalloc allows it at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

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
    tune_allocator();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// mimalloc's value of option `option`.
    #[allow(unsafe_code)]
    fn option(option: libmimalloc_sys::mi_option_t) -> std::ffi::c_long {
        // SAFETY: reads one integer option of the allocator; no pointer argument.
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // The number is not exported by libmimalloc-sys: before it is set, it must read
        // mimalloc v3's documented default of the purge delay (1000 ms), so that a new
        // mimalloc with another numbering fails here rather than changing another option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(option(MI_OPTION_PURGE_DELAY), 1000);
        }
        tune_allocator();
        assert_eq!(option(MI_OPTION_PURGE_DELAY), PURGE_DELAY_MS);
    }
}
