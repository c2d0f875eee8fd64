//! `drover operation list|show|wait|delete`.

use std::time::Duration;

use api::Operation;
use client::Client;

use crate::render::{self, Format, yaml};

/// `operation` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OperationCommand {
    /// List operations.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show an operation as YAML.
    Show {
        /// Operation id.
        id: String,
    },
    /// Wait for an operation to finish, then show it.
    Wait {
        /// Operation id.
        id: String,
        /// Give up after this many seconds (default: wait as long as it takes).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Cancel an operation.
    #[command(alias = "rm")]
    Delete {
        /// Operation id.
        id: String,
    },
}

/// The operations table, as `lxc operation list` shows it.
pub fn render_operations(ops: &[Operation], format: Format) -> anyhow::Result<String> {
    render::records(
        format,
        ops,
        &[
            "ID",
            "TYPE",
            "DESCRIPTION",
            "STATUS",
            "CANCELABLE",
            "CREATED",
        ],
        |op| {
            vec![
                op.id.clone(),
                serde_json::to_value(op.class)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_uppercase))
                    .unwrap_or_default(),
                op.description.clone(),
                serde_json::to_value(op.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_uppercase))
                    .unwrap_or_default(),
                if op.may_cancel { "YES" } else { "NO" }.to_string(),
                render::date(&op.created_at).unwrap_or_default(),
            ]
        },
    )
}

/// Run an `operation` subcommand.
pub async fn run(client: &Client, cmd: OperationCommand) -> anyhow::Result<()> {
    match cmd {
        OperationCommand::List { format } => {
            let mut ops: Vec<Operation> =
                client.operations().await?.into_values().flatten().collect();
            ops.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            print!("{}", render_operations(&ops, format)?);
        }
        OperationCommand::Show { id } => print!("{}", yaml(&client.operation(&id).await?)?),
        OperationCommand::Wait { id, timeout } => {
            let op = match timeout {
                Some(secs) => {
                    client
                        .wait_operation(&id, Some(Duration::from_secs(secs)))
                        .await?
                }
                None => {
                    let op = client.operation(&id).await?;
                    match client.wait_done(&op).await {
                        Ok(op) => op,
                        Err(client::Error::OperationFailed { .. }) => client.operation(&id).await?,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            print!("{}", yaml(&op)?);
        }
        OperationCommand::Delete { id } => client.cancel_operation(&id).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_rows() {
        let op: Operation = serde_json::from_value(serde_json::json!({
            "id": "0d05a3f3", "class": "task", "description": "Evacuating cluster member",
            "created_at": "2026-11-24T07:09:14.795171264Z", "updated_at": "2026-11-24T07:09:14Z",
            "status": "Running", "status_code": 103, "resources": null, "metadata": null,
            "may_cancel": false, "err": "", "location": "m1"
        }))
        .expect("operation");
        assert_eq!(
            render_operations(&[op], Format::Csv).expect("renders"),
            "0d05a3f3,TASK,Evacuating cluster member,RUNNING,NO,2026/11/24 07:09 UTC\n"
        );
    }
}
