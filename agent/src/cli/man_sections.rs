//! The sections of coffer(1) that clap cannot generate: FILES, ENVIRONMENT,
//! EXAMPLES and SEE ALSO. Kept beside the CLI so that a changed path or flag is
//! changed here too; the paths are the code's defaults (config, state_dir) and
//! the Debian package's layout (packaging/, agent/Cargo.toml).

use super::roff;

/// What coffer reads and writes on a host, by default.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/coffer/coffer.toml",
        "The configuration, read by every command; --config FILE or COFFER_CONFIG names \
         another. Every key: coffer.toml(5). The Debian package installs the annotated \
         example here (a conffile, mode 0600, in /etc/coffer, mode 0700).",
    ),
    (
        "/etc/coffer/identity.txt",
        "The age identity (private key) the example config names as identity_file; made by \
         coffer keygen --output. Only restore, check and deep verify read it: keep it off the \
         backup host if you can.",
    ),
    (
        "/etc/coffer/recipients.txt, /etc/coffer/*-password, /etc/coffer/s3-secret",
        "Files the config may point at: recipients_file (public keys), a source's \
         password_file, an S3 target's secret_access_key_file, an Azure target's \
         account_key_file or sas_token_file, a GCS target's service_account_file, a \
         WebDAV target's password_file (each mode 0600).",
    ),
    (
        "/var/lib/coffer",
        "The state directory ([agent] state_dir, mode 0700): locks/ (one lock per job), \
         status/JOB.json (run history, for status, metrics and the status page), \
         index/JOB.sqlite (what format 2 stored; losing it costs one full run), tmp/ \
         (scratch files of a run).",
    ),
    (
        "/var/lib/coffer/signing.key",
        "This host's ed25519 key that signs every snapshot ([encryption] signing_key), \
         created by the first backup. Keep a copy: restore on another host trusts its \
         public key.",
    ),
    (
        "/usr/lib/systemd/system/coffer.service",
        "The unit that runs coffer agent (the package's; a manual install copies \
         systemd/coffer.service to /etc/systemd/system/). The package adds \
         coffer.service.d/package.conf, which starts /usr/bin/coffer.",
    ),
    (
        "/etc/default/coffer",
        "Environment of the unit (EnvironmentFile): AWS credentials, password_env \
         variables, COFFER_LOG. An example: /usr/share/doc/coffer/examples/coffer.env.",
    ),
    (
        "/usr/share/doc/coffer/examples/",
        "Prometheus alert rules (prometheus-alerts.yml), a Grafana dashboard \
         (grafana-dashboard.json) and the environment file example (Debian package).",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "COFFER_CONFIG",
        "The config file when --config is not given (default /etc/coffer/coffer.toml).",
    ),
    (
        "COFFER_LOG",
        "Log filter, e.g. info or debug (default warn for commands, info for the agent).",
    ),
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN",
        "S3 credentials for a target without access_key_id and secret_access_key_file.",
    ),
    (
        "COFFER_JOB, COFFER_SNAPSHOT, COFFER_OUTCOME",
        "Set by coffer for its hooks (before, after, on_success, on_failure, after_restore).",
    ),
];

/// Each example: what it does, then the command lines.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Make a key pair; put the printed public key (age1...) into recipients of the config:",
        "coffer keygen --output /etc/coffer/identity.txt",
    ),
    (
        "Check the config and show it as coffer reads it (paths resolved, warnings):",
        "coffer config check",
    ),
    (
        "Show what a backup would read, then back up every job, or one:",
        "coffer backup --dry-run\ncoffer backup\ncoffer backup kadi",
    ),
    (
        "List the snapshots, show each job's last run and what is stored:",
        "coffer list --job kadi\ncoffer status\ncoffer stats",
    ),
    (
        "Verify the newest snapshot of every job (every file's content with the identity):",
        "coffer verify --identity /etc/coffer/identity.txt",
    ),
    (
        "Find a lost file, then restore it (and only it) into a directory of its own:",
        "coffer find --job kadi '*report.pdf'\n\
         coffer restore --job kadi --path 'storage/2024/report.pdf' --to /tmp/kadi-restore",
    ),
    (
        "Restore the newest snapshot in place, databases included, replacing what is there:",
        "coffer restore --job kadi --clean --force",
    ),
    (
        "Apply the retention (see first what goes):",
        "coffer prune --dry-run\ncoffer prune",
    ),
    (
        "Run the agent under systemd and read its metrics:",
        "systemctl enable --now coffer\ncurl -s 127.0.0.1:9187/metrics | grep coffer_backup_last_success",
    ),
];

/// The sections, as roff, to go after the generated ones.
pub fn render() -> String {
    // Paths read better unbroken: no hyphenation, no stretched spaces.
    let mut out = String::from(".nh\n.ad l\n.SH FILES\n");
    roff::terms(&mut out, FILES);
    out.push_str(".SH ENVIRONMENT\n");
    roff::terms(&mut out, ENVIRONMENT);
    out.push_str(".SH EXAMPLES\n");
    for (what, commands) in EXAMPLES {
        out.push_str(&format!(".PP\n{}\n", roff::line(what)));
        roff::verbatim(&mut out, commands);
    }
    out.push_str(".SH SEE ALSO\n");
    out.push_str(
        "\\fBcoffer.toml\\fR(5), \\fBcoffer\\-backup\\fR(1), \\fBcoffer\\-restore\\fR(1), \
         \\fBsystemd.exec\\fR(5), \\fBage\\fR(1); /usr/share/doc/coffer/README.md\n",
    );
    out
}
