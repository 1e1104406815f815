//! The man pages in man/ are what the binaries generate from their own definitions
//! (rtgtd's clap options, rtgtadm's usage texts, the configuration reference); after a
//! change, `bash scripts/gen-man.sh` writes them again.

mod common;

use std::process::Command;

fn generated(bin: std::path::PathBuf, flag: &str) -> String {
    let o = Command::new(&bin).arg(flag).output().unwrap();
    assert!(o.status.success(), "{} {flag}: {o:?}", bin.display());
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn man_pages_are_up_to_date() {
    let man = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man");
    for (bin, flag, file) in [
        (common::rtgtd_bin(), "--man", "rtgtd.8"),
        (common::rtgtadm_bin(), "--man", "rtgtadm.8"),
        (common::rtgtadm_bin(), "--man-config", "rtgt.toml.5"),
    ] {
        let want = generated(bin, flag);
        let have = std::fs::read_to_string(man.join(file)).unwrap_or_default();
        assert!(
            have == want,
            "man/{file} is out of date: run `bash scripts/gen-man.sh` and commit it"
        );
        // Every option rtgtd has is in its page.
        if file == "rtgtd.8" {
            for opt in [
                "save\\-config",
                "stop\\-timeout",
                "metrics",
                "isns",
                "config",
            ] {
                assert!(want.contains(opt), "{opt} missing from rtgtd.8");
            }
        }
    }
    // They render without warnings where man(1) is installed.
    if common::have_tool("man") && std::env::var_os("CI").is_none() {
        for file in ["rtgtd.8", "rtgtadm.8", "rtgt.toml.5"] {
            let o = Command::new("man")
                .args(["--warnings", "-l"])
                .arg(man.join(file))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() && err.trim().is_empty(), "{file}: {err}");
        }
    }
}
