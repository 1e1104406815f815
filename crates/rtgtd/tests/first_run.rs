//! What a first-time user meets: `rtgtd --version` naming the cargo features built in,
//! the packaged /etc/rtgt/rtgt.toml (contrib/debian/rtgt.toml) serving nothing and
//! rtgtd saying in one line how to add a target, and rtgtd's completions up to date.

mod common;

use std::process::Command;

use common::Daemon;

#[test]
fn version_names_the_features_built_in() {
    let o = Command::new(common::rtgtd_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let features = features_built_in();
    assert_eq!(
        common::text(&o.stdout),
        format!(
            "rtgtd {} (features: {features})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn rtgtadm_version_names_the_running_daemons_features() {
    let d = Daemon::start();
    let out = d.adm_ok(&["--version"]);
    let features = features_built_in();
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        out,
        format!(
            "rtgtadm {v}\nrtgtd {v} (features: {features}) on {}\n",
            d.run_dir.join("socket.1").display()
        )
    );
    // And tgtadm's system view shows it.
    let sys = d.adm_ok(&["--op", "show", "--mode", "system"]);
    assert!(
        sys.ends_with(&format!("Version:\n    rtgtd {v} (features: {features})\n")),
        "{sys}"
    );
}

#[test]
fn packaged_configuration_serves_nothing_and_says_how_to_add_a_target() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/debian/rtgt.toml")
        .canonicalize()
        .unwrap();
    let d = Daemon::start_args(&["--config", conf.to_str().unwrap()]);
    let shown = d.adm_ok(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert_eq!(shown.trim(), "", "the packaged file configures no target");
    let log = d.log();
    let hints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no targets configured"))
        .collect();
    assert_eq!(hints.len(), 1, "one hint line expected; log:\n{log}");
    assert!(
        hints[0].contains(&format!("a [[target]] to {}", conf.display()))
            && hints[0].contains("rtgtadm --lld iscsi --op new --mode target --tid 1 -T "),
        "{}",
        hints[0]
    );
}

#[test]
fn no_hint_when_a_target_is_configured() {
    let dir = common::TempDir::new("first-run");
    let conf = dir.join("rtgt.toml");
    std::fs::write(
        &conf,
        "[[target]]\ntid = 1\nname = \"iqn.2026-11.org.example:x\"\n\n\
         [[target.lun]]\nlun = 1\nbstype = \"null\"\nsize = \"1G\"\n",
    )
    .unwrap();
    let d = Daemon::start_args(&["--config", conf.to_str().unwrap()]);
    let shown = d.adm_ok(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(
        shown.contains("Target 1: iqn.2026-11.org.example:x"),
        "{shown}"
    );
    assert!(!d.log().contains("no targets configured"), "{}", d.log());
}

#[test]
fn completions_are_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../completions");
    for (shell, file) in [("bash", "bash/rtgtd"), ("zsh", "zsh/_rtgtd")] {
        let o = Command::new(common::rtgtd_bin())
            .args(["--completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            have == common::text(&o.stdout),
            "completions/{file} is out of date: run `bash scripts/gen-completions.sh` and commit it"
        );
    }
}

/// What `--version` lists for this build (build_info.rs's order).
fn features_built_in() -> String {
    let mut f = Vec::new();
    if cfg!(feature = "rbd") {
        f.push("rbd");
    }
    if cfg!(feature = "glfs") {
        f.push("glfs");
    }
    if f.is_empty() {
        "none".into()
    } else {
        f.join(", ")
    }
}
