//! The check's answer, handed from the database source's thread to the directory
//! source's before either streams: the directory completes its filesystem snapshot
//! with the files the database's snapshot references (`Source::complete_from_check`).
//! Like the gate, a giver dropped without giving (its source failed, or panicked)
//! gives "no answer", so the directory never waits forever.

use coffer_plugins::dbquery::Referenced;
use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Default)]
pub(super) struct CheckAnswer {
    /// `None` until given; then the answer, or `None` when there is none.
    slot: Mutex<Option<Option<Vec<Referenced>>>>,
    given: Condvar,
}

/// The database source's side: gives once, or "no answer" when dropped.
pub(super) struct Giver<'a> {
    answer: &'a CheckAnswer,
    done: bool,
}

impl CheckAnswer {
    pub(super) fn giver(&self) -> Giver<'_> {
        Giver {
            answer: self,
            done: false,
        }
    }

    /// Waits until the answer is given; `None` when there is none.
    pub(super) fn wait(&self) -> Option<Vec<Referenced>> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(given) = slot.as_ref() {
                return given.clone();
            }
            slot = self
                .given
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn put(&self, answer: Option<Vec<Referenced>>) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(answer);
        }
        self.given.notify_all();
    }
}

impl Giver<'_> {
    pub(super) fn give(mut self, answer: Option<Vec<Referenced>>) {
        self.done = true;
        self.answer.put(answer);
    }
}

impl Drop for Giver<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.answer.put(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_giver_dropped_unused_releases_the_waiter_with_no_answer() {
        let answer = CheckAnswer::default();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| answer.wait());
            drop(answer.giver());
            assert_eq!(waiter.join().expect("joined"), None);
        });
        let given = CheckAnswer::default();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| given.wait());
            given.giver().give(Some(vec![Referenced {
                path: "a".into(),
                size: Some(1),
            }]));
            assert_eq!(waiter.join().expect("joined").map(|v| v.len()), Some(1));
        });
    }
}
