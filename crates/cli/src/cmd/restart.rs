//! `drover restart NAME... [--force] [--timeout N]`.

use client::Client;

/// Arguments of `restart`.
#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Instances to restart.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Kill instead of a clean shutdown.
    #[arg(short, long)]
    pub force: bool,
    /// Seconds to wait for a clean shutdown, after which the stop fails and the instance
    /// runs on (-1: `boot.host_shutdown_timeout`, then it is killed).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub timeout: i64,
}

/// Restart each instance in turn.
pub async fn run(client: &Client, args: RestartArgs) -> anyhow::Result<()> {
    for name in &args.names {
        super::change_state(client, name, "restart", args.force, args.timeout).await?;
    }
    Ok(())
}
