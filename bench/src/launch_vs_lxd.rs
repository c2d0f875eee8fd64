//! `launch-vs-lxd`: `lxc launch <busybox> cK` until the CLI exits (the instance is then
//! running), through drover and through real LXD 5.0.2, interleaved.
//!
//! LXD comes from `shared/tools/lxd-reference/setup.sh` (a 3-member cluster in network
//! namespace `lxd-ref`; launches go to member m1 with `--target m1`, so the member that
//! receives the request runs the instance, like drover's single member). When it cannot
//! come up the command fails and says why: it never reports a number it did not measure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;

use crate::droverd::{self, Droverd};
use crate::report::{self, Metadata, Ratio, Summary};

/// Options of `launch-vs-lxd`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Launches per side (after one unmeasured warm-up launch each).
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// Result file (default: bench/results/launch-vs-lxd.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// droverd binary to use instead of building the workspace's release build.
    #[arg(long)]
    pub droverd: Option<PathBuf>,
    /// Where LXD comes from.
    #[command(flatten)]
    pub lxd: LxdArgs,
}

/// How a bench gets the LXD 5.0.2 reference cluster (shared by the benches that compare
/// with it).
#[derive(Debug, Clone, clap::Args)]
pub struct LxdArgs {
    /// The lxd-reference tool directory (setup.sh, teardown.sh).
    #[arg(long)]
    pub lxd_reference: Option<PathBuf>,
    /// Use an LXD reference that is already up instead of running setup.sh (and leave it
    /// up afterwards).
    #[arg(long)]
    pub no_setup: bool,
    /// Do not run `teardown.sh --wipe` at the end.
    #[arg(long)]
    pub keep_lxd: bool,
}

impl LxdArgs {
    fn tools(&self) -> PathBuf {
        self.lxd_reference
            .clone()
            .unwrap_or_else(|| droverd::workspace_dir().join("../shared/tools/lxd-reference"))
    }

    /// Checks that `lxc` is there and brings the reference up (unless `--no-setup`); its
    /// log goes to `tmp`.
    pub async fn up(&self, tmp: &Path) -> Result<()> {
        which("lxc").context("the lxc CLI is needed (Debian package lxd-client or lxd)")?;
        if !self.no_setup {
            setup_lxd(&self.tools(), tmp).await?;
        }
        Ok(())
    }

    /// Tears the reference down, unless it was already up or is to be kept.
    pub async fn down(&self) {
        if !self.no_setup && !self.keep_lxd {
            teardown_lxd(&self.tools()).await;
        }
    }
}

/// The version of the LXD whose `GET /1.0` is `server`; refused unless it is 5.0.x.
pub fn lxd_version(server: &Value) -> Result<String> {
    let version = server["environment"]["server_version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !version.starts_with("5.0") {
        bail!("the LXD reference is version {version:?}, not 5.0.x");
    }
    Ok(version)
}

/// State directory of the LXD member the launches go to.
const LXD_DIR: &str = "/var/lib/lxd-ref/m1";
/// The member to target.
const LXD_TARGET: &str = "m1";
/// setup.sh's image alias.
const LXD_ALIAS: &str = "lxd-ref-busybox";

#[derive(Debug, Serialize)]
struct Setup {
    n: usize,
    warmup: usize,
    drover_runtime: String,
    lxd_server_version: String,
    lxd_driver: String,
    lxd_command: String,
    drover_command: String,
    droverd: String,
    order: &'static str,
}

#[derive(Debug, Serialize)]
struct CellResult {
    name: &'static str,
    description: &'static str,
    series: std::collections::BTreeMap<&'static str, Summary>,
    ratio: Ratio,
}

#[derive(Debug, Serialize)]
struct LaunchResult {
    benchmark: &'static str,
    metadata: Metadata,
    setup: Setup,
    cells: Vec<CellResult>,
}

