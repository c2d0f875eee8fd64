//! `drover storage list|show|create`.

use api::storage::StoragePoolsPost;
use client::Client;

use crate::render::{self, Format, key_value, yaml};

/// `storage` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StorageCommand {
    /// List storage pools.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a storage pool as YAML.
    Show {
        /// Pool name.
        name: String,
    },
    /// Create a storage pool: `create NAME dir [source=/path] [key=value...]`.
    Create {
        /// Pool name.
        name: String,
        /// Driver (`dir`).
        driver: String,
        /// Config (`source=/srv/pool`).
        config: Vec<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
}

/// Run a `storage` subcommand.
pub async fn run(client: &Client, cmd: StorageCommand) -> anyhow::Result<()> {
    match cmd {
        StorageCommand::List { format } => {
            let mut pools = client.storage_pools().await?;
            pools.sort_by(|a, b| a.name.cmp(&b.name));
            let out = render::records(
                format,
                &pools,
                &[
                    "NAME",
                    "DRIVER",
                    "SOURCE",
                    "DESCRIPTION",
                    "USED BY",
                    "STATE",
                ],
                |p| {
                    vec![
                        p.name.clone(),
                        p.driver.clone(),
                        p.config.get("source").cloned().unwrap_or_default(),
                        p.description.clone(),
                        p.used_by.len().to_string(),
                        p.status.to_uppercase(),
                    ]
                },
            )?;
            print!("{out}");
        }
        StorageCommand::Show { name } => print!("{}", yaml(&client.storage_pool(&name).await?)?),
        StorageCommand::Create {
            name,
            driver,
            config,
            description,
        } => {
            let req = StoragePoolsPost {
                name: name.clone(),
                driver,
                description,
                config: config
                    .iter()
                    .map(|c| key_value(c))
                    .collect::<anyhow::Result<_>>()?,
            };
            client.create_storage_pool(&req).await?;
            println!("Storage pool {name} created");
        }
    }
    Ok(())
}
