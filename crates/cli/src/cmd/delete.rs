//! `drover delete NAME... [--force]`.

use api::InstanceStatus;
use client::Client;

/// Arguments of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Instances to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Stop running instances (killing them) first.
    #[arg(short, long)]
    pub force: bool,
}

/// Delete each instance in turn; with `--force`, running ones are stopped first.
pub async fn run(client: &Client, args: DeleteArgs) -> anyhow::Result<()> {
    for name in &args.names {
        let inst = client.instance(name).await?;
        if inst.status != InstanceStatus::Stopped {
            if !args.force {
                // LXD's wording.
                anyhow::bail!("The instance is currently running, stop it first or pass --force");
            }
            super::change_state(client, name, "stop", true, -1).await?;
        }
        let op = match client.delete_instance(name).await {
            Ok(op) => op,
            // Stopping an ephemeral instance deletes it.
            Err(e) if inst.ephemeral && e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        crate::progress::wait(client, &op, &format!("Deleting {name}")).await?;
    }
    Ok(())
}
