//! The command source: any program whose standard output is the backup
//! (`kanidmd database backup`-style), restored by a program reading it on stdin.
//! Both run with coffer's environment minus its secrets (`child::scrub_env`): a
//! command source has no business with the database passwords or S3 keys of the
//! other sources.

use crate::process::child::{feed_stdin, stream_stdout};
use crate::sources::kind::{DryRun, Kind};
use crate::sources::restore::{Restore, RestoreRequest};
use crate::sources::source::{Progress, Source, SourceContext, SourceError, SourceOutcome};
use coffer_config::CommandSource as Config;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use time::OffsetDateTime;

#[derive(Debug)]
pub struct CommandSource {
    name: String,
    cfg: Config,
}

impl CommandSource {
    pub fn new(name: String, cfg: Config) -> Self {
        CommandSource { name, cfg }
    }
}

/// A command source as configured (see `sources::kind`).
pub(crate) struct Configured<'a>(pub &'a Config);

impl Kind for Configured<'_> {
    fn open(&self, name: &str, _ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(CommandSource::new(
            name.to_string(),
            self.0.clone(),
        )))
    }
    fn dry_run(&self) -> DryRun {
        DryRun {
            reads: "the standard output of",
            ..DryRun::default()
        }
    }
    fn needed_paths(&self) -> Vec<(&'static str, &Path)> {
        Vec::new()
    }
}

/// The program and its arguments; the config refuses an empty command, and an
/// empty one here is an error rather than a panic.
fn command(name: &str, argv: &[String]) -> Result<Command, SourceError> {
    let (program, args) = argv.split_first().ok_or_else(|| SourceError::Invalid {
        name: name.to_string(),
        message: "the command is empty".into(),
    })?;
    let mut c = crate::process::child::command(program);
    c.args(args);
    Ok(c)
}

impl Source for CommandSource {
    fn origin(&self) -> String {
        self.cfg.command.join(" ")
    }
    /// Feeds the stream to `restore_command`.
    fn plan_restore(&self, _req: &RestoreRequest<'_>) -> Result<Box<dyn Restore>, SourceError> {
        match &self.cfg.restore_command {
            Some(argv) => Ok(Box::new(CommandRestore {
                name: self.name.clone(),
                argv: argv.clone(),
            })),
            None => Err(SourceError::Invalid {
                name: self.name.clone(),
                message:
                    "no restore_command configured; pass --to DIR to get the raw backup as a file"
                        .into(),
            }),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> coffer_config::SourceType {
        coffer_config::SourceType::Command
    }
    /// The only type whose extension the operator configures.
    fn extension(&self) -> &str {
        &self.cfg.extension
    }
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        Ok(None)
    }
    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        let bytes = stream_stdout(
            &self.name,
            &mut command(&self.name, &self.cfg.command)?,
            out,
            progress,
        )?;
        let mut outcome = SourceOutcome {
            bytes_read: bytes,
            ..SourceOutcome::default()
        };
        outcome
            .facts
            .insert("command".into(), self.cfg.command.join(" "));
        Ok(outcome)
    }
}

/// A planned `restore_command`.
#[derive(Debug)]
struct CommandRestore {
    name: String,
    argv: Vec<String>,
}

impl Restore for CommandRestore {
    fn describe(&self) -> String {
        self.argv.join(" ")
    }
    fn restore(&self, input: &mut dyn Read) -> Result<Vec<String>, SourceError> {
        let log = feed_stdin(&self.name, &mut command(&self.name, &self.argv)?, input)?;
        Ok(if log.is_empty() {
            Vec::new()
        } else {
            vec![log]
        })
    }
}
