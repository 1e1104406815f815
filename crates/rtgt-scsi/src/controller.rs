//! LUN 0: a storage array controller device (SCC-2, peripheral device type 0Ch), as
//! tgt presents it. It answers the commands every LU must (SPC-4) and nothing else.

use std::sync::OnceLock;

use crate::cdb::{invalid_opcode, Outcome};
use crate::device::{Ctx, DeviceServer};
use crate::inquiry::TYPE_CONTROLLER;
use crate::lu::Lu;
use crate::opcodes::{Features, Table};
use crate::params::LuParams;
use crate::spc::{self, op};
use crate::{LuConfig, ScsiError, ScsiResult};

/// The controller device type: no state of its own.
pub(crate) struct Controller;

pub(crate) fn new_lu() -> Lu {
    Lu::new(
        0,
        Controller.into(),
        None,
        512,
        String::new(),
        String::new(),
        LuParams::default(),
    )
}

impl Controller {
    pub fn table(_: Features) -> &'static Table {
        static T: OnceLock<Table> = OnceLock::new();
        T.get_or_init(|| Table::build(&[]))
    }

    /// Only a target's LUN 0 is a controller; rtgtadm can't make one.
    pub fn new_lu(_: u64, _: LuConfig) -> Result<Lu, ScsiError> {
        Err(ScsiError::BadParam(
            "device type controller: LUN 0 is the target's controller; it can't be created".into(),
        ))
    }

    /// What is left once the core has answered INQUIRY, REPORT LUNS and REQUEST SENSE.
    pub async fn execute(&self, ctx: &Ctx<'_>, _: &mut Vec<u8>) -> Outcome<ScsiResult> {
        match ctx.cdb[0] {
            op::TEST_UNIT_READY => Ok(spc::test_unit_ready()),
            op::MAINTENANCE_IN => ctx.maintenance_in(),
            _ => Err(invalid_opcode()),
        }
    }
}

impl DeviceServer for Controller {
    fn name(&self) -> &'static str {
        "controller"
    }

    fn peripheral_type(&self) -> u8 {
        TYPE_CONTROLLER
    }

    fn product(&self, _: &str) -> Option<&'static str> {
        Some("CONTROLLER")
    }
}
