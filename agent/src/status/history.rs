//! The last runs of a job, kept in its status file for the status page's table
//! and charts. The file is read by every scrape and every run, and anyone who
//! can write `state_dir` can put anything in it: reading keeps at most
//! [`HISTORY`] records whatever the file holds (never collecting more than that
//! in memory), skips records that do not parse, and reads a missing or
//! malformed history as empty, so that it never resets the status's counters.

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// How many runs a status keeps: the status page charts this many.
pub const HISTORY: usize = 30;

/// Longer than any outcome coffer writes: a record whose outcome is longer came
/// from somewhere else and is skipped.
const MAX_OUTCOME: usize = 32;

/// One finished run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// Unix seconds of the run's end.
    pub end: f64,
    /// `success`, `partial`, `failed` or `cancelled` (or a newer coffer's word).
    pub outcome: super::Outcome,
    pub duration_seconds: f64,
    /// Bytes the run stored, summed over the targets that committed it.
    pub bytes_stored: u64,
    /// What the snapshot spans (`last_window_seconds` of that run).
    pub window_seconds: f64,
    /// The run's error (its `last_error`), at most [`MAX_ERROR`] bytes, for the
    /// status page's table. Absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The most of a run's error a record keeps: enough for any message coffer
/// writes, while 30 records stay small in a file read by every scrape.
pub const MAX_ERROR: usize = 2000;

/// `error` cut to at most [`MAX_ERROR`] bytes at a character boundary, marked
/// where cut.
pub fn bounded_error(error: &str) -> String {
    if error.len() <= MAX_ERROR {
        return error.to_string();
    }
    let mut end = MAX_ERROR;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [...]", &error[..end])
}

/// Appends `run`, dropping the oldest records beyond [`HISTORY`].
pub(crate) fn push(history: &mut Vec<RunRecord>, run: RunRecord) {
    history.push(run);
    let extra = history.len().saturating_sub(HISTORY);
    history.drain(..extra);
}

/// `deserialize_with` for the history: the last [`HISTORY`] well-formed records.
pub(crate) fn bounded<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RunRecord>, D::Error> {
    d.deserialize_any(Bounded)
}

/// A record, or anything else in its place (skipped).
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Run(RunRecord),
    Other(IgnoredAny),
}

struct Bounded;

impl<'de> Visitor<'de> for Bounded {
    type Value = Vec<RunRecord>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of runs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = VecDeque::with_capacity(HISTORY);
        while let Some(entry) = seq.next_element::<Entry>()? {
            if let Entry::Run(mut r) = entry
                && r.outcome.as_str().len() <= MAX_OUTCOME
            {
                r.error = r.error.as_deref().map(bounded_error);
                if kept.len() == HISTORY {
                    kept.pop_front();
                }
                kept.push_back(r);
            }
        }
        Ok(kept.into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
}
