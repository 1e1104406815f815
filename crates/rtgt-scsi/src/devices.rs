//! The registry of device types: the one place that lists them. A new device type is
//! its own module (state, `impl DeviceServer`, inherent `execute`, `table` and `new_lu`) plus
//! one line here.
//!
//! `Device` is an enum rather than a trait object so that a command's future is one
//! state machine with no boxed future per command (the READ/WRITE path allocates
//! nothing); everything else goes through [`Device::server`] as `dyn DeviceServer`.

use std::any::Any;

use crate::cdb::Outcome;
use crate::device::{Ctx, DeviceServer};
use crate::lu::Lu;
use crate::opcodes::{Features, Table};
use crate::{LuConfig, ScsiError, ScsiResult};

macro_rules! registry {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal => $ty:ty ),* $(,)?) => {
        /// Device types rtgtadm knows (`--device-type`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DeviceType {
            $( $(#[$doc])* $kind ),*
        }

        impl DeviceType {
            /// Every registered device type.
            pub const ALL: &'static [DeviceType] = &[$(DeviceType::$kind),*];

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( $name => Some(Self::$kind), )*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$kind => $name ),*
                }
            }
        }

        /// A logical unit's device type and the state it keeps.
        pub(crate) enum Device {
            $( $kind($ty) ),*
        }

        $(
            impl From<$ty> for Device {
                fn from(d: $ty) -> Self {
                    Self::$kind(d)
                }
            }
        )*

        impl Device {
            pub fn server(&self) -> &dyn DeviceServer {
                match self {
                    $( Self::$kind(d) => d ),*
                }
            }

            /// Runs a command the core has routed to the device server.
            pub async fn execute(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
                match self {
                    $( Self::$kind(d) => d.execute(ctx, data).await ),*
                }
            }

            /// The commands it implements (one table drives dispatch and REPORT
            /// SUPPORTED OPERATION CODES).
            pub fn opcodes(&self, f: Features) -> &'static Table {
                match self {
                    $( Self::$kind(_) => <$ty>::table(f) ),*
                }
            }

            /// The device type's own state, for its own module.
            pub fn state<T: 'static>(&self) -> Option<&T> {
                match self {
                    $( Self::$kind(d) => (d as &dyn Any).downcast_ref() ),*
                }
            }
        }

        /// The commands of a device type.
        #[cfg(test)]
        pub(crate) fn table_of(kind: DeviceType, f: Features) -> &'static Table {
            match kind {
                $( DeviceType::$kind => <$ty>::table(f) ),*
            }
        }

        /// Creates a logical unit of `cfg.device_type`.
        pub(crate) fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
            match cfg.device_type {
                $( DeviceType::$kind => <$ty>::new_lu(lun, cfg) ),*
            }
        }
    };
}

/// A target's LUN 0: the controller SPC-4 requires to answer INQUIRY and REPORT LUNS.
pub(crate) fn new_lun0() -> Lu {
    crate::controller::new_lu()
}

registry! {
    /// The target's LUN 0 (SCC-2): not created by rtgtadm.
    Controller = "controller" => crate::controller::Controller,
    /// Direct-access block device (SBC-4).
    Disk = "disk" => crate::disk::Disk,
    /// Sequential-access device (SSC-3): a tape drive.
    Tape = "tape" => crate::ssc::TapeDrive,
    /// A CD/DVD drive (MMC-6): `--device-type cd`.
    Cd = "cd" => crate::mmc::Drive,
    /// Media changer device (SMC-3).
    Changer = "changer" => crate::smc::Changer,
    /// A real SCSI device passed through (`--bstype sg|bsg`).
    PassThrough = "pt" => crate::pt::PassThrough,
    /// A device handler of the SCSI kind in its own process (`--bstype handler`).
    Handler = "handler" => crate::scsi_handler::ScsiHandler,
}
