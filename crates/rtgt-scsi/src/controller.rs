//! LUN 0: a storage array controller device (SCC-2, peripheral device type 0Ch), as
//! tgt presents it. It answers the commands every LU must (SPC-4) and nothing else.

use crate::cdb::{invalid_opcode, Outcome};
use crate::inquiry;
use crate::lu::Lu;
use crate::params::LuParams;
use crate::spc::{self, op};
use crate::{DeviceType, ItNexus, ScsiResult};

pub(crate) fn new_lu() -> Lu {
    Lu::new(
        0,
        DeviceType::Controller,
        None,
        512,
        String::new(),
        String::new(),
        LuParams::default(),
    )
}

pub(crate) fn execute(
    lu: &Lu,
    nexus: &ItNexus,
    cdb: &[u8],
    luns: &[u64],
    target: &str,
) -> Outcome<ScsiResult> {
    match cdb[0] {
        op::TEST_UNIT_READY => Ok(spc::test_unit_ready()),
        op::REQUEST_SENSE => spc::request_sense(Some(lu), nexus, cdb, None),
        op::INQUIRY => Ok(ScsiResult::with_data(inquiry::inquiry(
            lu, target, nexus, cdb,
        )?)),
        op::REPORT_LUNS => spc::report_luns(luns, cdb),
        op::MAINTENANCE_IN => spc::maintenance_in(lu, crate::opcodes::Features::default(), cdb),
        _ => Err(invalid_opcode()),
    }
}
