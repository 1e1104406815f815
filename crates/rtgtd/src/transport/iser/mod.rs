//! iSCSI over RDMA (iSER, RFC 7145): the second transport. Login, sessions and PDUs are
//! iSCSI's, run by the same sans-IO machines of rtgt-iscsi as the TCP transport; iSER
//! changes how they travel. Every PDU is one RDMA Send with a 28-byte iSER header
//! (`header`), the login included (iSER-assisted login over an RDMA connection-manager
//! connection, as Linux's initiator, tgt and LIO do: no TCP phase, no Hello). Data-In is
//! an RDMA Write into the initiator's buffer, then the SCSI Response as a Send; an R2T
//! becomes an RDMA Read of the initiator's buffer, fed back to the session machine as
//! the Data-Out it stands for.
//!
//! - `header`: the iSER header;
//! - `verbs`: libibverbs and librdmacm, loaded at run time;
//! - `listener`: the connection manager's events, accepting;
//! - `connection`: one connection, login to logout;
//! - `pool`: the registered buffer pool command data goes through.
//!
//! Every target is reachable through every transport: an iSER portal serves the same
//! targets as the iSCSI portals, and `show` says which transport each session uses.

mod connection;
pub mod header;
mod listener;
pub mod pool;
mod verbs;

use anyhow::Result;

use super::Opened;
use crate::cli::Options;

/// The transport's `--lld` name.
pub const NAME: &str = "iser";

/// Opens the RDMA listeners of `--iser`. Without an RDMA device (or the libraries)
/// that is one log line, and iSCSI over TCP serves as before. (An rtgtd built without
/// the rdma feature has no iSER: `transport::open_all` says so in one line.)
pub fn open(opts: &Options) -> Result<Opened> {
    let Some(portals) = opts.iser_portals()? else {
        return Ok(None);
    };
    let o = opts.iscsi_options()?;
    let timing = connection::Timing {
        login_timeout: o.login_timeout,
        nop_interval: o.nop_interval,
        nop_count: o.nop_count,
    };
    let pool_mb = opts.iser_pool_mb()?.unwrap_or(pool::DEFAULT_MB);
    Ok(Some(
        match listener::Listener::open(&portals, timing, pool_mb << 20) {
            Ok(l) => Box::new(l),
            Err(e) => Box::new(super::Unavailable(format!(
                "iSER: no RDMA listener ({e:#}); serving iSCSI over TCP only"
            ))),
        },
    ))
}
