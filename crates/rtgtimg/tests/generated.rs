//! man/rtgtimg.8 and completions/{bash/rtgtimg,zsh/_rtgtimg} are what rtgtimg generates
//! from its clap definition; after a change, `bash scripts/gen-man.sh` and
//! `bash scripts/gen-completions.sh` write them again.

use std::process::Command;

fn generated(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_rtgtimg"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "rtgtimg {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn man_page_and_completions_are_up_to_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (args, file, script) in [
        (&["--man"][..], "man/rtgtimg.8", "gen-man.sh"),
        (
            &["--completions", "bash"],
            "completions/bash/rtgtimg",
            "gen-completions.sh",
        ),
        (
            &["--completions", "zsh"],
            "completions/zsh/_rtgtimg",
            "gen-completions.sh",
        ),
    ] {
        let want = generated(args);
        let have = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        assert!(
            have == want,
            "{file} is out of date: run `bash scripts/{script}` and commit it"
        );
    }
    // The page documents tgtimg's options.
    let man = generated(&["--man"]);
    for opt in [
        "\\-\\-device\\-type",
        "\\-\\-barcode",
        "\\-\\-thin\\-provisioning",
    ] {
        assert!(man.contains(opt), "{opt} missing from rtgtimg.8");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_rtgtimg"))
        .args(["--completions", "nosuchshell"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}
