//! SendTargets (RFC 7143 Appendix C): which targets a discovery or normal session's
//! initiator may see, and the portals that reach them.

use std::net::SocketAddr;

use rtgt_iscsi::params::SessionParams;
use rtgt_iscsi::text::DiscoveredTarget;
use rtgt_target::Target;

use crate::daemon::Daemon;

/// The targets this initiator may see in SendTargets, with the addresses to reach them.
pub(in crate::transport) fn discovered(
    daemon: &Daemon,
    params: &SessionParams,
    peer: SocketAddr,
    local: SocketAddr,
    session_target: Option<&Target>,
) -> Vec<DiscoveredTarget> {
    let addresses: Vec<(SocketAddr, u16)> = daemon
        .registry
        .portal_groups()
        .into_iter()
        // A wildcard portal is reached at the address this connection came in on.
        .map(|(p, tpgt)| {
            if p.ip().is_unspecified() {
                (SocketAddr::new(local.ip(), p.port()), tpgt)
            } else {
                (p, tpgt)
            }
        })
        .collect();
    discovered_at(daemon, params, peer, addresses, session_target)
}

/// The same, every target reached at `addresses` (iSER: its own portal).
pub(in crate::transport) fn discovered_at(
    daemon: &Daemon,
    params: &SessionParams,
    peer: SocketAddr,
    addresses: Vec<(SocketAddr, u16)>,
    session_target: Option<&Target>,
) -> Vec<DiscoveredTarget> {
    daemon
        .registry
        .targets()
        .into_iter()
        .filter(|t| session_target.is_none_or(|s| s.tid == t.tid))
        .filter(|t| t.allows(peer.ip(), &params.initiator_name))
        .map(|t| DiscoveredTarget {
            name: t.name.clone(),
            addresses: addresses.clone(),
        })
        .collect()
}
