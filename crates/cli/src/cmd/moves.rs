//! `drover move NAME --target MEMBER [--stateless]`.

use client::Client;

/// Arguments of `move`.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The instance to move.
    pub name: String,
    /// The cluster member to move it to.
    #[arg(long)]
    pub target: String,
    /// Move a running instance by stopping it and starting it on the target (the default
    /// here: containers cannot move live; accepted for `lxc move` habits).
    #[arg(long)]
    pub stateless: bool,
}

/// Move the instance, showing the transfer's progress, and wait for it.
pub async fn run(client: &Client, args: MoveArgs) -> anyhow::Result<()> {
    let op = client
        .move_instance(&args.name, &args.target, false)
        .await?;
    let what = format!("Moving {} to {}", args.name, args.target);
    crate::progress::wait(client, &op, &what).await?;
    Ok(())
}
