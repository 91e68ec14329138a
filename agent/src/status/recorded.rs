//! The enumerated fields of a status file (a run's outcome, a verify's mode) as
//! types, readable whatever a newer coffer wrote. The file is shared by every
//! coffer that runs on the host: after a downgrade, or while the CLI of one
//! version runs beside the agent of another, a word this coffer does not know
//! must not make the whole file unreadable (which would reset every counter).
//! So a field reads as [`Recorded::Known`] or [`Recorded::Unknown`], which keeps
//! the word as read: shown as it is, written back as it is, never matched.
//! On disk both are the same JSON string as before the types.

use crate::run::RunStatus;
use crate::verify::VerifyMode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// A type whose values are written as fixed words.
pub trait Word: Copy + Eq + 'static {
    /// Every value, so that a word read back finds its value.
    const ALL: &'static [Self];
    fn word(self) -> &'static str;
}

impl Word for RunStatus {
    const ALL: &'static [Self] = RunStatus::ALL;
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for VerifyMode {
    const ALL: &'static [Self] = &[VerifyMode::Stored, VerifyMode::Deep];
    fn word(self) -> &'static str {
        // Exhaustive on purpose: a new mode stops the build here until it is in
        // `ALL` too (otherwise it would read back as unknown).
        match self {
            VerifyMode::Stored | VerifyMode::Deep => self.as_str(),
        }
    }
}

/// A run's outcome as the status file holds it.
pub type Outcome = Recorded<RunStatus>;

/// What the last verify read, as the status file holds it.
pub type RecordedVerifyMode = Recorded<VerifyMode>;

/// A value of `T` as read from a status file, or the word that was there when
/// this coffer has no such value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded<T> {
    Known(T),
    Unknown(UnknownWord),
}

/// A word that is none of `T`'s; made only by [`Recorded::from_word`], so that a
/// known word is always `Known` (equality and order stay those of the words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord(String);

impl UnknownWord {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<T: Word> Recorded<T> {
    /// `word` as this coffer reads it.
    pub fn from_word(word: &str) -> Self {
        match T::ALL.iter().find(|v| v.word() == word) {
            Some(v) => Recorded::Known(*v),
            None => Recorded::Unknown(UnknownWord(word.to_string())),
        }
    }

    /// The value, when this coffer knows the word.
    pub fn known(&self) -> Option<T> {
        match self {
            Recorded::Known(v) => Some(*v),
            Recorded::Unknown(_) => None,
        }
    }

    /// The word as written in the file.
    pub fn as_str(&self) -> &str {
        match self {
            Recorded::Known(v) => v.word(),
            Recorded::Unknown(w) => w.as_str(),
        }
    }
}

impl<T: Word> From<T> for Recorded<T> {
    fn from(v: T) -> Self {
        Recorded::Known(v)
    }
}

impl<T: Word> fmt::Display for Recorded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// By word, as the `String` keys of the maps (`runs`) were ordered before the
/// types: the same file, the same metrics order.
impl<T: Word> Ord for Recorded<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl<T: Word> PartialOrd for Recorded<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Word> Serialize for Recorded<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: Word> Deserialize<'de> for Recorded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        Ok(Self::from_word(&word))
    }
}
