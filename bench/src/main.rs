//! `drover-bench`: drover's benchmarks, each judged as a ratio to a floor measured in the
//! same run (the OCI runtime driven directly, or real LXD 5.0.2), never as an absolute time.
//!
//! - `start-stop`: N containers started and cleanly stopped through the API, one by one and
//!   all at once, against the raw runtime.
//! - `launch-vs-lxd`: `lxc launch` to running, drover against LXD 5.0.2.
//! - `transfer`: volume transfer throughput against `tar | tar`, and moving 1 MiB of an
//!   instance's own changes against `cp -a` of its rootfs.
//! - `move`: downtime (from inside) and total time of moving a running container between
//!   members, against a stop + start and `tar | tar`, per pool and rootfs size.
//! - `vm-migration`: live migration of a VM between two QEMUs, through driver-qemu against
//!   raw QMP.
//! - `plan`: the evacuation planner alone on 10,000 instances over 100 members.
//! - `evacuate`: evacuating and restoring a member of a three-member cluster (10 and 30
//!   containers, dir and shared-fs pools) against real LXD 5.0.2, with per-instance
//!   timelines.
//! - `cluster-writes`: 1,000 small writes and `GET /1.0/instances?recursion=1` over 1,000
//!   instances, on one member and on a three-member cluster.
//!
//! Results go to JSON (see `bench/README.md`); `bench/plot.py` draws them.

mod api;
mod cluster_writes;
mod droverd;
mod evacuate;
mod launch_vs_lxd;
mod moves;
mod plan;
mod raw;
mod report;
mod start_stop;
mod transfer;
mod vm_migration;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// drover's benchmarks (run as root: they start containers).
#[derive(Debug, Parser)]
#[command(name = "drover-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start and cleanly stop N busybox containers through drover and on the raw runtime.
    StartStop(start_stop::StartStopArgs),
    /// `lxc launch` to running through drover and through real LXD 5.0.2.
    LaunchVsLxd(launch_vs_lxd::LaunchArgs),
    /// The evacuation planner alone: 10,000 instances over 100 members.
    Plan(plan::PlanArgs),
    /// Moving a running container between two members: downtime and total time.
    Move(moves::MoveArgs),
    /// Volume transfer throughput against `tar | tar`, and a move of 1 MiB of own changes
    /// against `cp -a` of the rootfs.
    Transfer(transfer::TransferArgs),
    /// Live migration of a VM between two QEMUs: through driver-qemu and with raw QMP.
    VmMigration(vm_migration::VmMigrationArgs),
    /// Small writes and instance listings, on one member and on a three-member cluster.
    ClusterWrites(cluster_writes::ClusterWritesArgs),
    /// Evacuating and restoring a member: drover against real LXD 5.0.2.
    Evacuate(evacuate::EvacuateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::StartStop(_) = cli.command {
        // The raw floor must call crun from the same kind of mount view as droverd (see
        // driver_oci::prepare_mount_namespace); this only works while single-threaded.
        // droverd, started from here, inherits that view. launch-vs-lxd stays in the
        // host's namespace: the LXD reference's setup creates mounts the host must see.
        if let Err(e) = driver_oci::prepare_mount_namespace() {
            eprintln!("warning: no private mount namespace ({e}); crun calls get wrapped");
        }
    }
    // One thread: the bench's own work stays off the second core as much as possible.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Cmd::Transfer(a) = cli.command {
        return match transfer::run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Plan(a) = cli.command {
        return match plan::run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let res = rt.block_on(async {
        match cli.command {
            Cmd::StartStop(a) => start_stop::run(a).await,
            Cmd::LaunchVsLxd(a) => launch_vs_lxd::run(a).await,
            Cmd::Move(a) => moves::run(a).await,
            Cmd::ClusterWrites(a) => cluster_writes::run(a).await,
            Cmd::VmMigration(a) => vm_migration::run(a).await,
            Cmd::Evacuate(a) => evacuate::run(a).await,
            Cmd::Plan(_) | Cmd::Transfer(_) => Ok(()),
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
