//! A move's progress, as the operation's metadata shows it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The stage a move is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoveStage {
    /// Copying the volume while the instance still runs.
    Precopy,
    /// Stopping the instance on the source.
    Stopping,
    /// Sending what changed since the pre-copy (or everything, for a stopped instance);
    /// the target checks what it received and puts the volume in place.
    Sync,
    /// Handing the instance to the target in the DB.
    Switch,
    /// Starting the instance on the target.
    Starting,
    /// Deleting the source copy.
    Cleanup,
    /// Undoing a failed move.
    Rollback,
}

impl MoveStage {
    /// The stage's name as serialized (`"precopy"`, `"stopping"`, ...).
    fn name(self) -> &'static str {
        match self {
            Self::Precopy => "precopy",
            Self::Stopping => "stopping",
            Self::Sync => "sync",
            Self::Switch => "switch",
            Self::Starting => "starting",
            Self::Cleanup => "cleanup",
            Self::Rollback => "rollback",
        }
    }

    /// What `lxc` shows after its own `Transferring instance: `.
    fn words(self) -> &'static str {
        match self {
            Self::Precopy => "pre-copy",
            Self::Stopping => "stopping",
            Self::Sync => "final sync",
            Self::Switch => "switching ownership",
            Self::Starting => "starting on the target",
            Self::Cleanup => "removing the source copy",
            Self::Rollback => "rolling back",
        }
    }
}

/// When a move reached a point of its way: a stage entered (its kebab-case name), or
/// `running` (the instance runs on the target) and `done`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageTime {
    /// `"stopping"`, `"sync"`, `"running"`, ...
    pub stage: String,
    /// Wall-clock time, microseconds since the Unix epoch.
    pub at_us: u64,
}

impl StageTime {
    /// `stage` reached now.
    pub fn now(stage: &str) -> Self {
        let at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self {
            stage: stage.to_string(),
            at_us,
        }
    }
}

/// Where a move stands.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveProgress {
    /// The instance.
    pub instance: String,
    /// The current stage.
    pub stage: MoveStage,
    /// Bytes sent to the target so far (both passes).
    pub bytes_sent: u64,
    /// Bytes per second over the current transfer pass.
    pub speed: u64,
}

impl MoveProgress {
    /// The operation metadata: LXD's `fs_progress` string (`"c1: 41.94MB (20.97MB/s)"`,
    /// which `lxc` shows) plus the structured fields.
    pub fn metadata(&self) -> serde_json::Value {
        let text = match self.stage {
            MoveStage::Precopy | MoveStage::Sync => format!(
                "{}: {} {} ({}/s)",
                self.instance,
                self.stage.words(),
                human(self.bytes_sent),
                human(self.speed)
            ),
            stage => format!("{}: {}", self.instance, stage.words()),
        };
        serde_json::json!({
            "fs_progress": text,
            "move_stage": self.stage,
            "move_bytes_sent": self.bytes_sent,
            "move_speed": self.speed,
        })
    }
}

/// LXD's decimal units (`41.94MB`).
pub(super) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

/// Reports progress through an optional callback, rate-limited for transfer updates.
pub(super) struct Reporter {
    progress: MoveProgress,
    callback: Option<super::ProgressFn>,
    pass_started: Instant,
    pass_base: u64,
    last: Option<Instant>,
    started: Instant,
    running_at: Option<Instant>,
    stages: Vec<StageTime>,
}

impl Reporter {
    pub(super) fn new(instance: &str, callback: Option<super::ProgressFn>) -> Self {
        Self {
            progress: MoveProgress {
                instance: instance.to_string(),
                stage: MoveStage::Precopy,
                bytes_sent: 0,
                speed: 0,
            },
            callback,
            pass_started: Instant::now(),
            pass_base: 0,
            last: None,
            started: Instant::now(),
            running_at: None,
            stages: Vec::new(),
        }
    }

    /// Enters `stage` and reports it.
    pub(super) fn stage(&mut self, stage: MoveStage) {
        tracing::info!(
            instance = %self.progress.instance,
            ?stage,
            ms = self.started.elapsed().as_millis(),
            bytes = self.progress.bytes_sent,
            "move stage"
        );
        self.stages.push(StageTime::now(stage.name()));
        self.progress.stage = stage;
        self.progress.speed = 0;
        self.pass_started = Instant::now();
        self.pass_base = self.progress.bytes_sent;
        self.emit();
    }

    /// Records that `total` bytes of the current pass were sent; reports at most 4 times
    /// a second.
    pub(super) fn sent(&mut self, pass_bytes: u64) {
        self.progress.bytes_sent = self.pass_base + pass_bytes;
        let secs = self.pass_started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.progress.speed = (pass_bytes as f64 / secs) as u64;
        }
        if self
            .last
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(250))
        {
            self.emit();
        }
    }

    /// Records that the instance runs on the target from now on.
    pub(super) fn running_on_target(&mut self) {
        self.running_at = Some(Instant::now());
        self.stages.push(StageTime::now("running"));
    }

    /// When each stage was entered so far, then `done` (now).
    pub(super) fn timeline(&self) -> Vec<StageTime> {
        let mut all = self.stages.clone();
        all.push(StageTime::now("done"));
        all
    }

    /// When the instance started on the target, if it did.
    pub(super) fn running_at(&self) -> Option<Instant> {
        self.running_at
    }

    /// Bytes sent so far.
    pub(super) fn bytes_sent(&self) -> u64 {
        self.progress.bytes_sent
    }

    fn emit(&mut self) {
        self.last = Some(Instant::now());
        if let Some(cb) = &self.callback {
            cb(&self.progress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_lxds() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(41_940_000), "41.94MB");
        assert_eq!(human(1_500_000_000), "1.50GB");
    }

    #[test]
    fn transfer_metadata_has_the_progress_string_and_fields() {
        let p = MoveProgress {
            instance: "c1".into(),
            stage: MoveStage::Sync,
            bytes_sent: 20_000_000,
            speed: 10_000_000,
        };
        let m = p.metadata();
        assert_eq!(m["fs_progress"], "c1: final sync 20.00MB (10.00MB/s)");
        assert_eq!(m["move_stage"], "sync");
        assert_eq!(m["move_bytes_sent"], 20_000_000);
    }

    #[test]
    fn stage_names_are_the_serialized_ones() {
        for stage in [
            MoveStage::Precopy,
            MoveStage::Stopping,
            MoveStage::Sync,
            MoveStage::Switch,
            MoveStage::Starting,
            MoveStage::Cleanup,
            MoveStage::Rollback,
        ] {
            assert_eq!(serde_json::json!(stage), stage.name());
        }
    }
}
