//! This host's name, as a manifest records it and notifications and the status
//! page show it: one lookup, so that all three name the host alike.

/// The host name, or `None` when the system cannot say (callers pick what to show).
pub(crate) fn name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
}
