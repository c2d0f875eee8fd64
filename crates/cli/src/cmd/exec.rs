//! `drover exec NAME [--env K=V] [-t|-T] -- CMD...`: exits with the command's exit code.

use std::io::Read;

use api::exec::InstanceExecPost;
use bytes::Bytes;
use client::{Client, ExecIo};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::render::key_value;
use crate::terminal;

/// Arguments of `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The instance.
    pub name: String,
    /// Environment variable to set (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Force a terminal even when stdin/stdout are not terminals.
    #[arg(
        short = 't',
        long = "force-interactive",
        conflicts_with = "force_noninteractive"
    )]
    pub force_interactive: bool,
    /// Never allocate a terminal.
    #[arg(short = 'T', long = "force-noninteractive")]
    pub force_noninteractive: bool,
    /// Working directory of the command.
    #[arg(long)]
    pub cwd: Option<String>,
    /// User id to run the command as.
    #[arg(long)]
    pub user: Option<u32>,
    /// Group id to run the command as.
    #[arg(long)]
    pub group: Option<u32>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Build the exec request for a session that is (or is not) interactive.
pub fn request(
    args: &ExecArgs,
    interactive: bool,
    size: Option<(u16, u16)>,
) -> anyhow::Result<InstanceExecPost> {
    let mut environment = api::ConfigMap::new();
    if interactive {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
        environment.insert("TERM".into(), term);
    }
    for kv in &args.env {
        let (k, v) = key_value(kv)?;
        environment.insert(k, v);
    }
    let (width, height) = size.unwrap_or((0, 0));
    Ok(InstanceExecPost {
        command: args.command.clone(),
        environment,
        interactive,
        wait_for_websocket: true,
        record_output: false,
        width,
        height,
        user: args.user.unwrap_or(0),
        group: args.group.unwrap_or(0),
        cwd: args.cwd.clone().unwrap_or_default(),
    })
}

/// Run the command; returns its exit code.
pub async fn run(client: &Client, args: ExecArgs) -> anyhow::Result<i32> {
    let interactive = if args.force_noninteractive {
        false
    } else {
        args.force_interactive || terminal::is_interactive()
    };
    let size = if interactive { terminal::size() } else { None };
    let req = request(&args, interactive, size)?;
    let (ctl_tx, ctl_rx) = mpsc::channel(16);
    forward_signals(ctl_tx, interactive)?;
    let io = ExecIo {
        stdin: Some(stdin_stream()),
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        control: Some(ctl_rx),
    };
    let raw = if interactive && terminal::is_interactive() {
        Some(terminal::RawMode::enter()?)
    } else {
        None
    };
    let result = client.exec(&args.name, &req, io).await;
    drop(raw);
    Ok(result?)
}

/// Stdin read on a plain thread (a blocking read must not hold a runtime worker), as a stream.
fn stdin_stream() -> BoxStream<'static, std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// Forward terminal resizes (interactive) and SIGTERM/SIGHUP (plus SIGINT when not
/// interactive: a terminal sends ^C as a byte) to the command.
fn forward_signals(
    tx: mpsc::Sender<api::exec::ExecControl>,
    interactive: bool,
) -> anyhow::Result<()> {
    if interactive {
        let mut winch = signal(SignalKind::window_change())?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((w, h)) = terminal::size()
                    && tx.send(client::exec::window_resize(w, h)).await.is_err()
                {
                    break;
                }
            }
        });
    }
    let mut kinds = vec![(SignalKind::terminate(), 15), (SignalKind::hangup(), 1)];
    if !interactive {
        kinds.push((SignalKind::interrupt(), 2));
    }
    for (kind, number) in kinds {
        let mut sig = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                if tx.send(client::exec::signal(number)).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(env: &[&str]) -> ExecArgs {
        ExecArgs {
            name: "c1".into(),
            env: env.iter().map(|s| s.to_string()).collect(),
            force_interactive: false,
            force_noninteractive: true,
            cwd: Some("/tmp".into()),
            user: None,
            group: None,
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
        }
    }

    #[test]
    fn non_interactive_request() {
        let req = request(&args(&["A=1", "B=x=y"]), false, None).expect("valid");
        let v = serde_json::to_value(&req).expect("json");
        assert_eq!(v["command"], serde_json::json!(["sh", "-c", "exit 3"]));
        assert_eq!(v["environment"], serde_json::json!({"A": "1", "B": "x=y"}));
        assert_eq!(v["interactive"], false);
        assert_eq!(v["wait-for-websocket"], true);
        assert_eq!(v["cwd"], "/tmp");
    }

    #[test]
    fn interactive_request_carries_term_and_size() {
        let req = request(&args(&[]), true, Some((120, 40))).expect("valid");
        assert!(req.interactive);
        assert!(req.environment.contains_key("TERM"));
        assert_eq!((req.width, req.height), (120, 40));
        assert!(request(&args(&["oops"]), false, None).is_err());
    }
}
