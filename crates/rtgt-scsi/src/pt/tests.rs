//! The pass-through logic against a fake device (the [`SgIo`] seam): status, sense and
//! residual mapping, what rtgt keeps for itself, and the fault cases.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::sgio::{Completion, Dir, SgIo};
use crate::target_tests::{exec, nexus, sense_of, target_with};
use crate::{status, DeviceType, LuConfig, ScsiCommand, ScsiTarget, TaskAttr, TmFunction};

/// What the next command gets instead of the fake's own answer.
type Inject = Box<dyn FnOnce(&mut [u8], &mut [u8]) -> io::Result<Completion> + Send>;

/// A fake SCSI device: a 1 MiB disk (or a tape) that answers INQUIRY, VPD 83h/B0h,
/// READ CAPACITY (10) and READ (10), and records every CDB it gets.
pub(crate) struct Fake {
    ptype: u8,
    max_transfer: u32,
    pub seen: Mutex<Vec<Vec<u8>>>,
    pub resets: AtomicUsize,
    /// The timeout the last command was given, in ms.
    pub last_timeout: AtomicUsize,
    /// Answers for the next commands, in order.
    inject: Mutex<Vec<Inject>>,
}

static FAKES: OnceLock<Mutex<HashMap<String, Arc<Fake>>>> = OnceLock::new();

pub(super) fn fake(path: &str) -> Option<Arc<dyn SgIo>> {
    let f = FAKES.get()?.lock().get(path)?.clone();
    Some(f)
}

impl Fake {
    fn register(name: &str, ptype: u8, max_transfer: u32) -> Arc<Fake> {
        let f = Arc::new(Fake {
            ptype,
            max_transfer,
            seen: Mutex::new(Vec::new()),
            resets: AtomicUsize::new(0),
            last_timeout: AtomicUsize::new(0),
            inject: Mutex::new(Vec::new()),
        });
        FAKES
            .get_or_init(Default::default)
            .lock()
            .insert(format!("fake:{name}"), f.clone());
        f
    }
    fn then(
        &self,
        f: impl FnOnce(&mut [u8], &mut [u8]) -> io::Result<Completion> + Send + 'static,
    ) {
        self.inject.lock().push(Box::new(f));
    }
    fn opcodes(&self) -> Vec<u8> {
        self.seen.lock().iter().map(|c| c[0]).collect()
    }
}

fn answer(data: &mut [u8], bytes: &[u8]) -> Completion {
    let n = bytes.len().min(data.len());
    data[..n].copy_from_slice(&bytes[..n]);
    Completion {
        resid: (data.len() - n) as i32,
        ..Completion::default()
    }
}

impl SgIo for Fake {
    fn execute(
        &self,
        cdb: &[u8],
        dir: Dir,
        data: &mut [u8],
        sense: &mut [u8],
        timeout_ms: u32,
    ) -> io::Result<Completion> {
        self.seen.lock().push(cdb.to_vec());
        self.last_timeout
            .store(timeout_ms as usize, Ordering::SeqCst);
        let injected = {
            let mut q = self.inject.lock();
            (!q.is_empty()).then(|| q.remove(0))
        };
        if let Some(f) = injected {
            return f(data, sense);
        }
        Ok(match (cdb[0], cdb[1] & 1, cdb[2]) {
            (0x12, 0, _) => {
                let mut d = vec![0u8; 36];
                d[0] = self.ptype;
                d[2] = 6;
                d[4] = 31;
                d[8..16].copy_from_slice(b"FAKEVEND");
                d[16..32].copy_from_slice(b"FAKE DEVICE     ");
                answer(data, &d)
            }
            (0x12, 1, 0x83) => {
                // An NAA LU designator (association 00b) and the device's own relative
                // port (association 01b).
                let mut d = vec![self.ptype, 0x83, 0, 20];
                d.extend_from_slice(&[0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7]);
                d.extend_from_slice(&[0x01, 0x14, 0, 4, 0, 0, 0, 9]);
                answer(data, &d)
            }
            (0x12, 1, 0xb0) => {
                let mut d = vec![0u8; 64];
                d[1] = 0xb0;
                d[3] = 60;
                d[8..12].copy_from_slice(&0xffffu32.to_be_bytes());
                d[12..16].copy_from_slice(&0x8000u32.to_be_bytes());
                answer(data, &d)
            }
            (0x25, ..) => answer(data, &[0, 0, 7, 0xff, 0, 0, 2, 0]),
            (0x28, ..) => {
                let blocks = usize::from(u16::from_be_bytes([cdb[7], cdb[8]]));
                let d: Vec<u8> = (0..blocks * 512).map(|i| (i % 251) as u8).collect();
                answer(data, &d)
            }
            (0x2a, ..) => {
                assert_eq!(dir, Dir::ToDevice);
                Completion::default()
            }
            _ => Completion::default(),
        })
    }
    fn reset(&self) -> io::Result<()> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn max_transfer(&self) -> u32 {
        self.max_transfer
    }
    fn kind(&self) -> &'static str {
        "sg"
    }
}

