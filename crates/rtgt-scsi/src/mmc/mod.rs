//! A CD/DVD drive (MMC-6): a read-only DVD-ROM from an ISO image, or a DVD+R disc burned
//! in place, in a drive whose tray and medium the initiator (START STOP UNIT) and the
//! administrator (`rtgtadm --op update --params media=PATH`) both move.
//!
//! The disc is in [`Drive`], not in the LU's fixed store: a medium change swaps it. An
//! image file's size says what disc it is, as tgt's: empty is a blank DVD+R (what
//! `rtgtimg --op new --device-type cd --type dvd+r` makes), anything else a recorded
//! disc read as a DVD-ROM. A DVD+R closed by CLOSE TRACK/SESSION becomes that DVD-ROM.

mod config;
mod device;
mod disc;
mod events;
mod io;
mod mode;
pub(crate) mod opcodes;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use rtgt_backstore::BackingStore;

use crate::cdb::{invalid_cdb, u16_at, u32_at, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::{ItNexus, ScsiResult};

/// Logical block size of every CD/DVD data medium rtgt emulates (MMC-6 4.2.2: 2048-byte
/// user data sectors).
pub(crate) const BLOCK: u64 = 2048;
/// Capacity of a single-layer 120 mm DVD+R: 2,295,104 sectors (ECMA-349).
pub(crate) const DVD_PLUS_R_BLOCKS: u64 = 2_295_104;

/// Sense codes of MMC-6 (annex F) that SPC's table does not need.
pub(crate) mod code {
    use crate::sense::asc::Code;
    pub const NOT_READY_TO_READY_CHANGE: Code = (0x28, 0x00);
    pub const MEDIUM_NOT_PRESENT_TRAY_CLOSED: Code = (0x3a, 0x01);
    pub const MEDIUM_NOT_PRESENT_TRAY_OPEN: Code = (0x3a, 0x02);
    pub const INVALID_ADDRESS_FOR_WRITE: Code = (0x21, 0x02);
    pub const COMMAND_SEQUENCE_ERROR: Code = (0x2c, 0x00);
    pub const END_OF_USER_AREA: Code = (0x63, 0x00);
}

/// MMC-6 profiles (table 91) rtgt's drive has.
pub(crate) const PROFILE_DVD_ROM: u16 = 0x0010;
pub(crate) const PROFILE_DVD_PLUS_R: u16 = 0x001b;

/// What the disc in the drive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disc {
    /// Recorded and closed: read only.
    Rom,
    /// A DVD+R being written: blank while `recorded == 0` and nothing is reserved.
    PlusR {
        /// RESERVE TRACK's size for track 1, in blocks.
        reserved: Option<u64>,
        /// CLOSE TRACK closed track 1: nothing more is written before the session closes.
        track_closed: bool,
    },
}

/// A disc: its image and what is on it.
pub(crate) struct Medium {
    pub store: Arc<dyn BackingStore>,
    pub path: String,
    pub disc: Disc,
    /// Blocks recorded: the readable capacity, and a DVD+R's next writable address.
    pub recorded: u64,
}

impl Medium {
    /// A disc from its image: empty is a blank DVD+R, anything else a recorded disc
    /// (a partial last block reads as zeroes past the end of the file).
    pub fn from_image(store: Arc<dyn BackingStore>, path: String) -> Self {
        let size = store.size();
        let (disc, recorded) = if size == 0 {
            (
                Disc::PlusR {
                    reserved: None,
                    track_closed: false,
                },
                0,
            )
        } else {
            (Disc::Rom, size.div_ceil(BLOCK))
        };
        Self {
            store,
            path,
            disc,
            recorded,
        }
    }

    pub fn profile(&self) -> u16 {
        match self.disc {
            Disc::Rom => PROFILE_DVD_ROM,
            Disc::PlusR { .. } => PROFILE_DVD_PLUS_R,
        }
    }

    pub fn blank(&self) -> bool {
        matches!(self.disc, Disc::PlusR { reserved: None, .. }) && self.recorded == 0
    }
}

/// GESN media class event codes (MMC-6 table 150).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaEvent {
    EjectRequest = 1,
    NewMedia = 2,
    MediaRemoval = 3,
}

