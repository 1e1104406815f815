//! LUs on Ceph RBD images, against a real throw-away cluster (scripts/ceph-cluster.sh:
//! one mon, one memstore OSD on loopback), with two rtgtd gateways in front of one
//! image: data written through one reads back through the other and through `rbd
//! export`; both present one LU (VPD 80h / 83h) in their own ALUA target port group;
//! COMPARE AND WRITE racing through both has exactly one winner; a reservation taken
//! through one is enforced by the other; a gateway killed leaves the other serving; a
//! stalled cluster fails commands with NOT READY and they work again when it returns;
//! a resize raises CAPACITY DATA HAS CHANGED; a snapshot is read-only.
//!
//! One test function with one cluster (starting one costs seconds), its steps in order.
#![cfg(feature = "rbd")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::scsi::{
    be32, be64, prout, read10, write10, CHECK_CONDITION, GOOD, RESERVATION_CONFLICT,
};
use common::{free_port, have_qemu_iscsi, prng_bytes, tool_ok, Daemon, TempDir};

const IQN: &str = "iqn.2026-11.org.rtgt:rbd-gw";

/// The throw-away cluster; torn down (its daemons killed, its directory removed) on drop.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Cluster {
    fn up(dir: &Path) -> Cluster {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-cluster.sh");
        let o = Command::new("bash")
            .arg(&script)
            .args(["up", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ceph-cluster.sh up failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("ceph.conf").to_string_lossy().into_owned(),
        }
    }

    fn rbd(&self, args: &[&str]) -> String {
        let mut a = vec!["-c", &self.conf];
        a.extend_from_slice(args);
        tool_ok("rbd", &a)
    }

    /// The OSD's pid, to stall it (SIGSTOP) as an unreachable cluster.
    fn osd_pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("run/osd.0.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-cluster.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .args(["down", self.dir.to_str().unwrap()])
            .status();
    }
}

/// A gateway: rtgtd with portal group `tpgt`, target IQN exporting `image` as LUN 1,
/// told the other gateways' portal groups and states (`peers`).
fn gateway(
    c: &Cluster,
    tpgt: u16,
    image: &str,
    alua: &str,
    peers: &[(u16, &str)],
    lun_opts: &[&str],
) -> Daemon {
    let port = free_port();
    let portal = format!("portal=127.0.0.1:{port},tpgt={tpgt}");
    let d = Daemon::spawn(
        TempDir::new(&format!("rbd-gw{tpgt}")),
        port,
        &["-f", "-C", "1", "--iscsi", &portal],
    );
    d.new_target("1", IQN);
    let bsopts = format!("conf={};timeout=5;cache=off", c.conf);
    let mut lu = vec![
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--bstype",
        "rbd",
        "-b",
        image,
        "--bsopts",
        &bsopts,
    ];
    lu.extend_from_slice(lun_opts);
    d.adm_ok(&lu);
    d.bind_all("1");
    let name = format!("alua_state.{tpgt}");
    d.adm_ok(&[
        "--op", "update", "--mode", "target", "--tid", "1", "--name", &name, "--value", alua,
    ]);
    for (tpg, state) in peers {
        let name = format!("alua_peer.{tpg}");
        d.adm_ok(&[
            "--op", "update", "--mode", "target", "--tid", "1", "--name", &name, "--value", state,
        ]);
    }
    d
}

/// A session through `d` with every pending unit attention consumed.
fn session(d: &Daemon) -> RawConn {
    let mut s = RawConn::session(d.port, IQN);
    let _ = s.exec_after_uas(1, &[0, 0, 0, 0, 0, 0], 0, &[]);
    s
}

fn vpd(s: &mut RawConn, page: u8) -> Vec<u8> {
    let r = s.exec(1, &[0x12, 0x01, page, 0x10, 0x00, 0], 4096, &[]);
    assert_eq!(r.status, GOOD, "VPD {page:#x}");
    r.data
}

/// The logical-unit designators (association 0) of VPD page 83h.
fn lu_designators(page: &[u8]) -> Vec<Vec<u8>> {
    let len = u16::from_be_bytes([page[2], page[3]]) as usize;
    let mut v = Vec::new();
    let mut d = &page[4..4 + len];
    while d.len() >= 4 {
        let n = d[3] as usize;
        if (d[1] >> 4) & 3 == 0 {
            v.push(d[..4 + n].to_vec());
        }
        d = &d[4 + n..];
    }
    v
}

