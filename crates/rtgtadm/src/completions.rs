//! `rtgtadm --completions bash|zsh`: shell completion scripts for tgtadm's command line.
//!
//! rtgtadm parses its arguments by hand (getopt_long's rules, as tgtadm does), so clap
//! never sees them; the completions come from a clap command built from the same
//! option table (`args::options`), with the words `--mode`, `--op`, `--lld`, `--bstype`
//! and `--device-type` take, and the subcommands. For bash, a wrapper completes `--tid`
//! with the target ids of the running rtgtd (asked with `--op show --mode target`, on
//! the -C / --control-socket of the line being completed, for at most a second).
//! `scripts/gen-completions.sh` writes them to completions/; a test checks they are up
//! to date.

use clap::{Arg, ArgAction, Command, ValueHint};
use clap_complete::Shell;

use crate::args;

/// The clap command describing rtgtadm's arguments (for completion only).
fn command() -> Command {
    let mut cmd = Command::new("rtgtadm")
        .about("administer a running rtgtd (tgtadm's command line)")
        .disable_help_flag(true)
        .disable_version_flag(true);
    for (short, long, takes_value) in args::options() {
        let mut arg = Arg::new(long).long(long);
        if let Some(c) = short {
            arg = arg.short(c);
        }
        arg = if takes_value {
            arg.action(ArgAction::Set).value_name("VALUE")
        } else {
            arg.action(ArgAction::SetTrue)
        };
        arg = match long {
            "mode" => arg.value_parser(args::MODES.to_vec()),
            "op" => arg.value_parser(args::OPS.to_vec()),
            "lld" => arg.value_parser(["iscsi"]),
            "bstype" => arg.value_parser(["rdwr", "io_uring", "aio", "mem", "null", "rbd", "ssc"]),
            "bsoflags" => arg.value_parser(["sync", "direct", "sync:direct"]),
            "device-type" => arg.value_parser(["disk", "cd", "tape", "changer"]),
            "blocksize" => arg.value_parser(["512", "4096"]),
            "initiator-address" => arg.value_parser(["ALL"]),
            "backing-store" => arg.value_hint(ValueHint::FilePath),
            "control-socket" => arg.value_hint(ValueHint::FilePath),
            _ if takes_value => arg.value_hint(ValueHint::Other),
            _ => arg,
        };
        cmd = cmd.arg(arg);
    }
    cmd = cmd.arg(
        Arg::new("batch")
            .long("batch")
            .value_name("FILE")
            .value_hint(ValueHint::FilePath),
    );
    let sub = |name: &'static str, about: &'static str| {
        Command::new(name)
            .about(about)
            .disable_help_flag(true)
            .disable_version_flag(true)
    };
    let tid = || Arg::new("tid").long("tid").value_name("N");
    let json = || Arg::new("json").long("json").action(ArgAction::SetTrue);
    let file = |name: &'static str| {
        Arg::new(name)
            .value_name("FILE")
            .value_hint(ValueHint::FilePath)
    };
    cmd = cmd.subcommand(
        sub("config", "the running configuration as a TOML file")
            .subcommand(sub("dump", "write the running configuration").arg(file("file")))
            .subcommand(
                sub("apply", "make a file the running configuration")
                    .arg(file("file"))
                    .arg(
                        Arg::new("dry-run")
                            .long("dry-run")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("force").long("force").action(ArgAction::SetTrue)),
            ),
    );
    cmd = cmd.subcommand(
        sub("import-targets-conf", "convert tgt's targets.conf")
            .arg(file("file"))
            .arg(
                Arg::new("write")
                    .long("write")
                    .value_name("FILE")
                    .value_hint(ValueHint::FilePath),
            )
            .arg(Arg::new("apply").long("apply").action(ArgAction::SetTrue))
            .arg(
                Arg::new("dry-run")
                    .long("dry-run")
                    .action(ArgAction::SetTrue),
            ),
    );
    for w in crate::report_cmd::WORDS {
        let s = match *w {
            "session" => sub(w, "act on a session").subcommand(sub("close", "close a session")),
            _ => sub(w, "what runs").arg(tid()).arg(json()),
        };
        cmd = cmd.subcommand(s);
    }
    cmd
}

/// Completes `--tid` / `-t` from the running rtgtd, then hands over to clap's function.
const BASH_TIDS: &str = r#"
# Target ids of the running rtgtd for --tid / -t: asked on the control socket the line
# names (-C N, --control-port N, --control-socket PATH), for at most a second.
_rtgtadm_tids() {
    local i w daemon=()
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        w=${COMP_WORDS[i]}
        case "$w" in
            -C | --control-port | --control-socket) daemon+=("$w" "${COMP_WORDS[i + 1]}") ;;
        esac
    done
    timeout 1 "${COMP_WORDS[0]}" "${daemon[@]}" --op show --mode target 2>/dev/null |
        sed -n 's/^Target \([0-9][0-9]*\):.*/\1/p'
}
_rtgtadm_with_tids() {
    case "${COMP_WORDS[COMP_CWORD - 1]}" in
        -t | --tid)
            local IFS=$'\n'
            COMPREPLY=($(compgen -W "$(_rtgtadm_tids)" -- "${COMP_WORDS[COMP_CWORD]}"))
            return 0
            ;;
    esac
    _rtgtadm "$@"
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _rtgtadm_with_tids -o nosort -o bashdefault -o default rtgtadm
else
    complete -F _rtgtadm_with_tids -o bashdefault -o default rtgtadm
fi
"#;

/// The completion script for `shell` (bash or zsh), or None for another shell.
pub fn script(shell: &str) -> Option<String> {
    let sh: Shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => return None,
    };
    let mut out = Vec::new();
    clap_complete::generate(sh, &mut command(), "rtgtadm", &mut out);
    let mut text = String::from_utf8(out).expect("clap writes UTF-8");
    if sh == Shell::Bash {
        text.push_str(BASH_TIDS);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_mode_and_op_is_in_the_scripts() {
        for sh in ["bash", "zsh"] {
            let s = super::script(sh).unwrap();
            for w in crate::args::MODES.iter().chain(crate::args::OPS) {
                assert!(s.contains(w), "{sh}: {w} missing");
            }
            for (_, long, _) in crate::args::options() {
                assert!(s.contains(&format!("--{long}")), "{sh}: --{long} missing");
            }
        }
        assert!(super::script("fish").is_none());
    }
}