/// The drive's mechanism: tray, disc, and the media events each I_T nexus has yet to
/// hear of through GET EVENT STATUS NOTIFICATION.
#[derive(Default)]
pub(crate) struct DriveState {
    /// The disc, in the drive or on the open tray.
    pub medium: Option<Medium>,
    pub tray_open: bool,
    events: HashMap<u64, VecDeque<MediaEvent>>,
}

impl DriveState {
    /// Whether a disc is in the drive, ready to be read.
    pub fn loaded(&self) -> bool {
        self.medium.is_some() && !self.tray_open
    }

    /// Queues `ev` for every nexus in `ids` (a few per nexus; older ones are kept, as
    /// each tells the host something it must act on).
    pub fn raise(&mut self, ids: impl IntoIterator<Item = u64>, ev: MediaEvent) {
        for id in ids {
            let q = self.events.entry(id).or_default();
            if q.back() != Some(&ev) && q.len() < 4 {
                q.push_back(ev);
            }
        }
    }

    pub fn take_event(&mut self, nexus: u64) -> Option<MediaEvent> {
        let q = self.events.get_mut(&nexus)?;
        let ev = q.pop_front();
        if q.is_empty() {
            self.events.remove(&nexus);
        }
        ev
    }

    pub fn forget(&mut self, nexus: u64) {
        self.events.remove(&nexus);
    }
}

/// The drive of a cd LU.
pub(crate) struct Drive {
    pub state: Mutex<DriveState>,
}

impl Drive {
    pub fn new(medium: Option<Medium>) -> Self {
        Self {
            state: Mutex::new(DriveState {
                medium,
                ..DriveState::default()
            }),
        }
    }
}

pub(crate) fn drive(lu: &Lu) -> &Drive {
    lu.state::<Drive>()
}

