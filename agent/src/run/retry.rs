//! Whether running a failed job again could help without anyone changing
//! anything: decided on the error's types (a source's, a target's, an upload's),
//! never on its text. An error of no known type is not retried: a retry repeats
//! the hooks and the reading, and should be spent only where it can succeed.
//! The service uses this to run a failed job again (`retries`, `retry_wait`).

use crate::pipeline::upload::UploadError;
use coffer_plugins::{SourceError, TargetError};

/// Every target failed while a source streamed; the run stops, and the targets'
/// failures are its cause.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: every target failed: {}", join(.failures))]
pub(crate) struct AllTargetsFailed {
    pub(crate) source_name: String,
    pub(crate) failures: Vec<UploadError>,
}

fn join(failures: &[UploadError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// True when the error, or what caused it, is of a kind a later run could get
/// past: a database or server that was down, a network failure, a 5xx.
pub(crate) fn could_help(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            return e.retryable();
        }
        if let Some(e) = cause.downcast_ref::<TargetError>() {
            return e.retryable();
        }
        if let Some(e) = cause.downcast_ref::<UploadError>() {
            return e.retryable;
        }
        if let Some(e) = cause.downcast_ref::<AllTargetsFailed>() {
            return !e.failures.is_empty() && e.failures.iter().all(|f| f.retryable);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn upload(retryable: bool) -> UploadError {
        UploadError {
            target: "offsite".into(),
            message: "target offsite: connection refused".into(),
            retryable,
            abandoned: false,
        }
    }

    #[test]
    fn a_database_that_was_down_is_worth_a_retry_and_a_bad_config_is_not() {
        let down: anyhow::Error = SourceError::Database {
            name: "db".into(),
            message: "connection refused".into(),
            retryable: true,
        }
        .into();
        assert!(could_help(&down.context("job app")));
        let invalid: anyhow::Error = SourceError::Invalid {
            name: "db".into(),
            message: "no such table".into(),
        }
        .into();
        assert!(!could_help(&invalid));
    }

    #[test]
    fn the_type_decides_not_the_words() {
        let reads_transient = anyhow::anyhow!("connection refused (retryable, a 503)");
        assert!(!could_help(&reads_transient));
        let typed: Result<(), UploadError> = Err(upload(true));
        let err = typed
            .context("cannot write the manifest")
            .expect_err("an error");
        assert!(could_help(&err));
    }

    #[test]
    fn every_target_down_is_retryable_only_if_each_one_is() {
        let all = |r: Vec<bool>| -> anyhow::Error {
            AllTargetsFailed {
                source_name: "files".into(),
                failures: r.into_iter().map(upload).collect(),
            }
            .into()
        };
        assert!(could_help(&all(vec![true, true])));
        assert!(!could_help(&all(vec![true, false])));
        assert!(!could_help(&all(vec![])));
    }

    #[test]
    fn a_missing_target_directory_is_worth_a_retry() {
        // The disk may be mounted by the time the retry runs.
        let missing: anyhow::Error = TargetError::MissingRoot {
            name: "local".into(),
            description: "local /mnt/backups".into(),
            message: "/mnt/backups does not exist".into(),
        }
        .into();
        assert!(could_help(&missing.context("job app")));
        let unusable: anyhow::Error = TargetError::Open {
            name: "local".into(),
            description: "local /mnt/backups".into(),
            message: "/mnt/backups is not a directory".into(),
            retryable: false,
        }
        .into();
        assert!(!could_help(&unusable));
    }
}
