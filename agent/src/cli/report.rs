//! The CLI's side of `report::Report`: progress drawn as `--progress` says
//! (`progress`), report lines on stdout through `say!` (quiet once the reader is
//! gone, and left out with `--json`, whose document is stdout), notices on stderr.

use crate::report::{Following, Report, Work};
use std::sync::Arc;

pub(crate) struct Terminal {
    /// The command's `--json`: its report is one JSON document on stdout, so no
    /// report line goes there, and no bar garbles a shared terminal.
    json: bool,
}

impl Terminal {
    pub(crate) fn new(json: bool) -> Terminal {
        Terminal { json }
    }
}

impl Report for Terminal {
    fn follows(&self) -> bool {
        super::progress::wanted(self.json)
    }

    fn start(&self, work: Arc<Work>) -> Following {
        match self.follows() {
            true => Following::by(super::progress::Follow::start(work)),
            false => Following::none(),
        }
    }

    fn line(&self, text: &str) {
        if !self.json {
            crate::say!("{text}");
        }
    }

    fn notice(&self, text: &str) {
        eprintln!("{text}");
    }
}
