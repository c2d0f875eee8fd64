//! `drover profile list|show`.

use client::Client;

use crate::render::{self, Format, yaml};

/// `profile` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// List profiles.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a profile as YAML.
    Show {
        /// Profile name.
        name: String,
    },
}

/// Run a `profile` subcommand.
pub async fn run(client: &Client, cmd: ProfileCommand) -> anyhow::Result<()> {
    match cmd {
        ProfileCommand::List { format } => {
            let mut profiles = client.profiles().await?;
            profiles.sort_by(|a, b| a.name.cmp(&b.name));
            let out = render::records(
                format,
                &profiles,
                &["NAME", "DESCRIPTION", "USED BY"],
                |p| {
                    vec![
                        p.name.clone(),
                        p.description.clone(),
                        p.used_by.len().to_string(),
                    ]
                },
            )?;
            print!("{out}");
        }
        ProfileCommand::Show { name } => print!("{}", yaml(&client.profile(&name).await?)?),
    }
    Ok(())
}
