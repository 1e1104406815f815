//! State common to every logical unit: identity, parameters, mode pages, unit
//! attentions and reservations. Each piece has its own lock so concurrent commands only
//! meet where they must; no lock is held across backing-store I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rtgt_backstore::BackingStore;

use crate::devices::Device;
use crate::mode::ModeState;
use crate::params::{LuParams, PhysicalBlock};
use crate::pr::PrState;
use crate::range::RangeLock;
use crate::reserve::Spc2Reservation;
use crate::ua::UaTable;

/// Removable-medium state (SBC-4 5.25 START STOP UNIT, 5.15 PREVENT ALLOW).
#[derive(Debug, Clone, Default)]
pub(crate) struct MediumState {
    pub present: bool,
    /// The I_T nexuses that sent PREVENT (SBC-4 5.15): removal is prevented while any
    /// has; each one's prevention ends with its nexus.
    pub preventing: std::collections::HashSet<u64>,
}

impl MediumState {
    pub fn prevent_removal(&self) -> bool {
        !self.preventing.is_empty()
    }
}

pub(crate) struct Lu {
    pub lun: u64,
    /// The device type and its own state (a tape drive's cartridge, a cd drive's tray
    /// and disc, a changer's elements): the core asks it through `DeviceServer`.
    pub device: Device,
    /// None for the controller at LUN 0.
    pub store: Option<Arc<dyn BackingStore>>,
    pub block_size: u32,
    /// Physical block size (a power-of-two multiple of `block_size`), for LOGICAL
    /// BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-4 5.20.2). Atomic: `--op update` may
    /// change it while commands run ([`Lu::physical_block_size`] reads it).
    pub physical_block_size: AtomicU32,
    pub path: String,
    pub bsoflags: String,
    pub params: RwLock<LuParams>,
    pub mode: Mutex<ModeState>,
    pub default_mode: ModeState,
    pub medium: Mutex<MediumState>,
    pub ua: UaTable,
    pub spc2: Spc2Reservation,
    pub pr: Mutex<PrState>,
    /// Where the store shares the reservation state with other targets exporting the
    /// same medium (gateways of one RBD image), and the version of it `pr` holds.
    pub shared: Option<Arc<dyn rtgt_backstore::SharedState>>,
    pub pr_version: AtomicU64,
    /// The last reservation event of other targets this LU has taken (shared_pr.rs).
    pub pr_event_seq: AtomicU64,
    /// The store was not ready when the LU was made (store_ready.rs): NOT READY until
    /// it is, then CAPACITY DATA HAS CHANGED.
    pub awaiting_store: AtomicBool,
    /// LBA range locks: read-modify-write and atomic commands hold their blocks
    /// exclusively, every other media access shares them (SBC-4 4.29, 5.3).
    pub range: RangeLock,
    /// A sanitize operation is running (SBC-4 4.11): most commands get NOT READY.
    pub sanitizing: Arc<AtomicBool>,
    /// The last sanitize failed: medium access gets SANITIZE COMMAND FAILED until a
    /// SANITIZE succeeds or EXIT FAILURE MODE (SBC-4 4.11.4).
    pub sanitize_failed: AtomicBool,
    /// The size last reported, to notice a backing file that grew or shrank (SBC-4
    /// 4.6: CAPACITY DATA HAS CHANGED).
    pub reported_size: AtomicU64,
    /// Held EXTENDED COPY results per (I_T nexus, LIST IDENTIFIER) (SPC-4 6.18.2).
    pub copy_results: parking_lot::Mutex<HashMap<(u64, u8), crate::xcopy::CopyStatus>>,
    /// Commands, bytes, errors and latency of this LU (atomics: no lock on the I/O path).
    pub stats: crate::stats::IoCounters,
}

impl Lu {
    pub fn new(
        lun: u64,
        device: Device,
        store: Option<Arc<dyn BackingStore>>,
        block_size: u32,
        path: String,
        bsoflags: String,
        params: LuParams,
    ) -> Self {
        // An O_DSYNC store has no volatile cache to report (SBC-4 6.5.5 WCE), and as
        // the open flag can't change, WCE can't either.
        let sync = store.as_ref().is_some_and(|s| s.capabilities().sync);
        let default_mode = ModeState {
            wce: !sync && params.write_cache,
            wce_fixed: sync,
            d_sense: params.descriptor_sense,
            swp: false,
        };
        let physical_block_size = store
            .as_ref()
            .map(|s| physical_block_size(&params, s.as_ref(), block_size))
            .unwrap_or(block_size);
        let size = store.as_ref().map(|s| s.size()).unwrap_or(0);
        let shared = store.as_ref().and_then(|s| s.shared_state());
        let awaiting_store = store.as_ref().is_some_and(|s| !s.ready());
        Self {
            lun,
            device,
            store,
            block_size,
            physical_block_size: AtomicU32::new(physical_block_size),
            path,
            bsoflags,
            params: RwLock::new(params),
            mode: Mutex::new(default_mode),
            default_mode,
            medium: Mutex::new(MediumState {
                present: true,
                preventing: Default::default(),
            }),
            ua: UaTable::default(),
            spc2: Spc2Reservation::default(),
            pr: Mutex::new(PrState::default()),
            shared,
            pr_version: AtomicU64::new(0),
            pr_event_seq: AtomicU64::new(0),
            awaiting_store: AtomicBool::new(awaiting_store),
            range: RangeLock::default(),
            sanitizing: Arc::new(AtomicBool::new(false)),
            sanitize_failed: AtomicBool::new(false),
            reported_size: AtomicU64::new(size),
            copy_results: parking_lot::Mutex::new(HashMap::new()),
            stats: crate::stats::IoCounters::default(),
        }
    }

