//! `drover start NAME...`.

use client::Client;

/// Arguments of `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Instances to start.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Start each instance in turn.
pub async fn run(client: &Client, args: StartArgs) -> anyhow::Result<()> {
    for name in &args.names {
        super::change_state(client, name, "start", false, -1).await?;
    }
    Ok(())
}
