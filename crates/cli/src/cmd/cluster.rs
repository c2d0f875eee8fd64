//! `drover cluster enable|add|join|list|show|info|remove|list-tokens|revoke-token|evacuate|restore` and
//! `drover cluster group create|list|show|assign|delete|rename`.

use std::net::SocketAddr;

use anyhow::Context;
use api::cluster::{ClusterGroupsPost, ClusterJoinToken, ClusterMemberPut, ClusterPut};
use base64::Engine;
use client::Client;

use crate::render::{self, Format, yaml};

/// `cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Make this standalone server the first member of a new cluster (needs
    /// `core.https_address`).
    Enable {
        /// This member's name.
        name: String,
    },
    /// Issue a join token for a new member.
    Add {
        /// The new member's name.
        name: String,
    },
    /// Join this (empty) server to a cluster with a token from `drover cluster add`.
    Join {
        /// The join token.
        token: String,
        /// This member's address for the cluster (`127.0.0.12:8443`).
        #[arg(long)]
        address: String,
        /// This member's name (default: the one the token was issued for).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the members.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a member as YAML.
    Show {
        /// Member name.
        name: String,
    },
    /// List the join tokens this member issued that are not used yet.
    ListTokens {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke the join token issued for a member name.
    RevokeToken {
        /// The name the token was issued for.
        name: String,
    },
    /// Show the cluster as this member sees it (`GET /1.0/cluster`) as YAML.
    Info,
    /// Remove a member from the cluster.
    #[command(alias = "rm")]
    Remove {
        /// Member name.
        name: String,
        /// Remove it even though it still holds instances (they are forgotten).
        #[arg(long)]
        force: bool,
    },
    /// Manage cluster groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Take every instance off a member for maintenance (moved, or stopped in place).
    Evacuate {
        /// Member name.
        name: String,
        /// How: auto (each instance's cluster.evacuate), live-migrate, migrate, stop,
        /// force-stop.
        #[arg(long, default_value = "")]
        action: String,
        /// Show the plan (what happens to each instance, where and why) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Instances handled at once (default: the cluster's cluster.evacuate.parallel).
        #[arg(long, default_value_t = 0)]
        parallel: u32,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Evacuate even when the online voters left would not keep quorum.
        #[arg(long)]
        force: bool,
    },
    /// Bring a member back after an evacuation (instances moved home, stopped ones started).
    Restore {
        /// Member name.
        name: String,
        /// `skip`: only mark the member available again, move nothing.
        #[arg(long, default_value = "")]
        action: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `cluster group` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create a cluster group.
    Create {
        /// Group name.
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the cluster groups.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a cluster group as YAML.
    Show {
        /// Group name.
        name: String,
    },
    /// Make a member belong to exactly these groups (comma-separated).
    Assign {
        /// Member name.
        member: String,
        /// Groups, comma-separated (`default,fast`).
        groups: String,
    },
    /// Delete an empty cluster group.
    #[command(alias = "rm")]
    Delete {
        /// Group name.
        name: String,
    },
    /// Rename a cluster group.
    Rename {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
}

/// A pending join token as `list-tokens` shows it.
#[derive(Debug, serde::Serialize)]
struct PendingToken {
    name: String,
    token: String,
    expires_at: String,
    operation: String,
}

/// The running `token` operations of this member, as tokens.
async fn pending_tokens(client: &Client) -> anyhow::Result<Vec<PendingToken>> {
    let mut out = Vec::new();
    for op in client.operations().await?.into_values().flatten() {
        if op.class != api::OperationClass::Token || op.status != api::OperationStatus::Running {
            continue;
        }
        let Some(meta) = op.metadata.as_ref() else {
            continue;
        };
        let token = token_of(meta);
        if token.server_name.is_empty() {
            continue;
        }
        out.push(PendingToken {
            name: token.server_name.clone(),
            expires_at: token.expires_at.clone(),
            token: encode(&token)?,
            operation: op.id.clone(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The join token a `token` operation's metadata describes.
fn token_of(meta: &serde_json::Value) -> ClusterJoinToken {
    let text = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
    ClusterJoinToken {
        server_name: text("serverName"),
        fingerprint: text("fingerprint"),
        addresses: serde_json::from_value(meta["addresses"].clone()).unwrap_or_default(),
        secret: text("secret"),
        expires_at: text("expiresAt"),
    }
}

/// A join token as printed: base64 of its JSON.
fn encode(token: &ClusterJoinToken) -> anyhow::Result<String> {
    Ok(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(token)?))
}

/// Run a `cluster` subcommand.
pub async fn run(client: &Client, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Enable { name } => {
            let req = ClusterPut {
                server_name: name.clone(),
                enabled: true,
                ..Default::default()
            };
            let op = client.update_cluster(&req).await?;
            crate::progress::wait(client, &op, "Enabling clustering").await?;
            println!("Clustering enabled; this member is {name}");
        }
        ClusterCommand::Add { name } => {
            let op = client.create_cluster_member(&name).await?;
            let token = token_of(&op.metadata.unwrap_or_default());
            println!("Member {name} join token:\n{}", encode(&token)?);
        }
        ClusterCommand::Join {
            token,
            address,
            name,
        } => join(client, &token, &address, name).await?,
        ClusterCommand::List { format } => {
            let mut members = client.cluster_members().await?;
            members.sort_by(|a, b| a.server_name.cmp(&b.server_name));
            let out = render::records(
                format,
                &members,
                &["NAME", "URL", "ROLES", "STATE", "MESSAGE"],
                |m| {
                    vec![
                        m.server_name.clone(),
                        m.url.clone(),
                        m.roles.join(if format == Format::Csv { "," } else { "\n" }),
                        m.status.to_uppercase(),
                        m.message.clone(),
                    ]
                },
            )?;
            print!("{out}");
        }
        ClusterCommand::Show { name } => print!("{}", yaml(&client.cluster_member(&name).await?)?),
        ClusterCommand::ListTokens { format } => {
            let tokens = pending_tokens(client).await?;
            let out = render::records(format, &tokens, &["NAME", "TOKEN", "EXPIRES AT"], |t| {
                vec![t.name.clone(), t.token.clone(), t.expires_at.clone()]
            })?;
            print!("{out}");
        }
        ClusterCommand::RevokeToken { name } => {
            let tokens = pending_tokens(client).await?;
            let token = tokens
                .iter()
                .find(|t| t.name == name)
                .with_context(|| format!("no pending join token for {name:?} on this member"))?;
            client.cancel_operation(&token.operation).await?;
            println!("Join token for {name} revoked");
        }
        ClusterCommand::Info => print!("{}", yaml(&client.cluster().await?)?),
        ClusterCommand::Remove { name, force } => {
            client.delete_cluster_member(&name, force).await?;
            println!("Member {name} removed");
        }
        ClusterCommand::Group(cmd) => group(client, cmd).await?,
        ClusterCommand::Evacuate {
            name,
            action,
            dry_run,
            parallel,
            yes,
            force,
        } => {
            let req = super::cluster_evacuate::Request {
                member: name,
                action: "evacuate",
                mode: action,
                dry_run,
                parallel,
                yes,
                force,
            };
            super::cluster_evacuate::run(client, req).await?;
        }
        ClusterCommand::Restore { name, action, yes } => {
            let req = super::cluster_evacuate::Request {
                member: name,
                action: "restore",
                mode: action,
                dry_run: false,
                parallel: 0,
                yes,
                force: false,
            };
            super::cluster_evacuate::run(client, req).await?;
        }
    }
    Ok(())
}

/// Run a `cluster group` subcommand.
async fn group(client: &Client, cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Create { name, description } => {
            let req = ClusterGroupsPost {
                name: name.clone(),
                description,
                members: Vec::new(),
            };
            client.create_cluster_group(&req).await?;
            println!("Cluster group {name} created");
        }
        GroupCommand::List { format } => {
            let groups = client.cluster_groups().await?;
            let out = render::records(format, &groups, &["NAME", "DESCRIPTION", "MEMBERS"], |g| {
                vec![
                    g.name.clone(),
                    g.description.clone(),
                    g.members.len().to_string(),
                ]
            })?;
            print!("{out}");
        }
        GroupCommand::Show { name } => print!("{}", yaml(&client.cluster_group(&name).await?)?),
        GroupCommand::Assign { member, groups } => {
            let (current, etag) = client.cluster_member_etag(&member).await?;
            let groups: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            let req = ClusterMemberPut {
                config: current.config,
                description: current.description,
                failure_domain: current.failure_domain,
                groups: groups.clone(),
                roles: current.roles,
            };
            client
                .update_cluster_member(&member, &req, etag.as_deref())
                .await?;
            println!("Member {member} is now in {}", groups.join(", "));
        }
        GroupCommand::Delete { name } => {
            client.delete_cluster_group(&name).await?;
            println!("Cluster group {name} deleted");
        }
        GroupCommand::Rename { name, new_name } => {
            client.rename_cluster_group(&name, &new_name).await?;
            println!("Cluster group {name} renamed to {new_name}");
        }
    }
    Ok(())
}

/// What `lxd init` does for a join: fetch the cluster certificate from a member in the
/// token, refuse unless its fingerprint is the token's, then `PUT /1.0/cluster` with the
/// whole token.
async fn join(
    client: &Client,
    token: &str,
    address: &str,
    name: Option<String>,
) -> anyhow::Result<()> {
    let decoded: ClusterJoinToken = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .context("invalid join token")?;
    let mut certificate = None;
    let mut last = anyhow::anyhow!("the join token names no member address");
    for member in &decoded.addresses {
        let addr: SocketAddr = match member.parse() {
            Ok(a) => a,
            Err(e) => {
                last = anyhow::anyhow!("member address {member:?}: {e}");
                continue;
            }
        };
        match tls::fetch_certificate(addr).await {
            Ok(der) if tls::fingerprint(&der) == decoded.fingerprint => {
                certificate = Some((member.clone(), tls::certificate_pem(&der)));
                break;
            }
            Ok(der) => {
                anyhow::bail!(
                    "{member} presents certificate {}, not the token's {}: refusing to join",
                    tls::fingerprint(&der),
                    decoded.fingerprint
                );
            }
            Err(e) => last = anyhow::Error::new(e).context(format!("fetch {member}'s certificate")),
        }
    }
    let (via, certificate) = certificate.ok_or(last)?;
    let req = ClusterPut {
        server_name: name.unwrap_or_else(|| decoded.server_name.clone()),
        enabled: true,
        cluster_address: via,
        cluster_certificate: certificate,
        server_address: address.to_string(),
        cluster_token: token.trim().to_string(),
        ..Default::default()
    };
    let op = client.update_cluster(&req).await?;
    crate::progress::wait(client, &op, "Joining the cluster").await?;
    println!("Joined the cluster as {}", req.server_name);
    Ok(())
}
