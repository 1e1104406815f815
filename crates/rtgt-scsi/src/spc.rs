//! Primary commands every logical unit answers (SPC-4): REQUEST SENSE, REPORT LUNS,
//! MAINTENANCE IN reports, mode parameters, and the two reservation models.

use crate::cdb::{invalid_cdb, u16_at, u32_at, Fail, Outcome};
use crate::lu::Lu;
use crate::mode::{self, Medium};
use crate::pr::{Access, PortPair, PortResolver, PrEffects};
use crate::reserve::ReserveResult;
use crate::sense::{asc, key, Sense};
use crate::{lun_to_sam, opcodes, ItNexus, ScsiResult};

/// SPC-4 opcodes handled here.
pub(crate) mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW: u8 = 0x1e;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const MAINTENANCE_OUT: u8 = 0xa4;
}

/// Commands that neither report nor clear a unit attention (SAM-5 5.14).
pub(crate) fn ua_exempt(opcode: u8) -> bool {
    matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
}

/// Commands allowed while another I_T nexus holds an SPC-2 reservation (SPC-2 5.5.1).
pub(crate) fn spc2_allowed(opcode: u8) -> bool {
    matches!(
        opcode,
        op::INQUIRY
            | op::REPORT_LUNS
            | op::REQUEST_SENSE
            | op::RELEASE_6
            | op::RELEASE_10
            | op::MAINTENANCE_IN
    )
}

/// How a command meets a persistent reservation (SPC-4 table 57, SBC-4 table 13).
pub(crate) fn pr_access(cdb: &[u8]) -> Access {
    match cdb[0] {
        op::INQUIRY
        | op::REPORT_LUNS
        | op::REQUEST_SENSE
        | op::TEST_UNIT_READY
        | op::PERSISTENT_RESERVE_IN
        | op::PERSISTENT_RESERVE_OUT
        | op::MAINTENANCE_IN
        | 0x25 => Access::Allowed,
        // READ CAPACITY (16) is allowed; GET LBA STATUS reads.
        0x9e if cdb[1] & 0x1f == 0x10 => Access::Allowed,
        // PREVENT ALLOW with PREVENT zero, and START STOP UNIT with START set, are
        // allowed (SBC-4 table 13).
        op::PREVENT_ALLOW if cdb[4] & 0x03 == 0 => Access::Allowed,
        op::START_STOP_UNIT if cdb[4] & 0x01 != 0 => Access::Allowed,
        0x08
        | 0x28
        | 0xa8
        | 0x88
        | 0x2f
        | 0xaf
        | 0x8f
        | 0x34
        | 0x90
        | 0x9e
        | op::MODE_SENSE_6
        | op::MODE_SENSE_10
        // READ BUFFER, RECEIVE DIAGNOSTIC RESULTS, RECEIVE COPY RESULTS, LOG SENSE, READ
        // ATTRIBUTE and READ DEFECT DATA read too (SPC-4 table 57, SBC-4 table 13):
        // REPORT CAPABILITIES' ALLOW COMMANDS 011b promises they pass Write Exclusive.
        | 0x3c
        | 0x1c
        | 0x84
        | 0x4d
        | 0x8c
        | 0x37
        | 0xb7 => Access::Read,
        _ => Access::Write,
    }
}

/// TEST UNIT READY (SPC-4 6.37): readiness is checked before dispatch.
pub(crate) fn test_unit_ready() -> ScsiResult {
    ScsiResult::good()
}

/// REQUEST SENSE (SPC-4 6.39): reports (and clears) a pending unit attention, or the
/// medium state, or NO SENSE; DESC selects the format.
pub(crate) fn request_sense(
    lu: Option<&Lu>,
    nexus: &ItNexus,
    cdb: &[u8],
    not_ready: Option<Sense>,
) -> Outcome<ScsiResult> {
    if cdb[1] & 0xfe != 0 {
        return Err(invalid_cdb());
    }
    let desc = cdb[1] & 0x01 != 0;
    let sense = match lu {
        None => Sense::illegal(asc::LOGICAL_UNIT_NOT_SUPPORTED),
        Some(lu) => lu
            .ua
            .take(nexus.id)
            .or(not_ready)
            .unwrap_or(Sense::of(key::NO_SENSE, asc::NO_ADDITIONAL_SENSE)),
    };
    Ok(ScsiResult::with_data(sense.encode(desc)))
}