/// Runs the benchmark, prints the table, writes the JSON.
pub async fn run(args: LaunchArgs) -> Result<()> {
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut meta = Metadata::collect();
    let bin = droverd::binary(args.droverd.clone()).await?;
    let tmp = tempfile::Builder::new()
        .prefix("drover-bench-launch-")
        .tempdir()?;
    let lxc_conf = tmp.path().join("lxc-conf");
    std::fs::create_dir_all(&lxc_conf)?;

    args.lxd.up(tmp.path()).await?;
    let outcome = async {
        let lxd = Lxc::new(Path::new(LXD_DIR), &lxc_conf);
        let lxd_server = lxd
            .query("/1.0")
            .await
            .map_err(|e| anyhow!("the LXD reference at {LXD_DIR} does not answer: {e:#}"))?;
        lxd_version(&lxd_server)?;
        let image = tmp.path().join("busybox.tar.gz");
        droverd::build_busybox_image(&image).await?;
        let daemon = Droverd::start(&bin, &tmp.path().join("drover")).await?;
        let res = measure(&args, &daemon, &image, &lxd, &lxc_conf).await;
        let drover_runtime = daemon.server["environment"]["driver_version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        daemon.shutdown().await?;
        let (d, l) = res?;
        Ok::<_, anyhow::Error>((d, l, lxd_server, drover_runtime))
    }
    .await;
    args.lxd.down().await;
    let (d, l, lxd_server, drover_runtime) = outcome?;
    meta.finish();
    let result = LaunchResult {
        benchmark: "launch-vs-lxd",
        metadata: meta,
        setup: Setup {
            n: args.n,
            warmup: 1,
            drover_runtime,
            lxd_server_version: lxd_server["environment"]["server_version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            lxd_driver: format!(
                "{} {}",
                lxd_server["environment"]["driver"].as_str().unwrap_or(""),
                lxd_server["environment"]["driver_version"]
                    .as_str()
                    .unwrap_or("")
            ),
            lxd_command: format!(
                "LXD_DIR={LXD_DIR} lxc launch {LXD_ALIAS} cK --target {LXD_TARGET}"
            ),
            drover_command: "LXD_DIR=<droverd dir> lxc launch busybox cK".into(),
            droverd: bin.display().to_string(),
            order: "alternating: drover first for even K, LXD first for odd K",
        },
        cells: vec![CellResult {
            name: "launch",
            description: "wall time of one `lxc launch` process (create from image + start; \
                          it exits once the instance runs)",
            series: [("drover", Summary::of(&d)), ("lxd", Summary::of(&l))].into(),
            ratio: Ratio::new("drover/lxd", &d, &l),
        }],
    };
    print_table(&result);
    let out = args
        .out
        .unwrap_or_else(|| droverd::workspace_dir().join("bench/results/launch-vs-lxd.json"));
    report::write_json(&out, &result)?;
    println!("wrote {}", out.display());
    Ok(())
}

async fn measure(
    args: &LaunchArgs,
    daemon: &Droverd,
    image: &Path,
    lxd: &Lxc,
    lxc_conf: &Path,
) -> Result<(Vec<f64>, Vec<f64>)> {
    daemon.api().import_image(image, "busybox").await?;
    let drover = Lxc::new(daemon.dir(), lxc_conf);
    let tag = std::process::id();
    let name = |k: usize| format!("l{tag}x{k}");
    let mut names = Vec::new();
    let mut d = Vec::new();
    let mut l = Vec::new();
    let res = async {
        // k = 0 is the warm-up on each side.
        for k in 0..=args.n {
            let n = name(k);
            names.push(n.clone());
            let (td, tl) = if k % 2 == 0 {
                let td = drover.launch(&["busybox", &n]).await?;
                (
                    td,
                    lxd.launch(&[LXD_ALIAS, &n, "--target", LXD_TARGET]).await?,
                )
            } else {
                let tl = lxd.launch(&[LXD_ALIAS, &n, "--target", LXD_TARGET]).await?;
                (drover.launch(&["busybox", &n]).await?, tl)
            };
            eprintln!(
                "launch {k}{}: drover {td:.1} ms, lxd {tl:.1} ms",
                if k == 0 { " (warm-up)" } else { "" }
            );
            if k > 0 {
                d.push(td);
                l.push(tl);
            }
        }
        // Both must really be running (checked once, untimed).
        for (side, lxc) in [("drover", &drover), ("lxd", lxd)] {
            for n in &names {
                let st = lxc.query(&format!("/1.0/instances/{n}")).await?;
                if st["status"] != "Running" {
                    bail!("{side}: {n} is {} after lxc launch", st["status"]);
                }
            }
        }
        Ok(())
    }
    .await;
    for n in &names {
        let _ = drover.run(&["delete", "--force", n]).await;
        let _ = lxd.run(&["delete", "--force", n]).await;
    }
    res.map(|()| (d, l))
}

/// The `lxc` CLI pointed at one daemon's socket (`LXD_DIR`), with its own config dir.
#[derive(Debug)]
struct Lxc {
    dir: PathBuf,
    conf: PathBuf,
}

impl Lxc {
    fn new(dir: &Path, conf: &Path) -> Lxc {
        Lxc {
            dir: dir.to_path_buf(),
            conf: conf.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("lxc");
        c.args(args)
            .env("LXD_DIR", &self.dir)
            .env("LXD_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs `lxc args` to success, returning stdout.
    async fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.command(args).output().await?;
        if !out.status.success() {
            bail!(
                "LXD_DIR={} lxc {} failed ({}): {}",
                self.dir.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `lxc launch args`, timed from spawn to exit, in ms.
    async fn launch(&self, args: &[&str]) -> Result<f64> {
        let mut all = vec!["launch"];
        all.extend_from_slice(args);
        let t0 = Instant::now();
        self.run(&all).await?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    /// `lxc query path`, parsed.
    async fn query(&self, path: &str) -> Result<Value> {
        let text = self.run(&["query", path]).await?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn which(bin: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{bin} not found on PATH"))
}

/// Runs setup.sh (log in `tmp/setup.log`); any failure names the step and the log's end.
async fn setup_lxd(tools: &Path, tmp: &Path) -> Result<()> {
    let script = tools.join("setup.sh");
    if !script.is_file() {
        bail!(
            "cannot bring up the LXD reference: {} does not exist",
            script.display()
        );
    }
    let log_path = tmp.join("lxd-setup.log");
    let log = std::fs::File::create(&log_path)?;
    eprintln!(
        "bringing up LXD 5.0.2 with {} (log: {})",
        script.display(),
        log_path.display()
    );
    let t0 = Instant::now();
    let status = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        // Leave nothing half-up behind.
        teardown_lxd(tools).await;
        bail!(
            "the LXD reference could not come up: {} exited with {status}; last lines of its log:\n{tail}",
            script.display()
        );
    }
    eprintln!("LXD reference up in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// `teardown.sh --wipe`, best effort (reported, never fatal).
async fn teardown_lxd(tools: &Path) {
    let script = tools.join("teardown.sh");
    eprintln!(
        "tearing down the LXD reference: {} --wipe",
        script.display()
    );
    match Command::new("bash")
        .arg(&script)
        .arg("--wipe")
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "warning: teardown.sh --wipe failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("warning: cannot run teardown.sh: {e}"),
    }
}

fn print_table(r: &LaunchResult) {
    let c = &r.cells[0];
    let d = &c.series["drover"];
    let l = &c.series["lxd"];
    println!(
        "\nlaunch-vs-lxd: {} launches each (+1 warm-up), drover on {} vs LXD {}, ms",
        r.setup.n, r.setup.drover_runtime, r.setup.lxd_server_version
    );
    println!(
        "{}",
        report::table(
            &["cell", "drover", "LXD 5.0.2", "ratio", "paired", "speed-up"],
            vec![vec![
                c.name.to_string(),
                report::fmt_summary(d),
                report::fmt_summary(l),
                format!("{:.2}", c.ratio.of_medians),
                format!("{:.2}", c.ratio.paired_median),
                format!("{:.1}x", 1.0 / c.ratio.of_medians.max(1e-9)),
            ]]
        )
    );
}
