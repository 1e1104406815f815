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

/// `len` bytes of `path` from `off`.
fn file_range(path: &Path, off: usize, len: usize) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.seek(SeekFrom::Start(off as u64)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// With wake-up coalescing on (`--coalesce-us`), reactors nap between bursts: parallel
/// out-of-order writes and 4 KiB writes at queue depth 32 still land byte for byte, and
/// read back the same.
#[test]
fn data_round_trips_with_wake_up_coalescing() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start_args(&["--coalesce-us", "500"]);
    let lun_img = d.add_disk(1, IQN, GIB, &[]);
    let url = d.url(IQN, 1);
    let src = d.dir.join("src.raw");
    let data = common::prng_bytes(0x636f_616c, 16 * MIB);
    std::fs::write(&src, &data).unwrap();
    let src_s = src.to_str().unwrap();
    // -W -m 16: out-of-order writes from 16 coroutines, so the reactor sees bursts.
    qemu_img(&[
        "convert", "-W", "-m", "16", "-f", "raw", "-O", "raw", src_s, &url,
    ]);
    // 20000 sequential 4 KiB writes of 0x5a from 32 MiB on, 32 in flight.
    const WRITES: usize = 20000;
    let w = qemu_img(&[
        "bench",
        "-f",
        "raw",
        "-w",
        "-d",
        "32",
        "-s",
        "4K",
        "-c",
        "20000",
        "-o",
        "33554432",
        "--pattern",
        "0x5a",
        &url,
    ]);
    assert!(
        w.contains("Run completed"),
        "qemu-img bench -w output:\n{w}"
    );
    let check_image = |path: &Path, what: &str| {
        assert!(
            file_range(path, 0, 16 * MIB) == data,
            "{what}: the converted data differs"
        );
        let between = file_range(path, 16 * MIB, 16 * MIB);
        assert!(
            between.iter().all(|&b| b == 0),
            "{what}: 16-32 MiB is not zero"
        );
        let written = file_range(path, 32 * MIB, WRITES * 4096);
        assert!(
            written.iter().all(|&b| b == 0x5a),
            "{what}: a 4 KiB write is missing"
        );
    };
    check_image(&lun_img, "the backing file");
    let out = d.dir.join("out.raw");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &url,
        out.to_str().unwrap(),
    ]);
    check_image(&out, "the image read back over iSCSI");
}