    pub fn thin(&self) -> bool {
        self.params.read().thin_provisioning
    }

    pub fn is_sanitizing(&self) -> bool {
        self.sanitizing.load(Ordering::Acquire)
    }

    /// Re-reads the store's size; true when it differs from what was last reported
    /// (the caller raises CAPACITY DATA HAS CHANGED).
    pub fn capacity_changed(&self) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        let now = store.refresh_size().unwrap_or_else(|_| store.size());
        self.reported_size.swap(now, Ordering::AcqRel) != now
    }

    /// Number of logical blocks (READ CAPACITY reports this minus one).
    pub fn num_blocks(&self) -> u64 {
        self.store
            .as_ref()
            .map(|s| s.size() / u64::from(self.block_size))
            .unwrap_or(0)
    }

    /// The physical block size now (a power-of-two multiple of `block_size`).
    pub fn physical_block_size(&self) -> u32 {
        self.physical_block_size.load(Ordering::Relaxed)
    }

    /// Read-only by parameter or because the store was opened read-only.
    pub fn hard_readonly(&self) -> bool {
        self.params.read().readonly
            || self
                .store
                .as_ref()
                .is_some_and(|s| s.capabilities().read_only)
    }

    /// Any write protection, including SWP from the control mode page (SBC-4 4.13).
    pub fn write_protected(&self) -> bool {
        self.hard_readonly() || self.mode.lock().swp
    }

    /// Whether writes must be durable before GOOD: FUA asks, or the write cache is off;
    /// never with `nv_cache=1`, and never needed extra on an O_DSYNC store, where every
    /// write already is.
    pub fn durable_write(&self, fua: bool) -> bool {
        if self.params.read().nv_cache || self.store_sync() {
            return false;
        }
        fua || !self.mode.lock().wce
    }

    /// Whether a flush (SYNCHRONIZE CACHE, START STOP UNIT) must reach the store:
    /// not with `nv_cache=1`, which trusts the store's cache to survive power loss.
    pub fn flush_needed(&self) -> bool {
        !self.params.read().nv_cache
    }

    fn store_sync(&self) -> bool {
        self.store.as_ref().is_some_and(|s| s.capabilities().sync)
    }

    /// NOT READY when the medium is out or the LU is offline (SBC-4 4.8), or its store
    /// is not reachable yet (store_ready.rs).
    pub fn medium_not_ready(&self) -> Option<crate::sense::Sense> {
        use crate::sense::{asc, key, Sense};
        let present = self.medium.lock().present && self.params.read().online;
        (!present)
            .then(|| Sense::of(key::NOT_READY, asc::MEDIUM_NOT_PRESENT))
            .or_else(|| crate::store_ready::not_ready(self))
    }

    pub fn descriptor_sense(&self) -> bool {
        self.mode.lock().d_sense
    }

    /// What a logical unit reset ends: SPC-2 reservations (SPC-2 5.5.1) and the medium
    /// removal lock (SBC-4 5.15). Persistent reservations survive (SPC-4 5.13.4); mode
    /// parameters stay as they are, as nothing is saved and the LU is not power-cycled.
    /// A store with a device server of its own (a device handler) hears of the reset
    /// too, from a task of its own: the caller may be a reactor.
    pub fn reset(&self) {
        self.spc2.clear();
        self.medium.lock().preventing.clear();
        self.device.server().reset(self);
        if let (Some(store), Ok(rt)) = (self.store.clone(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                if let Err(e) = store.task_management(true, &[]).await {
                    tracing::warn!("LOGICAL UNIT RESET at the backing store: {e}");
                }
            });
        }
    }

    /// The device type's own state (for its own module).
    pub fn state<T: 'static>(&self) -> &T {
        self.device
            .state()
            .expect("a device module asks for its own state")
    }
}

/// The physical block size: the `physical_blocksize` / `lbppbe` parameter, else the
/// block device's own (BLKPBSZGET), else 4096 for an O_DIRECT store (smaller writes
/// cost a read-modify-write there, which initiators avoid when told), else the logical
/// block size.
pub(crate) fn physical_block_size(
    params: &LuParams,
    store: &dyn BackingStore,
    block_size: u32,
) -> u32 {
    let caps = store.capabilities();
    let derived = if caps.physical_block_size > 0 {
        caps.physical_block_size
    } else if caps.direct {
        4096
    } else {
        block_size
    };
    match params.physical_block_size {
        Some(PhysicalBlock::Bytes(n)) => n,
        Some(PhysicalBlock::Exponent(e)) => block_size << e,
        None => derived.max(block_size),
    }
}

/// Checks a physical block size against the logical one: a power-of-two multiple of it,
/// at most 2^15 logical blocks (the exponent field is four bits).
pub(crate) fn check_physical(physical: u32, block_size: u32) -> Result<(), String> {
    if physical < block_size
        || !physical.is_multiple_of(block_size)
        || !(physical / block_size).is_power_of_two()
        || (physical / block_size).trailing_zeros() > 15
    {
        return Err(format!(
            "physical block size {physical} must be the logical block size {block_size} times a power of two (at most 2^15)"
        ));
    }
    Ok(())
}