/// REPORT LUNS (SPC-4 6.33).
pub(crate) fn report_luns(luns: &[u64], cdb: &[u8]) -> Outcome<ScsiResult> {
    // ALLOCATION LENGTH below 16 is an error (SPC-4 6.33).
    if u32_at(cdb, 6) < 16 {
        return Err(invalid_cdb());
    }
    let list: &[u64] = match cdb[2] {
        // All LUNs, or all LUNs including well-known ones (there are none).
        0x00 | 0x02 => luns,
        // Well-known LUNs only.
        0x01 => &[],
        _ => return Err(invalid_cdb()),
    };
    let mut b = ((list.len() * 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(&[0; 4]);
    for l in list {
        b.extend_from_slice(&lun_to_sam(*l));
    }
    Ok(ScsiResult::with_data(b))
}

/// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK
/// MANAGEMENT FUNCTIONS.
pub(crate) fn maintenance_in(table: &opcodes::Table, cdb: &[u8]) -> Outcome<ScsiResult> {
    match cdb[1] & 0x1f {
        0x0c => Ok(ScsiResult::with_data(opcodes::report(table, cdb)?)),
        0x0d => Ok(ScsiResult::with_data(opcodes::report_tmf(cdb))),
        _ => Err(crate::cdb::invalid_cdb_at(1, Some(4))),
    }
}

/// MODE SENSE (6) / (10).
pub(crate) fn mode_sense(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let m = Medium {
        num_blocks: lu.num_blocks(),
        block_size: lu.block_size,
        write_protected: lu.write_protected(),
    };
    let cur = *lu.mode.lock();
    Ok(ScsiResult::with_data(mode::sense(
        cdb,
        &cur,
        &lu.default_mode,
        &m,
    )?))
}

/// MODE SELECT (6) / (10). Returns whether anything changed, so the caller can tell
/// the other I_T nexuses (SPC-4 7.5.3: MODE PARAMETERS CHANGED).
pub(crate) fn mode_select(lu: &Lu, cdb: &[u8], param: &[u8]) -> Outcome<bool> {
    let mut cur = lu.mode.lock();
    let next = mode::select(cdb, param, &cur, lu.block_size)?;
    let changed = next != *cur;
    *cur = next;
    Ok(changed)
}

/// RESERVE (6) / (10) (SPC-2 7.21, 7.22): only whole-LU reservations.
pub(crate) fn reserve(lu: &Lu, nexus: &ItNexus, cdb: &[u8]) -> Outcome<ScsiResult> {
    // Third-party and extent reservations are not supported (RESERVE (10) 3RDPTY and
    // LONGID; RESERVE (6) extent bits are obsolete).
    if cdb[1] & 0x13 != 0 {
        return Err(invalid_cdb());
    }
    // SPC-4 5.13.3 with CRH=0: RESERVE meets a registered persistent reservation state
    // with a conflict.
    if lu.pr.lock().has_registrations() {
        return Err(Fail::Conflict);
    }
    match lu.spc2.reserve(nexus) {
        ReserveResult::Granted => Ok(ScsiResult::good()),
        ReserveResult::Conflict => Err(Fail::Conflict),
    }
}

/// RELEASE (6) / (10) (SPC-2 7.13, 7.14).
pub(crate) fn release(lu: &Lu, nexus: &ItNexus, cdb: &[u8]) -> Outcome<ScsiResult> {
    if cdb[1] & 0x13 != 0 {
        return Err(invalid_cdb());
    }
    if lu.pr.lock().has_registrations() {
        return Err(Fail::Conflict);
    }
    lu.spc2.release(nexus);
    Ok(ScsiResult::good())
}

/// PERSISTENT RESERVE IN (SPC-4 6.16).
pub(crate) fn pr_in(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let _alloc = u16_at(cdb, 7);
    let data = lu.pr.lock().input(cdb[1] & 0x1f)?;
    Ok(ScsiResult::with_data(data))
}

/// PERSISTENT RESERVE OUT (SPC-4 6.17); returns what the caller must do about other
/// I_T nexuses. With APTPL in force the new state is on disk before the command
/// completes; if it cannot be written the command fails and the state is unchanged.
pub(crate) fn pr_out(
    lu: &Lu,
    nexus: &ItNexus,
    cdb: &[u8],
    data: &[u8],
    target: &str,
    ports: PortResolver,
) -> Outcome<PrEffects> {
    let param = crate::cdb::data_out(data, u32_at(cdb, 5) as usize)?;
    let mut pr = lu.pr.lock();
    let before = pr.clone();
    let fx = pr.out(
        &PortPair::of(nexus),
        nexus.relative_port_id,
        cdb,
        param,
        ports,
    )?;
    if *pr != before {
        if let Err(e) = pr.persist(target, lu.lun) {
            tracing::error!(
                target,
                lun = lu.lun,
                "cannot save persistent reservations: {e}"
            );
            *pr = before;
            return Err(Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).into());
        }
    }
    Ok(fx)
}

/// PREVENT ALLOW MEDIUM REMOVAL (SBC-4 5.15).
pub(crate) fn prevent_allow_cmd(lu: &Lu, nexus: u64, cdb: &[u8]) -> Outcome<ScsiResult> {
    let prevent = cdb[4] & 0x03;
    if prevent > 1 {
        return Err(invalid_cdb());
    }
    let mut m = lu.medium.lock();
    if prevent == 1 {
        m.preventing.insert(nexus);
    } else {
        m.preventing.remove(&nexus);
    }
    Ok(ScsiResult::good())
}
