//! The command tree: one file per noun or verb.

mod cluster;
mod cluster_evacuate;
mod config;
mod delete;
mod exec;
mod image;
mod info;
mod launch;
mod list;
mod monitor;
mod moves;
mod operation;
mod profile;
mod restart;
mod start;
mod stop;
mod storage;
mod version;

use clap::{Parser, Subcommand};
use client::Client;

/// drover: manage system containers and VMs on a drover cluster.
#[derive(Debug, Parser)]
#[command(name = "drover", version, about, propagate_version = true)]
pub struct Cli {
    /// Project to work in.
    #[arg(long, global = true, default_value = "default")]
    pub project: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start an instance from an image.
    Launch(launch::LaunchArgs),
    /// Create an instance from an image without starting it.
    Init(launch::LaunchArgs),
    /// List instances.
    #[command(alias = "ls")]
    List(list::ListArgs),
    /// Start instances.
    Start(start::StartArgs),
    /// Stop instances.
    Stop(stop::StopArgs),
    /// Restart instances.
    Restart(restart::RestartArgs),
    /// Delete instances.
    #[command(alias = "rm")]
    Delete(delete::DeleteArgs),
    /// Show an instance's status and resources.
    Info(info::InfoArgs),
    /// Run a command in an instance.
    Exec(exec::ExecArgs),
    /// Move an instance to another cluster member.
    Move(moves::MoveArgs),
    /// Get and set instance configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Show profiles.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Manage storage pools.
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// Form and inspect a cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Inspect background operations.
    #[command(subcommand)]
    Operation(operation::OperationCommand),
    /// Print events as they happen.
    Monitor(monitor::MonitorArgs),
    /// Show client and server versions.
    Version,
}

/// Run a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let client = Client::from_env().with_project(&cli.project);
    match cli.command {
        Command::Launch(args) => launch::run(&client, args, true).await?,
        Command::Init(args) => launch::run(&client, args, false).await?,
        Command::List(args) => list::run(&client, args).await?,
        Command::Start(args) => start::run(&client, args).await?,
        Command::Stop(args) => stop::run(&client, args).await?,
        Command::Restart(args) => restart::run(&client, args).await?,
        Command::Delete(args) => delete::run(&client, args).await?,
        Command::Info(args) => info::run(&client, args).await?,
        Command::Exec(args) => return exec::run(&client, args).await,
        Command::Move(args) => moves::run(&client, args).await?,
        Command::Config(c) => config::run(&client, c).await?,
        Command::Image(c) => image::run(&client, c).await?,
        Command::Profile(c) => profile::run(&client, c).await?,
        Command::Storage(c) => storage::run(&client, c).await?,
        Command::Cluster(c) => cluster::run(&client, c).await?,
        Command::Operation(c) => operation::run(&client, c).await?,
        Command::Monitor(args) => monitor::run(&client, args).await?,
        Command::Version => version::run(&client).await?,
    }
    Ok(0)
}

/// Change an instance's state and wait for it (`start`, `stop`, `restart`).
pub(crate) async fn change_state(
    client: &Client,
    name: &str,
    action: &str,
    force: bool,
    timeout: i64,
) -> anyhow::Result<()> {
    let req = api::InstanceStatePut {
        action: action.to_string(),
        timeout,
        force,
        stateful: false,
    };
    let op = client.update_instance_state(name, &req).await?;
    let what = format!("{} {name}", progress_verb(action));
    crate::progress::wait(client, &op, &what).await?;
    Ok(())
}

/// The spinner's verb for a state action.
fn progress_verb(action: &str) -> &'static str {
    match action {
        "start" => "Starting",
        "stop" => "Stopping",
        "restart" => "Restarting",
        _ => "Updating",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("drover").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn global_project_anywhere() {
        let cli = parse(&["list", "--project", "p1"]);
        assert_eq!(cli.project, "p1");
        assert!(matches!(cli.command, Command::List(_)));
        assert_eq!(parse(&["version"]).project, "default");
    }

    #[test]
    fn launch_flags() {
        let cli = parse(&[
            "launch",
            "busybox",
            "c1",
            "-c",
            "limits.memory=256MiB",
            "-p",
            "default",
            "-p",
            "extra",
            "--ephemeral",
        ]);
        let Command::Launch(a) = cli.command else {
            panic!("not launch")
        };
        assert_eq!(a.image, "busybox");
        assert_eq!(a.name.as_deref(), Some("c1"));
        assert_eq!(a.config, vec!["limits.memory=256MiB"]);
        assert_eq!(a.profiles, vec!["default", "extra"]);
        assert!(a.ephemeral);
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let cli = parse(&[
            "exec", "c1", "--env", "A=1", "-T", "--", "sh", "-c", "exit 3",
        ]);
        let Command::Exec(a) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(a.name, "c1");
        assert_eq!(a.env, vec!["A=1"]);
        assert!(a.force_noninteractive);
        assert_eq!(a.command, vec!["sh", "-c", "exit 3"]);

        let cli = parse(&["exec", "c1", "ls", "-l"]);
        let Command::Exec(a) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(a.command, vec!["ls", "-l"]);
    }

    #[test]
    fn stop_and_delete_flags() {
        let Command::Stop(a) = parse(&["stop", "c1", "c2", "--force", "--timeout", "5"]).command
        else {
            panic!("not stop")
        };
        assert_eq!(a.names, vec!["c1", "c2"]);
        assert!(a.force);
        assert_eq!(a.timeout, 5);
        let Command::Delete(a) = parse(&["delete", "c1", "-f"]).command else {
            panic!("not delete")
        };
        assert!(a.force);
    }

    #[test]
    fn move_flags() {
        let Command::Move(a) = parse(&["move", "c1", "--target", "m3", "--stateless"]).command
        else {
            panic!("not move")
        };
        assert_eq!((a.name.as_str(), a.target.as_str()), ("c1", "m3"));
        assert!(a.stateless);
        assert!(
            Cli::try_parse_from(["drover", "move", "c1"]).is_err(),
            "--target is required"
        );
    }

    #[test]
    fn progress_verbs() {
        assert_eq!(progress_verb("start"), "Starting");
        assert_eq!(progress_verb("stop"), "Stopping");
        assert_eq!(progress_verb("freeze"), "Updating");
    }
}
