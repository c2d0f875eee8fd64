//! `drover config get|set|unset|show [NAME] ...`: instance configuration, or the server's
//! (cluster-wide) configuration when no instance is named, as `lxc config` does: instance
//! names never hold `.` or `=`, server keys always hold a `.` (`core.https_address`), so
//! `drover config set core.https_address 127.0.0.11:8443` is a server key.

use api::instances::InstancePut;
use api::{ConfigMap, DeviceMap, Instance};
use client::Client;
use serde::Serialize;

use crate::render::{key_value, yaml};

/// `config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print one config value.
    Get {
        /// The instance, or the server key when no instance is named.
        name: String,
        /// The key (none: `NAME` is a server key).
        key: Option<String>,
        /// Read the expanded config (profiles applied).
        #[arg(short, long)]
        expanded: bool,
    },
    /// Set config values: `KEY VALUE` or `KEY=VALUE...`.
    Set {
        /// The instance, or the first server key (`KEY VALUE` / `KEY=VALUE...`).
        name: String,
        /// `KEY VALUE`, or one or more `KEY=VALUE`.
        #[arg(num_args = 0..)]
        args: Vec<String>,
    },
    /// Remove a config key.
    Unset {
        /// The instance, or the server key when no instance is named.
        name: String,
        /// The key (none: `NAME` is a server key).
        key: Option<String>,
    },
    /// Print the instance's configuration as YAML.
    Show {
        /// The instance (none: the server's configuration).
        name: Option<String>,
        /// Show the expanded config and devices.
        #[arg(short, long)]
        expanded: bool,
    },
}

/// Parse the arguments of `config set`: `KEY VALUE` (the value may hold `=`) or
/// `KEY=VALUE...`.
pub fn parse_set(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    if let [key, value] = args
        && !key.contains('=')
    {
        return Ok(vec![(key.clone(), value.clone())]);
    }
    args.iter().map(|a| key_value(a)).collect()
}

/// Whether a `config` command's first word names server config rather than an instance.
fn is_server_key(word: &str) -> bool {
    word.contains('.') || word.contains('=')
}

/// Server config: `KEY VALUE` or `KEY=VALUE...` set through `PATCH /1.0`.
async fn set_server(client: &Client, words: &[String]) -> anyhow::Result<()> {
    let pairs = parse_set(words)?;
    client
        .patch_server_config(pairs.into_iter().collect())
        .await?;
    Ok(())
}

/// What `config show` prints: the writable part of the instance.
#[derive(Debug, Serialize)]
struct Shown<'a> {
    architecture: &'a str,
    config: &'a ConfigMap,
    devices: &'a DeviceMap,
    ephemeral: bool,
    profiles: &'a [String],
    stateful: bool,
    description: &'a str,
}

fn shown(inst: &Instance, expanded: bool) -> Shown<'_> {
    Shown {
        architecture: &inst.architecture,
        config: if expanded {
            &inst.expanded_config
        } else {
            &inst.config
        },
        devices: if expanded {
            &inst.expanded_devices
        } else {
            &inst.devices
        },
        ephemeral: inst.ephemeral,
        profiles: &inst.profiles,
        stateful: inst.stateful,
        description: &inst.description,
    }
}

/// Replace the instance's config with `config`, guarded by the `ETag` read with it.
async fn write_config(
    client: &Client,
    inst: Instance,
    config: ConfigMap,
    etag: Option<String>,
) -> anyhow::Result<()> {
    let put = InstancePut {
        architecture: Some(inst.architecture),
        config: Some(config),
        devices: Some(inst.devices),
        ephemeral: Some(inst.ephemeral),
        profiles: Some(inst.profiles),
        description: Some(inst.description),
        restore: None,
        stateful: Some(inst.stateful),
    };
    if let Some(op) = client
        .replace_instance(&inst.name, &put, etag.as_deref())
        .await?
    {
        crate::progress::wait(client, &op, "Updating").await?;
    }
    Ok(())
}

/// Run a `config` subcommand.
pub async fn run(client: &Client, cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Get {
            name, key: None, ..
        } => {
            let server = client.server().await?;
            println!(
                "{}",
                server.config.get(&name).map(String::as_str).unwrap_or("")
            );
        }
        ConfigCommand::Get {
            name,
            key: Some(key),
            expanded,
        } => {
            let inst = client.instance(&name).await?;
            let config = if expanded {
                &inst.expanded_config
            } else {
                &inst.config
            };
            println!("{}", config.get(&key).map(String::as_str).unwrap_or(""));
        }
        ConfigCommand::Set { name, args } if is_server_key(&name) => {
            let words: Vec<String> = std::iter::once(name).chain(args).collect();
            set_server(client, &words).await?;
        }
        ConfigCommand::Set { name, args } => {
            if args.is_empty() {
                anyhow::bail!("config set {name}: give KEY VALUE or KEY=VALUE...");
            }
            let pairs = parse_set(&args)?;
            let (inst, etag) = client.instance_with_etag(&name).await?;
            let mut config = inst.config.clone();
            config.extend(pairs);
            write_config(client, inst, config, etag).await?;
        }
        ConfigCommand::Unset { name, key: None } => {
            let server = client.server().await?;
            if !server.config.contains_key(&name) {
                anyhow::bail!("can't unset key '{name}', it's not currently set");
            }
            client
                .patch_server_config([(name, String::new())].into_iter().collect())
                .await?;
        }
        ConfigCommand::Unset {
            name,
            key: Some(key),
        } => {
            let (inst, etag) = client.instance_with_etag(&name).await?;
            let mut config = inst.config.clone();
            if config.remove(&key).is_none() {
                anyhow::bail!("can't unset key '{key}', it's not currently set");
            }
            write_config(client, inst, config, etag).await?;
        }
        ConfigCommand::Show { name: None, .. } => {
            let server = client.server().await?;
            print!("{}", yaml(&serde_json::json!({ "config": server.config }))?);
        }
        ConfigCommand::Show {
            name: Some(name),
            expanded,
        } => {
            let inst = client.instance(&name).await?;
            print!("{}", yaml(&shown(&inst, expanded))?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn server_keys_are_told_from_instance_names() {
        assert!(is_server_key("core.https_address"));
        assert!(is_server_key("cluster.offline_threshold=10"));
        assert!(!is_server_key("c1"));
        assert!(!is_server_key("web-01"));
    }

    #[test]
    fn set_accepts_key_value_and_pairs() {
        assert_eq!(
            parse_set(&strings(&["limits.memory", "256MiB"])).expect("ok"),
            vec![("limits.memory".to_string(), "256MiB".to_string())]
        );
        assert_eq!(
            parse_set(&strings(&["environment.X", "a=b"])).expect("ok"),
            vec![("environment.X".to_string(), "a=b".to_string())]
        );
        assert_eq!(
            parse_set(&strings(&["a=1", "b=2"])).expect("ok"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            parse_set(&strings(&["a="])).expect("ok"),
            vec![("a".to_string(), String::new())]
        );
        assert!(parse_set(&strings(&["lonely"])).is_err());
        assert!(parse_set(&strings(&["a", "b", "c"])).is_err());
    }
}
