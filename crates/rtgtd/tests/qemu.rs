//! QEMU's iSCSI block driver against rtgtd: a random 64 MiB image round-trips byte for
//! byte through a 1 GiB file LUN configured with rtgtadm, and `qemu-img bench` reads and
//! writes it.

mod common;

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
    let backing = std::fs::read(&lun_img).unwrap();
    assert_eq!(backing.len() as u64, GIB);
    assert!(
        backing[..64 * MIB] == data[..],
        "LUN backing file differs from the source image"
    );
    assert!(
        backing[64 * MIB..].iter().all(|b| *b == 0),
        "data beyond the image was written"
    );
    drop(backing);

    // And it reads back the same over iSCSI.
    let out = d.dir.join("out.raw");
    let out_s = out.to_str().unwrap();
    qemu_img(&["convert", "-f", "raw", "-O", "raw", &url, out_s]);
    let back = std::fs::read(&out).unwrap();
    assert_eq!(back.len() as u64, GIB, "read-back image has the LUN's size");
    assert!(
        back[..64 * MIB] == data[..],
        "read-back image differs from the source"
    );
    assert!(
        back[64 * MIB..].iter().all(|b| *b == 0),
        "read-back tail is not zero"
    );

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
