//! QEMU's iSCSI block driver against rtgtd: a random 64 MiB image round-trips byte for
//! byte through a 1 GiB file LUN configured with rtgtadm, and `qemu-img bench` reads and
//! writes it.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{check, run_timeout, Daemon, GIB};

const IQN: &str = "iqn.2026-11.org.example:disk1";
const MIB: usize = 1 << 20;

fn qemu_img(args: &[&str]) -> String {
    let o = run_timeout(
        Command::new("qemu-img").args(args),
        Duration::from_secs(600),
    );
    check(&format!("qemu-img {}", args.join(" ")), &o)
}

/// `path` is 1 GiB: `data` followed by zeros. Read in chunks to keep memory small.
fn assert_file_holds(path: &Path, data: &[u8], what: &str) {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(f.metadata().unwrap().len(), GIB, "{what} is not 1 GiB");
    let chunk = 4 * MIB;
    let zeros = vec![0u8; chunk];
    let mut buf = vec![0u8; chunk];
    for off in (0..GIB as usize).step_by(chunk) {
        f.read_exact(&mut buf).unwrap();
        // `data`'s length is a multiple of the chunk size, so a chunk is all data or all zeros.
        let want = data.get(off..off + chunk).unwrap_or(&zeros);
        if buf != want {
            let i = buf.iter().zip(want).position(|(a, b)| a != b).unwrap();
            panic!(
                "{what} differs at byte {}: {:#04x}, expected {:#04x}",
                off + i,
                buf[i],
                want[i]
            );
        }
    }
}

#[test]
fn qemu_img_convert_round_trips_a_random_image() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    let lun_img = d.add_disk(1, IQN, GIB, &[]);
    let url = d.url(IQN, 1);

    let src = d.dir.join("src.raw");
    let data = common::prng_bytes(0x7274_6774, 64 * MIB);
    std::fs::write(&src, &data).unwrap();
    let src_s = src.to_str().unwrap();

    let info = qemu_img(&["info", "-f", "raw", &url]);
    assert!(
        info.contains("1 GiB") || info.contains(&GIB.to_string()),
        "qemu-img info doesn't show a 1 GiB disk:\n{info}"
    );

    qemu_img(&["convert", "-f", "raw", "-O", "raw", src_s, &url]);

    // What the initiator wrote is what the backing file holds.
    assert_file_holds(&lun_img, &data, "the LUN's backing file");

    // And it reads back the same over iSCSI.
    let out = d.dir.join("out.raw");
    let out_s = out.to_str().unwrap();
    qemu_img(&["convert", "-f", "raw", "-O", "raw", &url, out_s]);
    assert_file_holds(&out, &data, "the image read back over iSCSI");

    // qemu-img compare: the LUN's extra 960 MiB are zero, so the images compare equal.
    let cmp = qemu_img(&["compare", "-f", "raw", "-F", "raw", src_s, &url]);
    assert!(
        cmp.contains("Images are identical"),
        "qemu-img compare:\n{cmp}"
    );
}

#[test]
fn qemu_img_bench_reads_and_writes() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let url = d.url(IQN, 1);

    // Writes (4 KiB and 64 KiB, queue depth 8), then reads of the same.
    for (size, count) in [("4k", "2000"), ("64k", "500")] {
        let w = qemu_img(&[
            "bench", "-f", "raw", "-w", "-c", count, "-d", "8", "-s", size, &url,
        ]);
        assert!(
            w.contains("Run completed"),
            "qemu-img bench -w output:\n{w}"
        );
        let r = qemu_img(&[
            "bench", "-f", "raw", "-c", count, "-d", "8", "-s", size, &url,
        ]);
        assert!(r.contains("Run completed"), "qemu-img bench output:\n{r}");
    }
}
