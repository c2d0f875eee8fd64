//! Running LXD's `lxc` client (and other commands) with captured output.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Deadline of one client command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command printed and returned.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Asserts exit code 0 and returns `self`.
    ///
    /// # Panics
    ///
    /// When the command failed, with its output.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "`{}` failed\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.stdout, self.stderr
        );
        self
    }

    /// Asserts a non-zero exit code and returns stderr.
    ///
    /// # Panics
    ///
    /// When the command succeeded.
    #[track_caller]
    pub fn failure(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "`{}` should have failed\n--- stdout\n{}",
            self.command, self.stdout
        );
        &self.stderr
    }
}

/// Runs `cmd` (shown as `command`) to completion, feeding it `stdin` (empty stdin when `None`).
///
/// # Panics
///
/// When it does not start, or after 60 s.
pub(crate) async fn run(
    mut cmd: tokio::process::Command,
    command: String,
    stdin: Option<&[u8]>,
) -> Output {
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.unwrap_or_default().to_vec();
    let feed = tokio::spawn(async move {
        let _ = input.write_all(&data).await;
        // Dropping `input` closes the pipe: EOF for the command.
    });
    let out = crate::within(&command, COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|e| panic!("`{command}`: {e}"));
    let _ = feed.await;
    let res = Output {
        command,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    tracing::debug!(command = %res.command, code = res.code, stdout = %res.stdout, stderr = %res.stderr, "command finished");
    res
}

/// Runs `lxc args...` as a remote client with its own config dir `conf` (and `HOME`
/// there), not pointed at any local daemon: what a user on another machine runs.
pub async fn lxc_remote(conf: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("lxc");
    cmd.args(args)
        .env("LXD_CONF", conf)
        .env("HOME", conf)
        .env_remove("LXD_DIR")
        .env_remove("LXD_PROJECT");
    run(cmd, format!("lxc {}", args.join(" ")), None).await
}

/// The arguments of `lxc config device add <inst> <dev> disk <opts>...`.
pub fn disk_add<'a>(inst: &'a str, dev: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["config", "device", "add", inst, dev, "disk"];
    args.extend_from_slice(opts);
    args
}

/// `lxc cluster list -f csv` through `m`: (name, STATE) per member. The state is counted
/// from the end of the row: the ROLES column may be quoted with a comma inside.
///
/// # Panics
///
/// When `lxc` fails.
pub async fn lxc_member_states(m: &crate::Member) -> Vec<(String, String)> {
    let out = m.lxc(&["cluster", "list", "-f", "csv"]).await;
    out.success()
        .stdout
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            let state = cols.get(cols.len().saturating_sub(2)).copied();
            (cols[0].to_string(), state.unwrap_or_default().to_string())
        })
        .collect()
}

/// `name`'s `(STATE, LOCATION)` in `lxc list -f csv -c nsL` as `m` shows it.
///
/// # Panics
///
/// When `lxc` fails or does not list `name`.
pub async fn lxc_state_location(m: &crate::Member, name: &str) -> (String, String) {
    let out = m.lxc(&["list", "-f", "csv", "-c", "nsL"]).await;
    let line = out
        .success()
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", out.stdout))
        .to_string();
    let cols: Vec<&str> = line.split(',').collect();
    (cols[1].to_string(), cols[2].to_string())
}

/// Collects, in the background, what `out` yields (a child's piped stdout, say) as text.
pub fn collect_output(
    mut out: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    use tokio::io::AsyncReadExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    seen
}