/// Why the drive is not ready, if it isn't (MMC-6 F.2): no disc with the tray closed or
/// open, or the LU taken offline by the administrator.
pub(crate) fn not_ready(lu: &Lu) -> Option<Sense> {
    if !lu.params.read().online {
        return Some(Sense::of(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
    }
    let s = drive(lu).state.lock();
    if s.tray_open {
        Some(Sense::of(
            key::NOT_READY,
            code::MEDIUM_NOT_PRESENT_TRAY_OPEN,
        ))
    } else if s.medium.is_none() {
        Some(Sense::of(
            key::NOT_READY,
            code::MEDIUM_NOT_PRESENT_TRAY_CLOSED,
        ))
    } else {
        None
    }
}

/// Commands that work with no disc (MMC-6 4.1.6 and each command's description).
fn needs_medium(opcode: u8) -> bool {
    matches!(
        opcode,
        0x00 | 0x25 | 0x28 | 0xa8 | 0x2a | 0xaa | 0x35 | 0x43 | 0x51 | 0x52 | 0x53 | 0x5b | 0xad
    )
}

/// MMC-6 6.6.2.1 and 6.8.2: GET CONFIGURATION and GET EVENT STATUS NOTIFICATION are
/// processed with a unit attention pending, without reporting or clearing it, so a host
/// can always ask what happened.
pub(crate) fn ua_exempt(opcode: u8) -> bool {
    matches!(opcode, 0x46 | 0x4a)
}

/// Data-Out bytes a CDB asks for, so the transport can compute residuals.
pub(crate) fn data_out_len(cdb: &[u8]) -> Option<u64> {
    if cdb.is_empty() || cdb.len() < crate::cdb::cdb_len(cdb[0]) {
        return None;
    }
    match cdb[0] {
        0x2a => Some(u64::from(u16_at(cdb, 7)) * BLOCK),
        0xaa => Some(u64::from(u32_at(cdb, 6)) * BLOCK),
        0x55 => Some(u64::from(u16_at(cdb, 7))),
        0xb6 => Some(u64::from(u16_at(cdb, 9))),
        _ => None,
    }
}

/// What the target's routing decided a command needs to know about the other I_T
/// nexuses: who else hears of a medium this command loads or removes.
pub(crate) struct Nexuses<'a> {
    pub this: &'a ItNexus,
    pub all: Vec<u64>,
}

/// Runs an MMC command on a cd LU: the checks common to SPC are done by the caller.
pub(crate) async fn execute(
    lu: &Lu,
    nx: Nexuses<'_>,
    cdb: &[u8],
    data: &[u8],
) -> Outcome<ScsiResult> {
    if needs_medium(cdb[0]) {
        if let Some(s) = not_ready(lu) {
            return Err(s.into());
        }
    }
    let out = match cdb[0] {
        0x00 => return Ok(ScsiResult::good()),
        0x1a | 0x5a => mode::sense(lu, cdb)?,
        0x55 => {
            mode::select(
                lu,
                cdb,
                crate::cdb::data_out(data, usize::from(u16_at(cdb, 7)))?,
            )?;
            return Ok(ScsiResult::good());
        }
        0x1b => return events::start_stop(lu, &nx, cdb),
        0x1e => return events::prevent_allow(lu, nx.this.id, cdb),
        0x4a => events::gesn(lu, nx.this.id, cdb)?,
        0xbd => events::mechanism_status(lu, cdb),
        0x46 => config::get_configuration(lu, cdb)?,
        0x25 => disc::read_capacity(lu),
        0x43 => disc::read_toc(lu, cdb)?,
        0x51 => disc::read_disc_information(lu, cdb)?,
        0x52 => disc::read_track_information(lu, cdb)?,
        0xad => disc::read_dvd_structure(lu, cdb)?,
        0x28 | 0xa8 => return io::read(lu, cdb).await,
        0x2a | 0xaa => return io::write(lu, cdb, data).await,
        0x35 => return io::sync_cache(lu).await,
        0x53 => return io::reserve_track(lu, cdb),
        0x5b => return io::close_track_session(lu, cdb).await,
        0x5c => io::read_buffer_capacity(cdb)?,
        0xb6 => return io::set_streaming(cdb, data),
        _ => return Err(crate::cdb::invalid_opcode()),
    };
    let mut out = out;
    if let Some(n) = allocation_length(cdb) {
        out.truncate(n);
    }
    Ok(ScsiResult::with_data(out))
}

/// ALLOCATION LENGTH of the MMC commands that return parameter data.
fn allocation_length(cdb: &[u8]) -> Option<usize> {
    let n = match cdb[0] {
        0x1a => usize::from(cdb[4]),
        0x43 | 0x46 | 0x4a | 0x51 | 0x52 | 0x5a | 0x5c => usize::from(u16_at(cdb, 7)),
        0xad | 0xbd => usize::from(u16_at(cdb, 8)),
        _ => return None,
    };
    Some(n)
}

/// INVALID FIELD IN CDB: shorthand for the many reserved-value checks.
pub(crate) fn bad_cdb() -> crate::cdb::Fail {
    invalid_cdb()
}

pub use device::open_disc_image;
pub(crate) use events::change_medium;

/// What `rtgtadm --op show` says of a drive: its disc's image, size and kind.
pub(crate) struct DiscInfo {
    path: String,
    bytes: u64,
    kind: &'static str,
    loaded: bool,
    read_only: bool,
}

pub(crate) fn info(lu: &Lu) -> Option<DiscInfo> {
    let s = lu.device.state::<Drive>()?.state.lock();
    Some(match &s.medium {
        Some(m) => DiscInfo {
            path: m.path.clone(),
            bytes: m.recorded * BLOCK,
            kind: m.store.kind(),
            loaded: !s.tray_open,
            read_only: m.disc == Disc::Rom,
        },
        None => DiscInfo {
            path: "None".into(),
            bytes: 0,
            kind: "rdwr",
            loaded: false,
            read_only: true,
        },
    })
}

impl DiscInfo {
    pub fn fill(self, i: &mut crate::LuInfo) {
        i.tray_open = !self.loaded && self.path != "None";
        i.backing_store_path = self.path;
        i.size_bytes = self.bytes;
        i.backing_store_type = self.kind.into();
        i.online &= self.loaded;
        i.removable = true;
        i.readonly |= self.read_only;
        i.write_cache = false;
    }
}
