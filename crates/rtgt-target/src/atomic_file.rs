//! Replacing a file so that a crash leaves either the old or the new one (`rtgtadm
//! config dump FILE`, `rtgtd --save-config FILE`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `data`: a temporary file in the same directory (mode 0600: a
/// configuration may hold CHAP secrets), fsync, the old file kept as `path.bak`, rename,
/// fsync of the directory.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let r = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        if path.exists() {
            // The old file becomes the backup by a link made aside and renamed over
            // the previous backup, so FILE.bak always exists once it has.
            let bak = dir.join(format!("{name}.bak"));
            let bak_tmp = dir.join(format!(".{name}.bak.tmp.{}", std::process::id()));
            let _ = std::fs::remove_file(&bak_tmp);
            if std::fs::hard_link(path, &bak_tmp).is_err() {
                std::fs::copy(path, &bak_tmp)?;
            }
            std::fs::rename(&bak_tmp, &bak)?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keeps_a_backup_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("rtgt-aw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("rtgt.toml");
        write_atomically(&f, b"one").unwrap();
        assert!(!dir.join("rtgt.toml.bak").exists());
        write_atomically(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::read(dir.join("rtgt.toml.bak")).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
