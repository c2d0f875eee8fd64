//! `drover monitor [--type T]... [-f yaml|json]`: print events as they arrive.

use client::Client;
use futures::StreamExt;

/// How `monitor` prints events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MonitorFormat {
    /// One YAML document per event, separated by a blank line (as `lxc monitor`).
    #[default]
    Yaml,
    /// One JSON object per line.
    Json,
}

/// Arguments of `monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Event type to show (`operation`, `lifecycle`, `logging`; repeatable; default all).
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value_t = MonitorFormat::Yaml)]
    pub format: MonitorFormat,
}

/// One event as printed.
pub fn render(event: &api::Event, format: MonitorFormat) -> anyhow::Result<String> {
    Ok(match format {
        MonitorFormat::Yaml => format!("{}\n", serde_yaml_ng::to_string(event)?),
        MonitorFormat::Json => format!("{}\n", serde_json::to_string(event)?),
    })
}

/// Print events until the daemon closes the stream.
pub async fn run(client: &Client, args: MonitorArgs) -> anyhow::Result<()> {
    let types: Vec<&str> = args.types.iter().map(String::as_str).collect();
    let mut events = client.events(&types).await?;
    while let Some(event) = events.next().await {
        print!("{}", render(&event?, args.format)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_as_yaml_and_json() {
        let ev: api::Event = serde_json::from_value(serde_json::json!({
            "location": "m1", "metadata": {"action": "instance-started", "source": "/1.0/instances/c1"},
            "project": "default", "timestamp": "2026-11-24T07:09:15Z", "type": "lifecycle"
        }))
        .expect("event");
        assert_eq!(
            render(&ev, MonitorFormat::Yaml).expect("yaml"),
            "type: lifecycle\ntimestamp: 2026-11-24T07:09:15Z\nmetadata:\n  action: instance-started\n  \
             source: /1.0/instances/c1\nlocation: m1\nproject: default\n\n"
        );
        let line = render(&ev, MonitorFormat::Json).expect("json");
        assert!(line.ends_with("}\n") && !line.trim_end().contains('\n'));
    }
}
