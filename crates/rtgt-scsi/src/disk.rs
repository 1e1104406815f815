//! The disk device type (SBC-4): a direct-access block device on a backing store. Its
//! commands are in [`crate::sbc`]; this module is what the core asks of a disk (its
//! commands, INQUIRY and VPD pages, readiness) and its dispatch.

mod opcodes;
mod vpd;

use std::sync::OnceLock;

use crate::cdb::{self, invalid_opcode, Outcome};
use crate::device::{Ctx, DeviceServer};
use crate::inquiry::TYPE_DISK;
use crate::lu::Lu;
use crate::opcodes::{Features, Table};
use crate::params::LuParams;
use crate::sbc;
use crate::sense::{asc, key, Sense};
use crate::spc::{self, op};
use crate::xcopy;
use crate::{LuConfig, ScsiError, ScsiResult};

/// A disk: its state is the common LU's (store, block size, range locks, sanitize).
pub(crate) struct Disk;

impl Disk {
    pub fn table(f: Features) -> &'static Table {
        static THICK: OnceLock<Table> = OnceLock::new();
        static THIN: OnceLock<Table> = OnceLock::new();
        if f.thin {
            THIN.get_or_init(|| Table::build(&[opcodes::DISK, opcodes::THIN]))
        } else {
            THICK.get_or_init(|| Table::build(&[opcodes::DISK]))
        }
    }

    pub fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
        if cfg.block_size != 512 && cfg.block_size != 4096 {
            return Err(ScsiError::BadBlockSize(cfg.block_size));
        }
        let store = cfg
            .store
            .ok_or_else(|| ScsiError::BadParam("a disk needs a backing store".into()))?;
        let size = store.size();
        // A store not ready yet has no size until it is (store_ready.rs).
        if size < u64::from(cfg.block_size) && store.ready() {
            return Err(ScsiError::TooSmall {
                size,
                block_size: cfg.block_size,
            });
        }
        let params = LuParams::default().apply(&cfg.params)?;
        let physical = crate::lu::physical_block_size(&params, store.as_ref(), cfg.block_size);
        crate::lu::check_physical(physical, cfg.block_size).map_err(ScsiError::BadParam)?;
        if params.thin_provisioning && !store.capabilities().unmap {
            return Err(ScsiError::BadParam(format!(
                "thin_provisioning=1: the {} backing store cannot release space",
                store.kind()
            )));
        }
        Ok(Lu::new(
            lun,
            Disk.into(),
            Some(store),
            cfg.block_size,
            cfg.path,
            cfg.bsoflags,
            params,
        ))
    }

    /// Runs a disk command: SBC-4's, and the SPC-4 ones a disk has beyond every LU's.
    pub async fn execute(&self, ctx: &Ctx<'_>, data_out: &mut Vec<u8>) -> Outcome<ScsiResult> {
        let (t, lu, cdb, task) = (ctx.target, ctx.lu, ctx.cdb, ctx.task);
        let not_ready = self.not_ready(lu);
        let nexus = &*ctx.cmd.nexus;
        let data = &data_out[..];
        // SBC-4 4.11.3: while a sanitize operation runs, only these are processed.
        if lu.is_sanitizing()
            && !matches!(cdb[0], op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
        {
            return Err(Sense::of(key::NOT_READY, asc::SANITIZE_IN_PROGRESS).into());
        }
        let medium_cmd = !matches!(
            cdb[0],
            op::INQUIRY
                | op::REPORT_LUNS
                | op::REQUEST_SENSE
                | op::MODE_SENSE_6
                | op::MODE_SENSE_10
                | op::MODE_SELECT_6
                | op::MODE_SELECT_10
                | op::RESERVE_6
                | op::RESERVE_10
                | op::RELEASE_6
                | op::RELEASE_10
                | op::PERSISTENT_RESERVE_IN
                | op::PERSISTENT_RESERVE_OUT
                | op::MAINTENANCE_IN
                | op::START_STOP_UNIT
                | op::PREVENT_ALLOW
                | 0x84
        );
        if medium_cmd {
            if let Some(s) = not_ready {
                return Err(s.into());
            }
            // SBC-4 4.11.4: after a failed sanitize only SANITIZE reaches the medium.
            if cdb[0] != 0x48
                && lu
                    .sanitize_failed
                    .load(std::sync::atomic::Ordering::Acquire)
            {
                return Err(Sense::of(key::MEDIUM_ERROR, asc::SANITIZE_COMMAND_FAILED).into());
            }
        }
        match cdb[0] {
            op::TEST_UNIT_READY => {
                // A backing file grown or shrunk behind our back (SBC-4 4.6).
                t.check_capacity(lu, None);
                if let Some(s) = lu.ua.take(nexus.id) {
                    return Err(s.into());
                }
                Ok(spc::test_unit_ready())
            }
            op::MAINTENANCE_IN if cdb[1] & 0x1f == 0x0a => t.report_target_port_groups(cdb),
            op::MAINTENANCE_IN => ctx.maintenance_in(),
            op::MAINTENANCE_OUT => {
                let len = cdb::u32_at(cdb, 6) as usize;
                t.set_target_port_groups(nexus, cdb, cdb::data_out(data, len)?)
            }
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => spc::mode_sense(lu, cdb),
            op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
                let len = if cdb[0] == op::MODE_SELECT_6 {
                    usize::from(cdb[4])
                } else {
                    usize::from(cdb::u16_at(cdb, 7))
                };
                if spc::mode_select(lu, cdb, cdb::data_out(data, len)?)? {
                    let others = t.nexus_ids().into_iter().filter(|id| *id != nexus.id);
                    lu.ua.establish(others, asc::MODE_PARAMETERS_CHANGED);
                }
                Ok(ScsiResult::good())
            }
            // Under the shared state's lock on a medium other targets export too.
            op::RESERVE_6 | op::RESERVE_10 => crate::shared_pr::reserve(lu, nexus, cdb).await,
            op::RELEASE_6 | op::RELEASE_10 => crate::shared_pr::release(lu, nexus, cdb).await,
            op::PERSISTENT_RESERVE_IN => spc::pr_in(lu, cdb),
            op::PERSISTENT_RESERVE_OUT => t.persistent_reserve_out(lu, nexus, cdb, data).await,
            op::START_STOP_UNIT => sbc::start_stop_cmd(lu, cdb).await,
            op::PREVENT_ALLOW => spc::prevent_allow_cmd(lu, nexus.id, cdb),
            0x25 => {
                t.check_capacity(lu, Some(nexus.id));
                Ok(ScsiResult::with_data(sbc::read_capacity10(lu, cdb)?))
            }
            0x9e => match cdb[1] & 0x1f {
                0x10 => {
                    t.check_capacity(lu, Some(nexus.id));
                    Ok(ScsiResult::with_data(sbc::read_capacity16(lu)))
                }
                _ => Ok(ScsiResult::with_data(sbc::get_lba_status(lu, cdb).await?)),
            },
            0x37 | 0xb7 => sbc::read_defect_data_cmd(cdb),
            0x42 => sbc::unmap_cmd(lu, cdb, data).await,
            0x48 => sbc::sanitize_cmd(lu, cdb, data, task).await,
            0x83 => xcopy::extended_copy(t.directory(), lu, nexus, cdb, data).await,
            0x84 => xcopy::receive_copy_results(lu, nexus, cdb),
            0x9c => sbc::write_atomic_cmd(lu, cdb, data).await,
            0x08 | 0x28 | 0xa8 | 0x88 => sbc::read_cmd(lu, cdb).await,
            0x0a | 0x2a | 0xaa | 0x8a => sbc::write_cmd(lu, cdb, std::mem::take(data_out)).await,
            0x2f | 0xaf | 0x8f => sbc::verify_cmd(lu, cdb, data).await,
            0x2e | 0xae | 0x8e => sbc::write_verify_cmd(lu, cdb, data).await,
            0x8b => sbc::orwrite_cmd(lu, cdb, data).await,
            0x89 => sbc::compare_and_write_cmd(lu, cdb, data).await,
            0x41 | 0x93 => sbc::write_same_cmd(lu, cdb, data).await,
            0x35 | 0x91 => sbc::sync_cache_cmd(lu, cdb).await,
            0x34 | 0x90 => sbc::prefetch_cmd(lu, cdb),
            _ => Err(invalid_opcode()),
        }
    }
}

impl DeviceServer for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn peripheral_type(&self) -> u8 {
        TYPE_DISK
    }

    fn version_descriptor(&self) -> Option<u16> {
        Some(0x04c0) // SBC-3
    }

    fn removable(&self, lu: &Lu) -> bool {
        lu.params.read().removable
    }

    fn alua(&self) -> bool {
        true
    }

    fn vpd_pages(&self) -> &'static [u8] {
        &[0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2]
    }

    fn vpd_page(&self, lu: &Lu, page: u8) -> Option<Vec<u8>> {
        vpd::page(lu, page)
    }

    fn data_out_len(&self, lu: &Lu, cdb: &[u8]) -> Option<u64> {
        sbc::data_out_len(cdb, lu.block_size)
    }

    /// SBC-4 4.11.3: SANITIZE IN PROGRESS while one runs; else the medium's readiness.
    fn not_ready(&self, lu: &Lu) -> Option<Sense> {
        if lu.is_sanitizing() {
            return Some(Sense::of(key::NOT_READY, asc::SANITIZE_IN_PROGRESS));
        }
        lu.medium_not_ready()
    }
}
