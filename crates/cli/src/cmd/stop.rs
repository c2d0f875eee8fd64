//! `drover stop NAME... [--force] [--timeout N]`.

use client::Client;

/// Arguments of `stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Instances to stop.
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

/// Stop each instance in turn.
pub async fn run(client: &Client, args: StopArgs) -> anyhow::Result<()> {
    for name in &args.names {
        super::change_state(client, name, "stop", args.force, args.timeout).await?;
    }
    Ok(())
}
