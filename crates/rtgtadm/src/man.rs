//! `rtgtadm --man` and `rtgtadm --man-config`: the rtgtadm(8) and rtgt.toml(5) man
//! pages, made from the very texts `rtgtadm --help` and `rtgtadm config --help` print.
//! `scripts/gen-man.sh` writes them to man/; a test checks they are up to date.

use roff::{roman, Roff};

fn page(name: &str, section: &str, summary: &str, blocks: &[(&str, &str)]) -> String {
    let mut r = Roff::new();
    let source = format!("rtgt {}", env!("CARGO_PKG_VERSION"));
    r.control("TH", [name, section, "", source.as_str(), "rtgt"]);
    r.control("SH", ["NAME"]);
    r.text([roman(format!("{name} - {summary}"))]);
    for (title, text) in blocks {
        r.control("SH", [*title]);
        // Usage text is laid out by hand: keep its lines (no fill, no adjust).
        r.control("nf", []);
        for line in text.lines() {
            if line.is_empty() {
                r.control("sp", []);
            } else {
                r.text([roman(line)]);
            }
        }
        r.control("fi", []);
    }
    r.to_roff()
}

/// rtgtadm(8): tgtadm's command line and rtgtadm's own subcommands.
pub fn rtgtadm() -> String {
    let mut sub = String::new();
    sub.push_str(crate::config_cmd::USAGE);
    sub.push('\n');
    sub.push_str(crate::import_tgt::USAGE);
    sub.push('\n');
    sub.push_str(crate::report_cmd::USAGE);
    page(
        "rtgtadm",
        "8",
        "administer a running rtgtd (tgtadm's command line)",
        &[
            ("SYNOPSIS", crate::args::USAGE),
            ("SUBCOMMANDS", &sub),
            ("SEE ALSO", "rtgtd(8), rtgt.toml(5), tgtadm(8)"),
        ],
    )
}

/// rtgt.toml(5): the configuration file.
pub fn config() -> String {
    page(
        "rtgt.toml",
        "5",
        "rtgt's configuration file",
        &[
            ("DESCRIPTION", rtgt_target::config::REFERENCE),
            ("SEE ALSO", "rtgtd(8), rtgtadm(8)"),
        ],
    )
}
