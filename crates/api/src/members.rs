//! Cluster members.

use serde::{Deserialize, Serialize};

/// A member's state as stored in the cluster DB (an integer there, this enum in code).
/// 0–2 are LXD's values, 3–4 Incus's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// 0: a full member, takes instances.
    #[default]
    Created,
    /// 1: joining.
    Pending,
    /// 2: evacuated; takes no new instances.
    Evacuated,
    /// 3: being evacuated; takes no new instances.
    Evacuating,
    /// 4: being restored; takes no new instances.
    Restoring,
}

impl MemberState {
    /// The integer stored in the DB.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Created => 0,
            Self::Pending => 1,
            Self::Evacuated => 2,
            Self::Evacuating => 3,
            Self::Restoring => 4,
        }
    }

    /// The state for a stored integer, `None` for an unknown value.
    pub fn from_i64(v: i64) -> Option<Self> {
        Some(match v {
            0 => Self::Created,
            1 => Self::Pending,
            2 => Self::Evacuated,
            3 => Self::Evacuating,
            4 => Self::Restoring,
            _ => return None,
        })
    }

    /// Whether new instances may land on a member in this state.
    pub fn accepts_instances(self) -> bool {
        matches!(self, Self::Created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_integers_round_trip() {
        for v in 0..5 {
            let s = MemberState::from_i64(v).expect("known");
            assert_eq!(s.as_i64(), v);
        }
        assert_eq!(MemberState::from_i64(5), None);
        assert!(MemberState::Created.accepts_instances());
        assert!(!MemberState::Evacuated.accepts_instances());
    }
}
