//! `drover cluster evacuate` and `drover cluster restore`: live progress (one line per
//! instance in flight and an overall bar on a terminal, LXD's progress lines otherwise),
//! then a table of what happened to each instance. Exits non-zero when anything failed.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use api::evacuation::{MemberStatePost, PLAN_KEY, PROGRESS_KEY, PlanEntry, PlanStep};
use api::{Operation, OperationStatus};
use client::Client;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::render;

/// How often the operation is polled for progress.
const POLL: Duration = Duration::from_millis(250);

/// What to do, from the command line.
#[derive(Debug, Clone)]
pub struct Request {
    /// The member.
    pub member: String,
    /// `evacuate` or `restore`.
    pub action: &'static str,
    /// The mode (`--action`).
    pub mode: String,
    /// Show the plan only.
    pub dry_run: bool,
    /// `--parallel`.
    pub parallel: u32,
    /// Skip the confirmation.
    pub yes: bool,
    /// Skip the quorum check.
    pub force: bool,
}

/// Asks before changing anything, as `lxc` does; `false` when the answer is not yes.
fn confirm(req: &Request) -> anyhow::Result<bool> {
    if req.yes || req.dry_run {
        return Ok(true);
    }
    print!(
        "Are you sure you want to {} cluster member {:?}? (yes/no) [default=no]: ",
        req.action, req.member
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// The plan table of an operation's metadata.
fn plan_of(op: &Operation) -> Vec<PlanEntry> {
    op.metadata
        .as_ref()
        .and_then(|m| m.get(PLAN_KEY))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn progress_of(op: &Operation) -> String {
    op.metadata
        .as_ref()
        .and_then(|m| m.get(PROGRESS_KEY))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Runs the command.
pub async fn run(client: &Client, req: Request) -> anyhow::Result<()> {
    if !confirm(&req)? {
        println!("Cancelled");
        return Ok(());
    }
    let body = MemberStatePost {
        action: req.action.to_string(),
        mode: req.mode.clone(),
        force: req.force,
        dry_run: req.dry_run,
        parallel: req.parallel,
        parallel_per_target: 0,
    };
    let op = client
        .change_cluster_member_state(&req.member, &body)
        .await?;
    let done = follow(client, &op).await?;
    let plan = plan_of(&done);
    if req.dry_run {
        if done.status != OperationStatus::Success {
            bail!("{}", done.err);
        }
        print!("{}", table(&plan, false));
        return Ok(());
    }
    if !plan.is_empty() {
        print!("{}", table(&plan, true));
    }
    if done.status != OperationStatus::Success {
        bail!("{}", done.err);
    }
    let what = if req.action == "evacuate" {
        "evacuated"
    } else {
        "restored"
    };
    println!("Cluster member {} {what}", req.member);
    Ok(())
}

/// Polls the operation to its end, showing progress.
async fn follow(client: &Client, op: &Operation) -> anyhow::Result<Operation> {
    let terminal = std::io::stdout().is_terminal();
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(0));
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} instances {msg}") {
        overall.set_style(style);
    }
    if !terminal {
        overall.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut lines: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut last = String::new();
    loop {
        let cur = client.operation(&op.id).await?;
        let plan = plan_of(&cur);
        let line = progress_of(&cur);
        if terminal {
            overall.set_length(plan.len() as u64);
            overall.set_position(plan.iter().filter(|e| e.step.is_final()).count() as u64);
            overall.set_message(line.clone());
            for e in &plan {
                let busy = !e.step.is_final() && e.step != PlanStep::Planned
                    || !e.step.is_final() && line.contains(&format!("{:?}", e.instance));
                match (busy, lines.contains_key(&e.instance)) {
                    (true, false) => {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.enable_steady_tick(Duration::from_millis(120));
                        lines.insert(e.instance.clone(), bar);
                    }
                    (false, true) => {
                        if let Some(bar) = lines.remove(&e.instance) {
                            bar.finish_and_clear();
                        }
                    }
                    _ => {}
                }
                if let Some(bar) = lines.get(&e.instance) {
                    let target = if e.target.is_empty() {
                        String::new()
                    } else {
                        format!(" → {}", e.target)
                    };
                    let action = e.action.map_or("none", |a| a.as_str());
                    bar.set_message(format!(
                        "{}: {action}{target} ({}, {})",
                        e.instance,
                        e.step.as_str(),
                        render::bytes(i64::try_from(e.bytes).unwrap_or(i64::MAX))
                    ));
                }
            }
        } else if !line.is_empty() && line != last {
            println!("{line}");
        }
        last = line;
        if cur.status != OperationStatus::Running && cur.status != OperationStatus::Pending {
            for bar in lines.values() {
                bar.finish_and_clear();
            }
            overall.finish_and_clear();
            return Ok(cur);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The plan as a table: with `outcome`, each instance's step and error instead of the
/// reason.
fn table(plan: &[PlanEntry], outcome: bool) -> String {
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|e| {
            let mut row = vec![
                e.instance.clone(),
                e.action.map_or("none", |a| a.as_str()).to_string(),
                e.source.clone(),
                e.target.clone(),
            ];
            if outcome {
                row.extend([e.step.as_str().to_uppercase(), e.error.clone()]);
            } else {
                row.push(e.reason.clone());
            }
            row
        })
        .collect();
    let mut headers = vec!["INSTANCE", "ACTION", "SOURCE", "TARGET"];
    headers.extend(if outcome {
        &["STEP", "ERROR"][..]
    } else {
        &["REASON"][..]
    });
    render::table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::evacuation::PlanAction;

    #[test]
    fn tables_show_every_instance() {
        let plan = vec![PlanEntry {
            project: "default".into(),
            instance: "c1".into(),
            action: Some(PlanAction::Stop),
            source: "m1".into(),
            reason: "no member has 4 GiB of memory free".into(),
            step: PlanStep::Failed,
            error: "boom".into(),
            ..PlanEntry::default()
        }];
        let t = table(&plan, false);
        assert!(
            t.contains("INSTANCE") && t.contains("no member has 4 GiB"),
            "{t}"
        );
        let r = table(&plan, true);
        assert!(r.contains("FAILED") && r.contains("boom"), "{r}");
    }
}
