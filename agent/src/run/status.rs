//! A run's outcome as a type rather than a string compared in several places. The
//! JSON (`backup --json`, the status file, metric labels) keeps the same words.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every target committed the snapshot.
    Success,
    /// Some targets committed, others failed.
    Partial,
    /// No target committed.
    Failed,
    /// A signal stopped the run; nothing was committed.
    Cancelled,
}

impl RunStatus {
    /// Every outcome, for reading the words back (`status::Outcome`).
    pub const ALL: &'static [RunStatus] = &[
        RunStatus::Success,
        RunStatus::Partial,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// Whether a run that ended so committed its snapshot (on some target at least).
    pub fn committed(self) -> bool {
        match self {
            RunStatus::Success | RunStatus::Partial => true,
            RunStatus::Failed | RunStatus::Cancelled => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_json_words() {
        for (s, word) in [
            (RunStatus::Success, "success"),
            (RunStatus::Partial, "partial"),
            (RunStatus::Failed, "failed"),
            (RunStatus::Cancelled, "cancelled"),
        ] {
            assert!(RunStatus::ALL.contains(&s), "{s} is not in ALL");
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{word}\"")
            );
            assert_eq!(s.to_string(), word);
        }
        assert_eq!(RunStatus::ALL.len(), 4);
    }
}
