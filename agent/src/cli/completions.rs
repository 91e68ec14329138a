//! `coffer completions SHELL`: clap's completion scripts, and for bash job names.
//!
//! The job names live in the config in effect, so the bash script asks the binary:
//! a small wrapper around clap's completion function calls the hidden
//! `coffer complete-jobs` (with the `--config` typed so far; `COFFER_CONFIG` is
//! inherited) for `backup`'s arguments and every `--job` value, and leaves all the
//! rest to clap's function. `complete-jobs` reads only the `[jobs.NAME]` table
//! names (`coffer_config::job_names`), so a config half edited still completes and
//! no secret file is read.

use anyhow::{Context, Result};
use clap_complete::Shell;
use std::io::Write;

pub fn run(shell: Shell) -> Result<u8> {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "coffer", &mut script);
    if shell == Shell::Bash {
        // clap's bash script offers hidden subcommands too: not this one.
        let text = String::from_utf8_lossy(&script).replace(" complete-jobs ", " ");
        script = text.into_bytes();
        script.extend_from_slice(BASH_JOBS.as_bytes());
    }
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script to stdout")?;
    Ok(crate::exit::OK)
}

/// The hidden `complete-jobs`: one job name per line, nothing when the config cannot
/// be read (a completion must never print errors into the command line).
pub fn jobs(config: &std::path::Path) -> Result<u8> {
    let mut out = String::new();
    for name in coffer_config::job_names(config).unwrap_or_default() {
        out.push_str(&name);
        out.push('\n');
    }
    // A closed pipe is no error worth a message here either.
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(crate::exit::OK)
}

/// Registered after clap's `_coffer`, which it calls for everything but job names.
const BASH_JOBS: &str = r#"
# Job names from the config in effect (coffer complete-jobs), for `backup JOB...`
# and `--job JOB`; everything else is clap's _coffer above.
_coffer_with_jobs() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" sub="" i w
    local -a config=()
    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
    # bash splits `--job=x` into `--job`, `=`, `x` (COMP_WORDBREAKS has `=`).
    [ "$prev" = "=" ] && [ "$COMP_CWORD" -gt 1 ] && prev="${COMP_WORDS[COMP_CWORD-2]}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in
            --config)
                [ "${COMP_WORDS[i+1]}" = "=" ] && ((i++))
                ((i + 1 < COMP_CWORD)) && config=(--config "${COMP_WORDS[i+1]}")
                ((i++)) ;;
            --config=*) config=(--config "${w#--config=}") ;;
            --log-format) ((i++)) ;;
            -*) ;;
            *) [ -z "$sub" ] && sub="$w" ;;
        esac
    done
    # A path typed as ~/coffer.toml reaches us unexpanded.
    if [ "${#config[@]}" -eq 2 ] && [ "${config[1]:0:2}" = "~/" ]; then
        config[1]="$HOME/${config[1]:2}"
    fi
    if [ "$prev" = "--job" ] || { [ "$sub" = "backup" ] && [ "${cur:0:1}" != "-" ]; }; then
        local jobs
        jobs="$("${COMP_WORDS[0]}" "${config[@]}" complete-jobs 2>/dev/null)"
        COMPREPLY=($(compgen -W "$jobs" -- "$cur"))
        return 0
    fi
    _coffer "$@"
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _coffer_with_jobs -o nosort -o bashdefault -o default coffer
else
    complete -F _coffer_with_jobs -o bashdefault -o default coffer
fi
"#;
