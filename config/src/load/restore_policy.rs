//! Validation of a source's `restore = { owner, dir_mode, file_mode }`: how restored
//! files get their owner and mode. Its own module because the same policy belongs
//! to directory, sqlite and redis sources, and its two small grammars (an octal mode
//! written as text, `user:group`) are parsed here once into the values restore and
//! check use.

use super::Validator;
use crate::locate::{Seg, child};
use crate::raw::RawRestorePolicy;
use crate::source_types::{OwnerSpec, RestorePolicy};

impl Validator<'_> {
    pub(super) fn restore_policy(&mut self, at: &[Seg], r: RawRestorePolicy) -> RestorePolicy {
        let owner = r.owner.as_deref().and_then(|o| match parse_owner(o) {
            Ok(spec) => Some(spec),
            Err(msg) => {
                self.problem(&child(at, "owner"), msg);
                None
            }
        });
        let mut mode = |key: &str, value: Option<&str>| {
            value.and_then(|m| match parse_mode(m) {
                Ok(v) => Some(v),
                Err(msg) => {
                    self.problem(&child(at, key), msg);
                    None
                }
            })
        };
        let dir_mode = mode("dir_mode", r.dir_mode.as_deref());
        let file_mode = mode("file_mode", r.file_mode.as_deref());
        RestorePolicy {
            owner,
            dir_mode,
            file_mode,
        }
    }
}

/// `"0750"` -> 0o750. Only octal strings: a TOML integer 750 would silently be decimal.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!(
            "\"{s}\" is not an octal mode; write it like \"0750\" (up to four octal digits)"
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|e| format!("\"{s}\": {e}"))
}

/// `"kadi:www-data"` or `"kadi"`.
fn parse_owner(s: &str) -> Result<OwnerSpec, String> {
    let valid = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '$'))
    };
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if !valid(user) || group.is_some_and(|g| !valid(g)) {
        return Err(format!(
            "\"{s}\" is not an owner; write \"user:group\" or \"user\" (names or numeric ids)"
        ));
    }
    Ok(OwnerSpec {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}