/// (group, state) of each REPORT TARGET PORT GROUPS descriptor.
fn alua_groups(s: &mut RawConn) -> Vec<(u16, u8)> {
    let r = s.exec(1, &[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096, &[]);
    assert_eq!(r.status, GOOD);
    let len = be32(&r.data, 0) as usize;
    let mut v = Vec::new();
    let mut d = &r.data[4..4 + len];
    while d.len() >= 8 {
        let count = d[7] as usize;
        v.push((u16::from_be_bytes([d[2], d[3]]), d[0] & 0x0f));
        d = &d[8 + 4 * count..];
    }
    v
}

/// COMPARE AND WRITE of one 512-byte block.
fn caw(lba: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = 1;
    c
}

fn block(fill: u8) -> Vec<u8> {
    vec![fill; 512]
}

#[test]
fn rbd_gateways_on_a_real_cluster() {
    if !common::have_tool("ceph-mon") || !common::have_tool("rbd") {
        panic!(
            "the rbd tests need ceph-mon, ceph-osd and rbd (scripts/install-deps.sh installs them)"
        );
    }
    let tmp = TempDir::new("rbd-cluster");
    let t0 = Instant::now();
    let c = Cluster::up(&tmp.join("ceph"));
    eprintln!("cluster up in {:.1}s", t0.elapsed().as_secs_f64());
    // Layering only: without the exclusive-lock feature both gateways write at once
    // instead of passing the lock back and forth.
    c.rbd(&[
        "create",
        "--size",
        "64M",
        "--image-feature",
        "layering",
        "rbd/img",
    ]);

    let a = gateway(&c, 1, "rbd/img", "active", &[(2, "nonoptimized")], &[]);
    let mut b = gateway(&c, 2, "rbd/img", "nonoptimized", &[(1, "active")], &[]);
    let mut sa = session(&a);
    let mut sb = session(&b);

    // --- One LU: identical serial and LU designators, each gateway its own port group.
    assert_eq!(vpd(&mut sa, 0x80), vpd(&mut sb, 0x80), "unit serial number");
    let (da, db) = (
        lu_designators(&vpd(&mut sa, 0x83)),
        lu_designators(&vpd(&mut sb, 0x83)),
    );
    assert!(da.len() >= 2, "{da:?}");
    assert_eq!(da, db, "LU designators");
    // Both report every gateway's group: A active/optimized, B active/non-optimized.
    assert_eq!(alua_groups(&mut sa), vec![(1, 0x0), (2, 0x1)], "from A");
    assert_eq!(alua_groups(&mut sb), vec![(1, 0x0), (2, 0x1)], "from B");
    // B goes to standby: B says so itself, and A once told.
    let standby = |d: &Daemon, name: &str| {
        d.adm_ok(&[
            "--op", "update", "--mode", "target", "--tid", "1", "--name", name, "--value",
            "standby",
        ])
    };
    standby(&b, "alua_state.2");
    standby(&a, "alua_peer.2");
    for s in [&mut sa, &mut sb] {
        let (uas, _) = s.exec_after_uas(1, &[0, 0, 0, 0, 0, 0], 0, &[]);
        assert_eq!(uas, vec![(0x2a, 0x06)], "ASYMMETRIC ACCESS STATE CHANGED");
        assert_eq!(alua_groups(s), vec![(1, 0x0), (2, 0x2)]);
    }
    for (d, name) in [(&b, "alua_state.2"), (&a, "alua_peer.2")] {
        d.adm_ok(&[
            "--op",
            "update",
            "--mode",
            "target",
            "--tid",
            "1",
            "--name",
            name,
            "--value",
            "nonoptimized",
        ]);
    }
    let _ = sa.exec_after_uas(1, &[0, 0, 0, 0, 0, 0], 0, &[]);
    let _ = sb.exec_after_uas(1, &[0, 0, 0, 0, 0, 0], 0, &[]);
    // A's own group cannot be a peer on A.
    let o = a.adm(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "alua_peer.1",
        "--value",
        "standby",
    ]);
    assert!(!o.status.success(), "alua_peer of the daemon's own group");

    // --- Data written through A reads back through B and in the image itself.
    let data = prng_bytes(7, 64 * 512);
    assert_eq!(sa.exec(1, &write10(2048, 64), 0, &data).status, GOOD);
    let r = sb.exec(1, &read10(2048, 64), 64 * 512, &[]);
    assert_eq!(r.status, GOOD);
    assert!(r.data == data, "read through B differs from what A wrote");
    let exported = tmp.join("export.img");
    c.rbd(&["export", "rbd/img", exported.to_str().unwrap()]);
    let img = std::fs::read(&exported).unwrap();
    assert!(
        img[2048 * 512..2048 * 512 + data.len()] == data[..],
        "rbd export differs"
    );

    // --- qemu-img convert round trip through the gateways, byte-exact.
    if have_qemu_iscsi() {
        let src = tmp.join("src.img");
        let back = tmp.join("back.img");
        let payload = prng_bytes(11, 8 << 20);
        std::fs::write(&src, &payload).unwrap();
        let url_a = a.url(IQN, 1);
        tool_ok(
            "qemu-img",
            &["convert", "-n", "-O", "raw", src.to_str().unwrap(), &url_a],
        );
        let opts = format!(
            "driver=raw,size={},file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:{},file.target={IQN},file.lun=1",
            payload.len(),
            b.port
        );
        tool_ok(
            "qemu-img",
            &[
                "convert",
                "-O",
                "raw",
                "--image-opts",
                &opts,
                back.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&back).unwrap() == payload,
            "qemu-img round trip differs"
        );
    } else {
        eprintln!("SKIPPED qemu-img round trip: qemu-img's iSCSI driver is missing");
    }

    // --- COMPARE AND WRITE racing through both gateways: exactly one wins, every time.
    for round in 0..10u64 {
        let lba = 4096 + round;
        assert_eq!(
            sa.exec(1, &write10(lba as u32, 1), 0, &block(0xee)).status,
            GOOD
        );
        let mut both_a = block(0xee);
        both_a.extend(block(0xaa));
        let mut both_b = block(0xee);
        both_b.extend(block(0xbb));
        let pa = sa.command_pdu(1, &caw(lba), 0, &both_a);
        let pb = sb.command_pdu(1, &caw(lba), 0, &both_b);
        sa.send(&pa);
        sb.send(&pb);
        let (ra, rb) = (sa.reply_for(pa.itt()), sb.reply_for(pb.itt()));
        let winners: Vec<u8> = [(&ra, 0xaa), (&rb, 0xbb)]
            .iter()
            .filter(|(r, _)| r.status == GOOD)
            .map(|(_, f)| *f)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.status == GOOD { &rb } else { &ra };
        assert_eq!(loser.status, CHECK_CONDITION);
        assert_eq!(loser.sense_code(), (0x0e, 0x1d, 0x00), "MISCOMPARE");
        let r = sb.exec(1, &read10(lba as u32, 1), 512, &[]);
        assert_eq!(
            r.data,
            block(winners[0]),
            "round {round}: the winner's data"
        );
    }
    // A miscompare reports the offset of the first differing byte (INFORMATION).
    let mut cmp = sa.exec(1, &read10(4096, 1), 512, &[]).data;
    cmp[100] ^= 0xff;
    cmp.extend(block(0x11));
    let r = sa.exec(1, &caw(4096), 0, &cmp);
    assert_eq!(r.sense_code(), (0x0e, 0x1d, 0x00));
    assert_eq!(
        be32(&r.sense, 3),
        100,
        "INFORMATION: the first differing byte"
    );

    // --- A reservation taken through A is enforced through B.
    let (cdb, p) = prout(0x00, 0, 0, 0xa1, 0); // REGISTER key A1 through A
    assert_eq!(sa.exec(1, &cdb, 0, &p).status, GOOD);
    let (cdb, p) = prout(0x01, 1, 0xa1, 0, 0); // RESERVE, WRITE EXCLUSIVE
    assert_eq!(sa.exec(1, &cdb, 0, &p).status, GOOD);
    let r = sb.exec(1, &write10(10, 1), 0, &block(0x55));
    assert_eq!(
        r.status, RESERVATION_CONFLICT,
        "write through B under A's reservation"
    );
    assert_eq!(
        sb.exec(1, &read10(10, 1), 512, &[]).status,
        GOOD,
        "reads are allowed"
    );
    // B reports the reservation A made (READ RESERVATION: key A1, type 1).
    let r = sb.exec(1, &[0x5e, 0x01, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(be32(&r.data, 4), 16, "one reservation");
    assert_eq!(be64(&r.data, 8), 0xa1);
    assert_eq!(r.data[21] & 0x0f, 1);
    assert_eq!(
        sa.exec(1, &write10(10, 1), 0, &block(0x55)).status,
        GOOD,
        "the holder writes"
    );
    // Released through A: B writes again.
    let (cdb, p) = prout(0x02, 1, 0xa1, 0, 0);
    assert_eq!(sa.exec(1, &cdb, 0, &p).status, GOOD);
    assert_eq!(sb.exec(1, &write10(10, 1), 0, &block(0x66)).status, GOOD);
    let (cdb, p) = prout(0x00, 0, 0xa1, 0, 0); // unregister
    assert_eq!(sa.exec(1, &cdb, 0, &p).status, GOOD);

    // --- Unit attentions a PERSISTENT RESERVE OUT through A establishes reach the
    // nexuses on B registered under the affected keys (SPC-4 5.13.11).
    let tur = [0u8; 6];
    let pr_ok = |s: &mut RawConn, sa: u8, rtype: u8, key: u64, sa_key: u64| {
        let (cdb, p) = prout(sa, rtype, key, sa_key, 0);
        let r = s.exec(1, &cdb, 0, &p);
        assert_eq!(r.status, GOOD, "PR OUT {sa:#x} {key:#x} {sa_key:#x}: {r:?}");
    };
    pr_ok(&mut sa, 0x00, 0, 0, 0xa1); // A registers A1
    pr_ok(&mut sb, 0x00, 0, 0, 0xb1); // B registers B1
    pr_ok(&mut sb, 0x01, 5, 0xb1, 0); // B reserves: WRITE EXCLUSIVE, REGISTRANTS ONLY
    pr_ok(&mut sa, 0x04, 5, 0xa1, 0xb1); // A preempts B1 (same type)
    let r = sb.exec(1, &tur, 0, &[]);
    assert_eq!(
        r.sense_code(),
        (0x06, 0x2a, 0x05),
        "B: REGISTRATIONS PREEMPTED"
    );
    assert_eq!(sb.exec(1, &tur, 0, &[]).status, GOOD, "once");
    pr_ok(&mut sb, 0x00, 0, 0, 0xb1); // B registers again
    pr_ok(&mut sa, 0x02, 5, 0xa1, 0); // A releases a registrants-only reservation
    let r = sb.exec(1, &tur, 0, &[]);
    assert_eq!(
        r.sense_code(),
        (0x06, 0x2a, 0x04),
        "B: RESERVATIONS RELEASED"
    );
    pr_ok(&mut sa, 0x03, 0, 0xa1, 0); // A clears
    let r = sb.exec(1, &tur, 0, &[]);
    assert_eq!(
        r.sense_code(),
        (0x06, 0x2a, 0x03),
        "B: RESERVATIONS PREEMPTED"
    );
    assert_eq!(sb.exec(1, &tur, 0, &[]).status, GOOD);
    assert_eq!(
        sa.exec(1, &tur, 0, &[]).status,
        GOOD,
        "A's own nexus: nothing"
    );
    // What one reservation change costs (lock, read, metadata write, notify that B
    // acknowledges, unlock), as an initiator sees it.
    let t = Instant::now();
    for _ in 0..10 {
        pr_ok(&mut sa, 0x00, 0, 0, 0xa1);
        pr_ok(&mut sa, 0x00, 0, 0xa1, 0);
    }
    eprintln!(
        "PR OUT with a change, through A with B watching: {:.1} ms each",
        t.elapsed().as_secs_f64() * 1e3 / 20.0
    );
    for l in a
        .log()
        .lines()
        .filter(|l| l.contains("reservation change published"))
        .take(5)
    {
        eprintln!("{l}");
    }

    // --- B stalls longer than the OSD keeps a silent client's watch (osd client watch
    // timeout = 5 s in the test cluster): B re-establishes its watch as soon as it runs
    // again, without waiting for a reservation change of its own, and then enforces
    // what A reserves.
    let pid_b = b.pid() as i32;
    common::stop_process(pid_b);
    std::thread::sleep(Duration::from_secs(9));
    common::continue_process(pid_b);
    let t = Instant::now();
    while !b.log().contains("re-established") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "B never re-established its watch: {}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "B's watch re-established {:.1}s after it resumed",
        t.elapsed().as_secs_f64()
    );
    pr_ok(&mut sa, 0x00, 0, 0, 0xa1);
    pr_ok(&mut sa, 0x01, 1, 0xa1, 0); // WRITE EXCLUSIVE
    let r = sb.exec_after_uas(1, &write10(10, 1), 0, &block(0x55)).1;
    assert_eq!(r.status, RESERVATION_CONFLICT, "B after its watch broke");
    pr_ok(&mut sa, 0x02, 1, 0xa1, 0);
    pr_ok(&mut sa, 0x00, 0, 0xa1, 0);

    // --- A resize of the image: CAPACITY DATA HAS CHANGED, and the new size.
    c.rbd(&["resize", "--size", "96M", "rbd/img"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let uas = loop {
        let (uas, r) = sb.exec_after_uas(1, &[0, 0, 0, 0, 0, 0], 0, &[]);
        assert_eq!(r.status, GOOD);
        if !uas.is_empty() || Instant::now() > deadline {
            break uas;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(uas, vec![(0x2a, 0x09)], "CAPACITY DATA HAS CHANGED");
    let r = sb.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(be32(&r.data, 0) as u64 + 1, (96 << 20) / 512);

    // --- A snapshot is exported read-only.
    let before = sb.exec(1, &read10(2048, 64), 64 * 512, &[]).data;
    c.rbd(&["snap", "create", "rbd/img@s1"]);
    b.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "--bstype",
        "rbd",
        "-b",
        "rbd/img@s1",
        "--bsopts",
        &format!("conf={}", c.conf),
    ]);
    let r = sb.exec(2, &write10(0, 1), 0, &block(1));
    assert_eq!(r.sense_code(), (0x07, 0x27, 0x00), "WRITE PROTECTED");
    let r = sb.exec_after_uas(2, &read10(2048, 64), 64 * 512, &[]).1;
    assert!(r.data == before, "the snapshot holds the data");

    // --- Gateway A dies while a libiscsi client (qemu-img) works through B.
    if have_qemu_iscsi() {
        let src = tmp.join("big.img");
        let payload = prng_bytes(13, 32 << 20);
        std::fs::write(&src, &payload).unwrap();
        let url_b = b.url(IQN, 1);
        let mut child = Command::new("qemu-img")
            .args(["convert", "-n", "-O", "raw", src.to_str().unwrap(), &url_b])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(sa);
        let mut a = a;
        a.kill();
        let st = child.wait().unwrap();
        assert!(st.success(), "qemu-img through B after A died: {st}");
        let r = sb.exec_after_uas(1, &read10(0, 64), 64 * 512, &[]).1;
        assert_eq!(r.status, GOOD);
        assert!(
            r.data == payload[..64 * 512],
            "B serves what qemu-img wrote"
        );
    } else {
        drop(a);
    }
    assert!(b.alive());

    // --- The cluster stalls (the OSD stopped): commands fail with NOT READY, LOGICAL
    // UNIT COMMUNICATION TIME-OUT after the client timeout (5 s) instead of hanging;
    // when it comes back they work again.
    let osd = c.osd_pid();
    common::stop_process(osd);
    let t = Instant::now();
    let r = sb.exec(1, &write10(20, 1), 0, &block(0x77));
    let took = t.elapsed();
    common::continue_process(osd);
    assert_eq!(r.status, CHECK_CONDITION, "write with the cluster stalled");
    assert_eq!(
        r.sense_code(),
        (0x02, 0x08, 0x01),
        "NOT READY, COMMUNICATION TIME-OUT"
    );
    assert!(took < Duration::from_secs(15), "failed after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = sb.exec(1, &write10(20, 1), 0, &block(0x78));
        if r.status == GOOD {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sb.exec(1, &read10(20, 1), 512, &[]).data, block(0x78));
    eprintln!("total {:.1}s", t0.elapsed().as_secs_f64());
}

/// GET LBA STATUS on a thin rbd LU: the image's allocation as librbd reports it.
#[test]
fn rbd_thin_lba_status_and_zeroes() {
    let tmp = TempDir::new("rbd-thin");
    let c = Cluster::up(&tmp.join("ceph"));
    c.rbd(&["create", "--size", "64M", "rbd/thin"]);
    let d = gateway(
        &c,
        1,
        "rbd/thin",
        "active",
        &[],
        &["--params", "thin_provisioning=1"],
    );
    let mut s = session(&d);
    // Data at 8 MiB (object 2 of 4 MiB objects); everything else unwritten.
    let lba: u64 = (8 << 20) / 512;
    assert_eq!(
        s.exec(1, &write10(lba as u32, 8), 0, &vec![0x5a; 4096])
            .status,
        GOOD
    );
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x12;
    cdb[13] = 0xff;
    let r = s.exec(1, &cdb, 255, &[]);
    assert_eq!(r.status, GOOD);
    let descs: Vec<(u64, u32, u8)> = r.data[8..]
        .chunks_exact(16)
        .map(|d| (be64(d, 0), be32(d, 8), d[12] & 0x0f))
        .collect();
    assert_eq!(
        descs[0],
        (0, lba as u32, 1),
        "deallocated up to the data: {descs:?}"
    );
    assert_eq!(descs[1].0, lba);
    assert_eq!(descs[1].2, 0, "mapped where written: {descs:?}");
    // WRITE SAME (16) with UNMAP and a zero block: zeroes read back (rbd_write_zeroes;
    // a discard of 4 KiB inside an object would leave the data there).
    let mut ws = [0u8; 16];
    ws[0] = 0x93;
    ws[1] = 0x08;
    ws[2..10].copy_from_slice(&lba.to_be_bytes());
    ws[13] = 8;
    assert_eq!(s.exec(1, &ws, 0, &block(0)).status, GOOD);
    assert_eq!(
        s.exec(1, &read10(lba as u32, 8), 4096, &[]).data,
        vec![0; 4096]
    );
    // WRITE SAME with a pattern: rbd_writesame.
    ws[1] = 0;
    assert_eq!(s.exec(1, &ws, 0, &block(0x3c)).status, GOOD);
    assert_eq!(
        s.exec(1, &read10(lba as u32, 8), 4096, &[]).data,
        vec![0x3c; 4096]
    );
}

/// A LU on an image whose cluster cannot be reached (its monitor killed) is created
/// anyway, by rtgtadm and from a config file at daemon start: it answers INQUIRY and
/// says NOT READY, LOGICAL UNIT COMMUNICATION FAILURE to media access; when the monitor
/// comes back the LU becomes ready by itself (CAPACITY DATA HAS CHANGED, then the
/// image's size and data). Mistakes that can never work still fail the creation.
#[test]
fn rbd_lu_not_ready_until_the_cluster_answers() {
    let tmp = TempDir::new("rbd-late");
    let c = Cluster::up(&tmp.join("ceph"));
    c.rbd(&[
        "create",
        "--size",
        "32M",
        "--image-feature",
        "layering",
        "rbd/late",
    ]);
    let bsopts = format!("conf={};timeout=3;cache=off", c.conf);
    let port = free_port();
    let portal = format!("portal=127.0.0.1:{port},tpgt=1");
    let a = Daemon::spawn(
        TempDir::new("rbd-late-a"),
        port,
        &["-f", "-C", "1", "--iscsi", &portal],
    );
    a.new_target("1", IQN);
    a.bind_all("1");
    let new_lu = |lun: &str, image: &str, opts: &str| {
        a.adm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            lun,
            "--bstype",
            "rbd",
            "-b",
            image,
            "--bsopts",
            opts,
        ])
    };

    // --- What can never work fails at once, with the reason.
    let o = new_lu("2", "rbd/nosuch", &bsopts);
    let err = common::text(&o.stderr);
    assert!(!o.status.success(), "an image that does not exist");
    assert!(
        err.contains("rbd/nosuch") && err.contains("No such file"),
        "{err}"
    );
    let o = new_lu("2", "rbd/late", "timeout=soon");
    assert!(!o.status.success());
    assert!(
        common::text(&o.stderr).contains("timeout=soon"),
        "{}",
        common::text(&o.stderr)
    );

    // --- The monitor dies: the cluster cannot be reached.
    let mon_pid = |c: &Cluster| -> i32 {
        std::fs::read_to_string(c.dir.join("run/mon.a.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let mon = mon_pid(&c);
    // SAFETY: a signal to the monitor this test started.
    unsafe { libc::kill(mon, libc::SIGKILL) };
    while Path::new(&format!("/proc/{mon}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{mon}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Created through rtgtadm (waiting at most the 3 s client timeout) ...
    let t = Instant::now();
    let o = new_lu("1", "rbd/late", &bsopts);
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // ... and from a config file at daemon start.
    let cfg = tmp.join("late.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[target]]\ntid = 1\nname = \"{IQN}\"\ninitiator_address = [\"ALL\"]\n\n\
             [[target.lun]]\nlun = 1\nbstype = \"rbd\"\nbacking_store = \"rbd/late\"\n\
             bsopts = \"{bsopts}\"\n"
        ),
    )
    .unwrap();
    let port_b = free_port();
    let portal_b = format!("portal=127.0.0.1:{port_b},tpgt=2");
    let b = Daemon::spawn(
        TempDir::new("rbd-late-b"),
        port_b,
        &[
            "-f",
            "-C",
            "1",
            "--iscsi",
            &portal_b,
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut sa = RawConn::session(a.port, IQN);
    let mut sb = RawConn::session(b.port, IQN);
    for s in [&mut sa, &mut sb] {
        let r = s.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
        assert_eq!(r.status, GOOD, "INQUIRY while the cluster is down");
        assert_eq!(r.data[0], 0x00, "a connected disk");
        for cdb in [&[0u8, 0, 0, 0, 0, 0][..], &read10(0, 1)[..]] {
            let (_, r) = s.exec_after_uas(1, cdb, 512, &[]);
            assert_eq!(
                r.sense_code(),
                (0x02, 0x08, 0x00),
                "NOT READY, LOGICAL UNIT COMMUNICATION FAILURE: {cdb:02x?}"
            );
        }
    }
    // Each daemon logs why.
    for d in [&a, &b] {
        let log = d.log();
        assert!(
            log.contains("rbd image rbd/late cannot be opened")
                || log.contains("rbd image rbd/late not open"),
            "{log}"
        );
    }
    // The LU designators are the image's already (they do not change when it opens).
    let before = lu_designators(&vpd(&mut sa, 0x83));
    assert_eq!(before, lu_designators(&vpd(&mut sb, 0x83)));

    // --- The monitor comes back: both LUs become ready by themselves.
    let st = Command::new("ceph-mon")
        .args(["-c", &c.conf, "-i", "a"])
        .status()
        .unwrap();
    assert!(st.success());
    let t = Instant::now();
    for (name, s) in [("rtgtadm", &mut sa), ("config", &mut sb)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let r = loop {
            let r = s.exec(1, &[0, 0, 0, 0, 0, 0], 0, &[]);
            if r.sense_code() != (0x02, 0x08, 0x00) {
                break r;
            }
            assert!(Instant::now() < deadline, "{name}: never became ready");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(
            r.sense_code(),
            (0x06, 0x2a, 0x09),
            "{name}: CAPACITY DATA HAS CHANGED first"
        );
        assert_eq!(s.exec(1, &[0, 0, 0, 0, 0, 0], 0, &[]).status, GOOD);
        let r = s.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
        assert_eq!(be32(&r.data, 0) as u64 + 1, (32 << 20) / 512, "{name}");
    }
    eprintln!(
        "ready {:.1}s after the monitor restarted",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(lu_designators(&vpd(&mut sa, 0x83)), before);
    let data = prng_bytes(21, 16 * 512);
    assert_eq!(sa.exec(1, &write10(100, 16), 0, &data).status, GOOD);
    let r = sb.exec(1, &read10(100, 16), 16 * 512, &[]);
    assert_eq!(r.status, GOOD);
    assert!(
        r.data == data,
        "data written through one reads back through the other"
    );
    // The saved configuration keeps the store's options.
    let file = tmp.join("dump.toml");
    b.adm_ok(&["config", "dump", file.to_str().unwrap()]);
    let dump = std::fs::read_to_string(&file).unwrap();
    assert!(dump.contains(&format!("bsopts = \"{bsopts}\"")), "{dump}");
}
