//! Validation of `[agent]`: what `coffer agent` needs besides the jobs (where its
//! state lives, where it listens, the time zone of the schedules, the API token).
//! Its own module so that the settings of the service are read in one place;
//! `state_dir` is also the default home of the signing key (see `encryption`).

use super::Validator;
use crate::locate::keys;
use crate::raw::RawAgent;
use crate::types::{Agent, Secret};
use std::path::PathBuf;

impl Validator<'_> {
    pub(super) fn agent(&mut self, raw: RawAgent) -> Agent {
        let state_dir = raw
            .state_dir
            .as_deref()
            .map_or_else(|| PathBuf::from("/var/lib/coffer"), |d| self.abs(d));
        let listen = match raw.listen.as_deref().unwrap_or("127.0.0.1:9187").parse() {
            Ok(a) => a,
            Err(e) => {
                self.problem(
                    &keys(&["agent", "listen"]),
                    format!("not an address like \"127.0.0.1:9187\": {e}"),
                );
                std::net::SocketAddr::from(([127, 0, 0, 1], 9187))
            }
        };
        let timezone = raw.timezone.as_deref().and_then(|tz| match tz.parse() {
            Ok(zone) => Some(zone),
            Err(_) => {
                self.problem(
                    &keys(&["agent", "timezone"]),
                    format!(
                        "unknown time zone \"{tz}\"; use an IANA name like \"Europe/Berlin\" or \"UTC\""
                    ),
                );
                None
            }
        });
        let api_token = raw.api_token_file.as_deref().and_then(|f| {
            let path = self.abs(f);
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => Some(Secret::new(s.trim().to_string())),
                Ok(_) => {
                    self.problem(
                        &keys(&["agent", "api_token_file"]),
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    self.problem(
                        &keys(&["agent", "api_token_file"]),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        });
        Agent {
            state_dir,
            listen,
            timezone,
            api_token,
        }
    }
}