fn pt_cfg(name: &str, params: &[(&str, &str)]) -> LuConfig {
    LuConfig {
        device_type: DeviceType::PassThrough,
        store: None,
        block_size: 512,
        path: format!("fake:{name}"),
        bsoflags: String::new(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// LUN 1 a memory disk, LUN 2 the fake device passed through.
fn target(name: &str, ptype: u8, params: &[(&str, &str)]) -> (ScsiTarget, Arc<Fake>) {
    let f = Fake::register(name, ptype, 1 << 20);
    let (t, _) = target_with(&[]);
    t.add_lu(2, pt_cfg(name, params)).unwrap();
    f.seen.lock().clear();
    (t, f)
}

fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

async fn exec_len(t: &ScsiTarget, n: u64, lun: u64, cdb: &[u8], edtl: u32) -> crate::ScsiResult {
    let mut c = cdb.to_vec();
    c.resize(16, 0);
    t.execute(ScsiCommand {
        nexus: nexus(n),
        lun,
        cdb: c.into(),
        data_out: Vec::new(),
        expected_data_in: edtl,
        attr: TaskAttr::Simple,
        tag: 7,
    })
    .await
}

#[tokio::test]
async fn inquiry_is_the_devices_with_rtgts_port_designators() {
    let (t, f) = target("inq", 0, &[]);
    let r = exec(&t, 1, 2, &[0x12, 0, 0, 0, 96, 0], &[]).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(&r.data_in[8..16], b"FAKEVEND");
    assert_eq!(r.data_in.len(), 36, "cut to what the device sent");
    let r = exec(&t, 1, 2, &[0x12, 1, 0x83, 1, 0, 0], &[]).await;
    let d = &r.data_in;
    // The device's LU designator stays, its own port designator (rel. port 9) goes.
    assert_eq!(&d[4..16], &[0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7]);
    let mut assocs = Vec::new();
    let mut i = 4;
    while i + 4 <= d.len() {
        assocs.push((
            (d[i + 1] >> 4) & 3,
            d[i + 1] & 0x0f,
            d[i + 4..i + 4 + usize::from(d[i + 3])].to_vec(),
        ));
        i += 4 + usize::from(d[i + 3]);
    }
    assert_eq!(i, d.len());
    assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len() - 4);
    assert!(!assocs.contains(&(1, 4, vec![0, 0, 0, 9])), "{assocs:?}");
    assert!(
        assocs.contains(&(1, 4, vec![0, 0, 0, 1])),
        "rtgt's relative port: {assocs:?}"
    );
    assert!(assocs
        .iter()
        .any(|(a, t, v)| *a == 2 && *t == 8 && v.starts_with(b"iqn.2026-01.test:tgt\0")));
    assert_eq!(f.opcodes(), vec![0x12, 0x12]);
}

#[tokio::test]
async fn report_luns_is_rtgts_and_block_limits_say_the_queue_limit() {
    let f = Fake::register("b0", 0, 64 * 1024);
    let (t, _) = target_with(&[]);
    t.add_lu(2, pt_cfg("b0", &[])).unwrap();
    f.seen.lock().clear();
    let r = exec(&t, 1, 2, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(&r.data_in[..4], &[0, 0, 0, 24], "LUNs 0, 1, 2");
    assert_eq!(r.data_in[8 + 8 + 1], 1);
    assert_eq!(r.data_in[8 + 16 + 1], 2);
    let r = exec_len(&t, 1, 2, &[0x12, 1, 0xb0, 0, 64, 0], 64).await;
    // 64 KiB of 512-byte blocks: 128 (the device said 0xffff); optimal 0x8000 -> 128.
    assert_eq!(&r.data_in[8..12], &128u32.to_be_bytes());
    assert_eq!(&r.data_in[12..16], &128u32.to_be_bytes());
    // A transfer over the queue's limit never reaches the device (SBC-4: INVALID
    // FIELD IN CDB).
    let r = exec_len(&t, 1, 2, &read10(0, 256), 128 * 1024).await;
    assert_eq!(sense_of(&r), (5, 0x24, 0));
    // A garbage expected length (4 GiB) is refused before any buffer is made.
    let r = exec_len(&t, 1, 2, &read10(0, 1), u32::MAX).await;
    assert_eq!(sense_of(&r), (5, 0x24, 0));
    assert_eq!(f.opcodes(), vec![0x12]);
}

#[tokio::test]
async fn sense_status_and_residuals_pass_back_exactly() {
    let (t, f) = target("sense", 0, &[]);
    // A CHECK CONDITION with the device's own sense bytes, vendor bytes included.
    let mut dev_sense = vec![
        0x70, 0, 0x03, 0, 0, 0x10, 0, 10, 0, 0, 0, 0, 0x11, 0x00, 0, 0, 0, 0,
    ];
    dev_sense.extend_from_slice(&[0xde, 0xad]);
    let s2 = dev_sense.clone();
    f.then(move |_, sense| {
        sense[..s2.len()].copy_from_slice(&s2);
        Ok(Completion {
            status: 2,
            driver: 0x08,
            sense_len: s2.len() as u32,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(16, 1), 512).await;
    assert_eq!(r.status, status::CHECK_CONDITION);
    assert_eq!(r.sense, dev_sense);
    // A short transfer: 8 blocks asked, 6 came (resid 1024).
    f.then(|data, _| {
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 7) as u8;
        }
        Ok(Completion {
            resid: 1024,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 8), 4096).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(r.data_in.len(), 3072);
    assert!(r
        .data_in
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 7) as u8));
    // The whole transfer, the device's bytes.
    let r = exec_len(&t, 1, 2, &read10(0, 2), 1024).await;
    assert_eq!(
        r.data_in,
        (0..1024).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    // Other statuses pass as they are: BUSY, TASK SET FULL, RESERVATION CONFLICT.
    for st in [0x08u8, 0x28, 0x18] {
        f.then(move |_, _| {
            Ok(Completion {
                status: st,
                ..Completion::default()
            })
        });
        let r = exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await;
        assert_eq!(r.status, st);
        assert!(r.sense.is_empty());
    }
}

#[tokio::test]
async fn garbage_lengths_are_bounded() {
    let (t, f) = target("garbage", 0, &[]);
    // resid larger than the buffer: nothing transferred; negative: all of it.
    f.then(|_, _| {
        Ok(Completion {
            resid: 1 << 30,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!((r.status, r.data_in.len()), (status::GOOD, 0));
    f.then(|_, _| {
        Ok(Completion {
            resid: -5,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!((r.status, r.data_in.len()), (status::GOOD, 512));
    // A sense length beyond the buffer is cut to the buffer (252 bytes).
    f.then(|_, sense| {
        sense.fill(0x71);
        sense[0] = 0x70;
        Ok(Completion {
            status: 2,
            sense_len: 100_000,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(r.sense.len(), 252);
}

#[tokio::test]
async fn timeout_and_transient_host_errors() {
    let (t, f) = target("timeout", 0, &[]);
    f.then(|_, _| {
        Ok(Completion {
            host: 0x03,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(sense_of(&r), (0x0b, 0x2e, 0x02));
    f.then(|_, _| {
        Ok(Completion {
            driver: 0x06,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(sense_of(&r), (0x0b, 0x2e, 0x02));
    f.then(|_, _| {
        Ok(Completion {
            host: 0x08,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(r.status, status::BUSY);
    f.then(|_, _| {
        Ok(Completion {
            host: 0x07,
            ..Completion::default()
        })
    });
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(sense_of(&r), (0x04, 0x08, 0x00));
    f.then(|_, _| Err(io::Error::from_raw_os_error(libc::EINVAL)));
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(sense_of(&r), (0x05, 0x24, 0x00));
    // None of them took the device away.
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(r.status, status::GOOD);
}

async fn gone_after(
    inject: impl FnOnce(&mut [u8], &mut [u8]) -> io::Result<Completion> + Send + 'static,
    name: &str,
) {
    let (t, f) = target(name, 0, &[]);
    f.then(inject);
    let r = exec_len(&t, 1, 2, &read10(0, 1), 512).await;
    assert_eq!(sense_of(&r), (0x02, 0x08, 0x00));
    let n = f.seen.lock().len();
    // Every later command: the same, without troubling the device again.
    let r = exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(sense_of(&r), (0x02, 0x08, 0x00));
    let r = exec_len(&t, 2, 2, &[0x03, 0, 0, 0, 18, 0], 18).await;
    assert_eq!(
        (r.status, r.data_in[2] & 0x0f, r.data_in[12]),
        (0, 0x02, 0x08)
    );
    // INQUIRY: qualifier 001b, the device's type and identity (SPC-4 6.6.2).
    let r = exec_len(&t, 1, 2, &[0x12, 0, 0, 0, 96, 0], 96).await;
    assert_eq!(r.data_in[0], 0x20);
    assert_eq!(&r.data_in[8..16], b"FAKEVEND");
    assert_eq!(f.seen.lock().len(), n);
    // The other LUN serves on.
    let r = exec(&t, 1, 1, &read10(0, 1), &[]).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(r.data_in.len(), 512);
    assert!(!t.lu_info().iter().find(|l| l.lun == 2).unwrap().online);
}

#[tokio::test]
async fn a_vanished_device_enodev() {
    gone_after(
        |_, _| Err(io::Error::from_raw_os_error(libc::ENODEV)),
        "enodev",
    )
    .await;
}

#[tokio::test]
async fn a_vanished_device_enxio() {
    gone_after(
        |_, _| Err(io::Error::from_raw_os_error(libc::ENXIO)),
        "enxio",
    )
    .await;
}

#[tokio::test]
async fn a_vanished_device_did_no_connect() {
    gone_after(
        |_, _| {
            Ok(Completion {
                host: 0x01,
                ..Completion::default()
            })
        },
        "noconnect",
    )
    .await;
}

#[tokio::test]
async fn a_vanished_device_lun_not_supported() {
    // An iSCSI-attached device whose target deleted its LU: the device answers
    // ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (fixed sense, then descriptor).
    for (fmt, name) in [(0x70u8, "lunfixed"), (0x72, "lundesc")] {
        gone_after(
            move |_, sense| {
                let s: Vec<u8> = if fmt == 0x70 {
                    let mut s = vec![0u8; 18];
                    s[0] = 0x70;
                    s[2] = 0x05;
                    s[7] = 10;
                    s[12] = 0x25;
                    s
                } else {
                    vec![0x72, 0x05, 0x25, 0x00, 0, 0, 0, 0]
                };
                sense[..s.len()].copy_from_slice(&s);
                Ok(Completion {
                    status: status::CHECK_CONDITION,
                    sense_len: s.len() as u32,
                    ..Completion::default()
                })
            },
            name,
        )
        .await;
    }
}

/// Long commands at pass-through devices (a tape rewinding, say) hold at most their
/// share of the I/O pool: with more of them in flight than the pool has threads, other
/// work on the pool still runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_commands_leave_the_pool_to_others() {
    let threads = rtgt_backstore::pool::pool().threads();
    let share = super::pool_share_limit();
    assert!(share < threads, "{share} of {threads}");
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let started = Arc::new(AtomicUsize::new(0));
    // One tape per command (a tape takes one command at a time), as many as the pool
    // has threads.
    let mut tapes = Vec::new();
    for i in 0..threads {
        let (t, f) = target(&format!("long{i}"), 1, &[]);
        let (g, s) = (gate.clone(), started.clone());
        f.then(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
            let (m, c) = &*g;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
            Ok(Completion::default())
        });
        tapes.push(tokio::spawn(async move {
            // REWIND
            exec_len(&t, 1, 2, &[0x01, 0, 0, 0, 0, 0], 0).await.status
        }));
    }
    let t0 = std::time::Instant::now();
    while started.load(Ordering::SeqCst) < share && t0.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        share,
        "no more than the share reached the pool"
    );
    // Another backing store's I/O still gets a thread.
    let other = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        rtgt_backstore::pool::run(|| Ok(42)),
    )
    .await;
    let open_gate = || {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    };
    open_gate();
    assert_eq!(other.expect("the pool was starved").unwrap(), 42);
    for h in tapes {
        assert_eq!(h.await.unwrap(), status::GOOD);
    }
    assert_eq!(started.load(Ordering::SeqCst), threads);
}

#[tokio::test]
async fn reservations_are_emulated_per_nexus() {
    let (t, f) = target("resv", 1, &[]);
    let r = exec_len(&t, 1, 2, &[0x16, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(r.status, status::GOOD);
    // The second initiator is refused while the first holds it (SPC-2 5.5.1)...
    let r = exec_len(&t, 2, 2, &[0x08, 0, 0, 0, 1, 0], 512).await;
    assert_eq!(r.status, status::RESERVATION_CONFLICT);
    let r = exec_len(&t, 2, 2, &[0x16, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(r.status, status::RESERVATION_CONFLICT);
    // ...and the holder goes on.
    let r = exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(r.status, status::GOOD);
    let r = exec_len(&t, 1, 2, &[0x17, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(r.status, status::GOOD);
    let r = exec_len(&t, 2, 2, &[0x16, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(r.status, status::GOOD);
    // The device saw neither RESERVE nor RELEASE, only the TEST UNIT READY.
    assert_eq!(f.opcodes(), vec![0x00]);
    // Persistent reservations too: PR IN READ KEYS answered by rtgt (for the holder).
    let r = exec_len(&t, 2, 2, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], 8).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(f.opcodes(), vec![0x00]);
}

#[tokio::test]
async fn reservations_passthrough_reach_the_device() {
    let (t, f) = target("resv-pt", 1, &[("reservations", "passthrough")]);
    for n in [1, 2] {
        let r = exec_len(&t, n, 2, &[0x16, 0, 0, 0, 0, 0], 0).await;
        assert_eq!(r.status, status::GOOD);
    }
    assert_eq!(f.opcodes(), vec![0x16, 0x16]);
    assert!(t.lu_info().iter().any(|l| l
        .params
        .contains(&("reservations".into(), "passthrough".into()))));
}

#[tokio::test]
async fn lun_reset_resets_the_device_and_rtgt_reports_its_own_attention() {
    let (t, f) = target("reset", 1, &[]);
    let _ = exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await;
    let _ = exec_len(&t, 2, 2, &[0, 0, 0, 0, 0, 0], 0).await;
    let out = t.task_management(&nexus(1), TmFunction::LogicalUnitReset, 2, None);
    assert_eq!(out.response, crate::TmResponse::FunctionComplete);
    for _ in 0..100 {
        if f.resets.load(Ordering::SeqCst) == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(f.resets.load(Ordering::SeqCst), 1);
    // REQUEST SENSE gives rtgt's BUS DEVICE RESET FUNCTION OCCURRED, without the device.
    f.seen.lock().clear();
    let r = exec_len(&t, 2, 2, &[0x03, 0, 0, 0, 18, 0], 18).await;
    assert_eq!(
        (r.data_in[2] & 0x0f, r.data_in[12], r.data_in[13]),
        (6, 0x29, 0x03)
    );
    assert!(f.opcodes().is_empty());
    // Then REQUEST SENSE is the device's own.
    let r = exec_len(&t, 2, 2, &[0x03, 0, 0, 0, 18, 0], 18).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(f.opcodes(), vec![0x03]);
    // Another command of nexus 1 meets the unit attention before the device.
    let r = exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(sense_of(&r), (6, 0x29, 0x03));
}

#[tokio::test]
async fn tape_defaults_and_bad_parameters() {
    let (t, _f) = target("tape-defaults", 1, &[]);
    let info = t.lu_info().into_iter().find(|l| l.lun == 2).unwrap();
    assert_eq!(info.device_type, "pt");
    assert_eq!(info.backing_store_type, "sg");
    // Defaults (queue depth 1, 14000 s for a tape) are not parameters anyone gave.
    assert!(!info
        .params
        .iter()
        .any(|(k, _)| k == "queue_depth" || k == "timeout"));
    let pt = |lu: &crate::lu::Lu| {
        lu.device.state::<super::PassThrough>().map(|p| {
            (
                p.queue.available_permits(),
                p.timeout_ms.load(Ordering::SeqCst),
            )
        })
    };
    let lu = t.all_lus().into_iter().find(|l| l.lun == 2).unwrap();
    assert_eq!(pt(&lu), Some((1, 14_000_000)));
    let given = [
        ("queue_depth", "4"),
        ("timeout", "5"),
        ("reservations", "passthrough"),
    ];
    let (t2, _) = target("tape-given", 1, &given);
    let info = t2.lu_info().into_iter().find(|l| l.lun == 2).unwrap();
    let canon = super::canonical_params(
        &given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(info.params, canon, "show and a configuration agree");
    Fake::register("bad", 0, 1 << 20);
    let e = t
        .add_lu(3, pt_cfg("bad", &[("reservations", "maybe")]))
        .unwrap_err();
    assert!(e.to_string().contains("emulate or passthrough"), "{e}");
    let e = t
        .add_lu(3, pt_cfg("bad", &[("queue_depth", "0")]))
        .unwrap_err();
    assert!(e.to_string().contains("queue_depth"), "{e}");
    let mut cfg = pt_cfg("x", &[("bstype", "sg")]);
    cfg.path = "/dev/null".into();
    let e = t.add_lu(3, cfg).unwrap_err();
    assert!(e.to_string().contains("not an sg node"), "{e}");
}

#[tokio::test]
async fn garbage_vpd_83_is_cut_not_trusted() {
    let (t, f) = target("vpd-garbage", 0, &[]);
    // A page that claims 200 bytes, whose second descriptor runs past what came.
    f.then(|data, _| {
        let mut d = vec![0, 0x83, 0, 200];
        d.extend_from_slice(&[0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7]);
        d.extend_from_slice(&[0x01, 0x03, 0, 60, 0x60]);
        Ok(answer(data, &d))
    });
    let r = exec_len(&t, 1, 2, &[0x12, 1, 0x83, 0, 255, 0], 255).await;
    assert_eq!(r.status, status::GOOD);
    let d = &r.data_in;
    assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len() - 4);
    assert_eq!(&d[4..16], &[0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7]);
    // Then rtgt's designators only (association 01b and 10b).
    assert_eq!((d[17] >> 4) & 3, 1);
    // Three bytes of page: passed on as they are.
    f.then(|data, _| Ok(answer(data, &[0, 0x83, 0])));
    let r = exec_len(&t, 1, 2, &[0x12, 1, 0x83, 0, 255, 0], 255).await;
    assert_eq!(r.data_in, vec![0, 0x83, 0]);
}

#[tokio::test]
async fn inquiry_data_is_cut_to_its_own_length_when_the_residual_says_nothing() {
    let (t, f) = target("no-resid", 0, &[]);
    // A device that reports no residual: the whole 255 bytes "transferred".
    f.then(|data, _| {
        let mut d = vec![0u8; 36];
        d[2] = 6;
        d[4] = 31;
        data[..36].copy_from_slice(&d);
        Ok(Completion::default())
    });
    let r = exec_len(&t, 1, 2, &[0x12, 0, 0, 0, 255, 0], 255).await;
    assert_eq!(r.data_in.len(), 36);
    f.then(|data, _| {
        data[..8].copy_from_slice(&[0, 0xb0, 0, 0x3c, 0, 0, 0, 0]);
        Ok(Completion::default())
    });
    let r = exec_len(&t, 1, 2, &[0x12, 1, 0xb0, 0, 255, 0], 255).await;
    assert_eq!(r.data_in.len(), 64);
    // The allocation length still cuts a longer page (the core's truncation).
    let r = exec_len(&t, 1, 2, &[0x12, 0, 0, 0, 20, 0], 20).await;
    assert_eq!(r.data_in.len(), 20);
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `--op update`: queue_depth= and timeout= change on a running LU, reservations= is
/// refused, a bad value is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_queue_depth_and_timeout() {
    let (t, f) = target("upd", 0, &[("queue_depth", "1")]);
    let t = Arc::new(t);
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let block = |f: &Fake| {
        let (g, s) = (gate.clone(), started.clone());
        f.then(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
            let (m, c) = &*g;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
            Ok(Completion::default())
        });
    };
    let reached = |n: usize| {
        let s = started.clone();
        async move {
            let t0 = std::time::Instant::now();
            while s.load(Ordering::SeqCst) < n && t0.elapsed().as_secs() < 2 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s.load(Ordering::SeqCst)
        }
    };
    let spawn = |t: &Arc<ScsiTarget>| {
        let t = t.clone();
        tokio::spawn(async move { exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await.status })
    };
    for _ in 0..3 {
        block(&f);
    }
    let mut running: Vec<_> = (0..3).map(|_| spawn(&t)).collect();
    assert_eq!(
        reached(1).await,
        1,
        "queue_depth=1: one command at the device"
    );
    t.update_lu(2, &kv(&[("queue_depth", "3"), ("timeout", "60")]))
        .unwrap();
    assert_eq!(reached(3).await, 3, "queue_depth=3: the other two go on");
    // Lowered to 1 while three are in flight: it holds once they have finished.
    t.update_lu(2, &kv(&[("queue_depth", "1")])).unwrap();
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for h in running.drain(..) {
        assert_eq!(h.await.unwrap(), status::GOOD);
    }
    *gate.0.lock().unwrap() = false;
    started.store(0, Ordering::SeqCst);
    for _ in 0..2 {
        block(&f);
    }
    running.extend((0..2).map(|_| spawn(&t)));
    assert_eq!(reached(2).await, 1, "queue_depth=1 again");
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for h in running {
        assert_eq!(h.await.unwrap(), status::GOOD);
    }
    let info = t.lu_info().into_iter().find(|l| l.lun == 2).unwrap();
    assert!(info.params.contains(&("queue_depth".into(), "1".into())));
    assert!(info.params.contains(&("timeout".into(), "60".into())));
    // Refusals: the mode of reservations, and bad values (nothing changes).
    let e = t
        .update_lu(2, &kv(&[("reservations", "passthrough")]))
        .unwrap_err();
    assert!(e.to_string().contains("can't change on a running"), "{e}");
    let e = t.update_lu(2, &kv(&[("queue_depth", "0")])).unwrap_err();
    assert!(e.to_string().contains("queue_depth=0"), "{e}");
    let e = t
        .update_lu(2, &kv(&[("timeout", "30"), ("colour", "red")]))
        .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let info = t.lu_info().into_iter().find(|l| l.lun == 2).unwrap();
    assert!(info.params.contains(&("timeout".into(), "60".into())));
    // The command timeout given to the device is the new one.
    let r = exec_len(&t, 1, 2, &[0, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(r.status, status::GOOD);
    assert_eq!(f.last_timeout.load(Ordering::SeqCst), 60_000);
}
