//! iSCSI over TCP (RFC 7143): the first transport. The protocol is rtgt-iscsi's sans-IO
//! login and session machines; this driver owns the sockets.
//!
//! - `login`: the login phase, the registry answering for targets, ACLs and CHAP;
//! - `connection`: the full feature phase, one loop turn in named steps;
//! - `wire`: framing PDUs in, vectored writes out;
//! - `registration`: the session's I_T nexus, port names and negotiated keys;
//! - `send_targets`: what discovery shows.

pub(super) mod connection;
pub(super) mod login;
mod lowat;
pub(super) mod registration;
pub(super) mod send_targets;
mod wire;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Result;
use rtgt_target::Registry;
use tokio::task::JoinHandle;

use super::{Opened, Transport};
use crate::cli::{IscsiOptions, Options};
use crate::daemon::{Daemon, Reactors};

/// The transport's `--lld` name.
pub const NAME: &str = "iscsi";

/// The iSCSI transport: its portals (bound) and its options (`--iscsi`).
struct Iscsi {
    options: Arc<IscsiOptions>,
    /// Each portal's listener and portal group tag.
    portals: Vec<(TcpListener, u16)>,
}

/// Binds the portals of `--iscsi portal=...` (all addresses, port 3260, by default):
/// tgtd always serves iSCSI, and so does rtgtd.
pub fn open(opts: &Options) -> Result<Opened> {
    let options = opts.iscsi_options()?;
    let mut portals = Vec::new();
    for (addr, tpgt) in options.portals.iter().zip(&options.tpgts) {
        let l = crate::listen::bind_portal(*addr)?;
        l.set_nonblocking(true)?;
        portals.push((l, *tpgt));
    }
    Ok(Some(Box::new(Iscsi {
        options: Arc::new(options),
        portals,
    })))
}

impl Transport for Iscsi {
    fn register(&self, registry: &Registry) {
        registry.set_portal_groups(
            self.portals
                .iter()
                .filter_map(|(l, tpgt)| Some((l.local_addr().ok()?, *tpgt)))
                .collect(),
        );
    }

    fn start(
        self: Box<Self>,
        daemon: &Arc<Daemon>,
        reactors: &Arc<Reactors>,
    ) -> Result<Vec<JoinHandle<()>>> {
        let mut accepts = Vec::new();
        for (l, tpgt) in self.portals {
            let l = tokio::net::TcpListener::from_std(l)?;
            tracing::info!("iSCSI portal {}, portal group {tpgt}", l.local_addr()?);
            let (daemon, reactors) = (daemon.clone(), reactors.clone());
            let options = self.options.clone();
            accepts.push(tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((stream, peer)) => {
                            accept(&daemon, &reactors, &options, stream, peer, tpgt)
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!("accept: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        Ok(accepts)
    }
}

/// Hands an accepted connection to the next reactor, which serves it from login on.
fn accept(
    daemon: &Arc<Daemon>,
    reactors: &Reactors,
    options: &Arc<IscsiOptions>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tpgt: u16,
) {
    // Moved between runtimes as a std socket, registered with the reactor inside it.
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, "accept: {e}");
            return;
        }
    };
    let (daemon, options) = (daemon.clone(), options.clone());
    reactors.spawn(async move {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => login::serve(daemon, options, stream, peer, tpgt).await,
            Err(e) => tracing::warn!(%peer, "accept: {e}"),
        }
    });
}
