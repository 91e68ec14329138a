//! The freeze barrier of a run: every source waits here until all have frozen,
//! so that their instants are as close as they can be. A second gate orders the
//! instants: databases freeze first, directories right after (see `stream`).

use std::sync::{Condvar, Mutex, PoisonError};

/// The freeze barrier: every source waits here until all have frozen, so their
/// instants are as close as they can be. Unlike `std::sync::Barrier`, a source
/// that fails or panics before it gets there still counts as arrived (its `Pass`
/// arrives when dropped, also while unwinding), so the others are released and
/// learn that the run failed instead of waiting forever with the job lock held.
pub(super) struct Gate {
    state: Mutex<GateState>,
    all_arrived: Condvar,
}

struct GateState {
    missing: usize,
    failed: bool,
}

/// One source's way through the gate; arrives (as failed) when dropped unused.
pub(super) struct Pass<'a> {
    gate: &'a Gate,
    arrived: bool,
}

impl Gate {
    pub(super) fn new(sources: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                missing: sources,
                failed: false,
            }),
            all_arrived: Condvar::new(),
        }
    }

    pub(super) fn pass(&self) -> Pass<'_> {
        Pass {
            gate: self,
            arrived: false,
        }
    }

    fn arrive(&self, ok: bool) -> std::sync::MutexGuard<'_, GateState> {
        // Nothing runs under this lock that could panic; a poisoned one is still sound.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.missing = state.missing.saturating_sub(1);
        state.failed |= !ok;
        if state.missing == 0 {
            self.all_arrived.notify_all();
        }
        state
    }
}

impl Gate {
    /// Waits, without arriving, until every source that goes through this gate has
    /// arrived; true when all of them froze.
    pub(super) fn wait_open(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.missing > 0 {
            state = self
                .all_arrived
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.failed
    }
}

impl Pass<'_> {
    /// Arrives without waiting for the others.
    pub(super) fn arrive(mut self, ok: bool) {
        self.arrived = true;
        drop(self.gate.arrive(ok));
    }

    /// Arrives and waits for every other source; true when all of them froze.
    pub(super) fn wait(mut self, ok: bool) -> bool {
        self.arrived = true;
        let mut state = self.gate.arrive(ok);
        while state.missing > 0 {
            state = self
                .gate
                .all_arrived
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.failed
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            drop(self.gate.arrive(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A deadlock detector, not a timing claim: only a gate that never opens hits it.
    const HANG: Duration = Duration::from_secs(120);

    #[test]
    fn the_gate_holds_every_source_until_the_last_arrives() {
        let gate = Gate::new(3);
        let arrived = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    let pass = gate.pass();
                    arrived.fetch_add(1, Ordering::SeqCst);
                    assert!(pass.wait(true), "every source froze");
                    assert_eq!(arrived.load(Ordering::SeqCst), 3, "released early");
                });
            }
        });
    }

    #[test]
    fn what_waits_for_the_first_gate_starts_only_after_all_of_it_arrived() {
        let first = Gate::new(2);
        let arrived = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(first.wait_open(), "both froze");
                assert_eq!(arrived.load(Ordering::SeqCst), 2, "opened early");
            });
            for _ in 0..2 {
                scope.spawn(|| {
                    let pass = first.pass();
                    std::thread::sleep(Duration::from_millis(20));
                    arrived.fetch_add(1, Ordering::SeqCst);
                    pass.arrive(true);
                });
            }
        });
        // One that panics before it arrives still opens the gate, as failed.
        let first = Arc::new(Gate::new(1));
        let g = first.clone();
        let t = std::thread::spawn(move || {
            let _pass = g.pass();
            panic!("a freeze that panics");
        });
        assert!(t.join().is_err());
        assert!(
            !first.wait_open(),
            "a source that never froze opens it as failed"
        );
        // No source goes through it: open at once.
        assert!(Gate::new(0).wait_open());
    }

    /// Sources 1 and 2 freeze fine; source 0 fails (`panics` false) or panics.
    fn others_see(panics: bool) -> Vec<bool> {
        let gate = Arc::new(Gate::new(3));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for i in 0..3 {
            let gate = gate.clone();
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                let pass = gate.pass();
                if i == 0 {
                    if panics {
                        panic!("a freeze that panics");
                    }
                    let _ = pass.wait(false);
                } else {
                    let _ = tx.send(pass.wait(true));
                }
            }));
        }
        let seen = (0..2)
            .map(|_| {
                rx.recv_timeout(HANG)
                    .expect("the other sources were never released")
            })
            .collect();
        let panicked = threads
            .into_iter()
            .map(std::thread::JoinHandle::join)
            .filter(Result::is_err)
            .count();
        assert_eq!(panicked, usize::from(panics));
        seen
    }

    #[test]
    fn a_failed_freeze_releases_the_others_as_failed() {
        assert_eq!(others_see(false), vec![false, false]);
    }

    #[test]
    fn a_panicking_freeze_releases_the_others_as_failed() {
        assert_eq!(others_see(true), vec![false, false]);
    }
}
