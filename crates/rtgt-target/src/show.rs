//! `show` output, laid out as tgtadm's so a person used to tgt reads it at a glance.

use std::fmt::Write;
use std::net::SocketAddr;

use crate::{Registry, SessionInfo, Target};

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Decimal megabytes, rounded, as tgtadm prints sizes.
pub fn megabytes(bytes: u64) -> u64 {
    bytes.saturating_add(500_000) / 1_000_000
}

fn ip_of(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.ip().to_string(),
        },
        SocketAddr::V4(v4) => v4.ip().to_string(),
    }
}

pub fn target(t: &Target, out: &mut String) {
    let _ = writeln!(out, "Target {}: {}", t.tid, t.name);
    out.push_str("    System information:\n");
    out.push_str("        Driver: iscsi\n");
    let _ = writeln!(out, "        State: {}", t.state().name());
    for (k, v) in t.iscsi_params() {
        let _ = writeln!(out, "        {k}: {v}");
    }
    if let Some(algs) = t.chap_algorithms() {
        let _ = writeln!(
            out,
            "        chap_algorithms: {}",
            crate::auth::algorithm_names(&algs)
        );
    }
    if t.max_sessions() != 0 {
        let _ = writeln!(out, "        max_sessions: {}", t.max_sessions());
    }
    for p in t.vhost_sockets() {
        let _ = writeln!(out, "        vhost socket: {p}");
    }
    // ALUA (SPC-4 5.16): one target port group per portal group tag.
    for (tpg, state) in t.scsi.alua_states() {
        let _ = writeln!(out, "        Target port group {tpg}: {}", state.name());
    }
    for (tpg, state) in t.scsi.alua_peer_states() {
        let _ = writeln!(
            out,
            "        Target port group {tpg} (another daemon's): {}",
            state.name()
        );
    }
    out.push_str("    I_T nexus information:\n");
    for s in t.sessions() {
        let _ = writeln!(out, "        I_T nexus: {}", s.sid);
        let _ = writeln!(
            out,
            "            Initiator: {} alias: {}",
            s.initiator_name,
            s.initiator_alias.as_deref().unwrap_or("none")
        );
        let _ = writeln!(out, "            Transport: {}", s.transport);
        for c in &s.connections {
            let _ = writeln!(out, "            Connection: {}", c.cid);
            let _ = writeln!(out, "                IP Address: {}", ip_of(&c.peer));
        }
    }
    out.push_str("    LUN information:\n");
    for lu in t.scsi.lu_info() {
        let _ = writeln!(out, "        LUN: {}", lu.lun);
        // tgt's names for an MMC device and a pass-through one.
        let dtype = match lu.device_type.as_str() {
            "cd" => "cd/dvd",
            "pt" => "passthrough",
            t => t,
        };
        let _ = writeln!(out, "            Type: {dtype}");
        let _ = writeln!(out, "            SCSI ID: {}", lu.scsi_id);
        let _ = writeln!(out, "            SCSI SN: {}", lu.scsi_sn);
        let _ = writeln!(
            out,
            "            Size: {} MB, Block size: {}",
            megabytes(lu.size_bytes),
            lu.block_size
        );
        let _ = writeln!(out, "            Online: {}", yes_no(lu.online));
        let _ = writeln!(out, "            Removable media: {}", yes_no(lu.removable));
        let _ = writeln!(
            out,
            "            Prevent removal: {}",
            yes_no(lu.prevent_removal)
        );
        let _ = writeln!(out, "            Readonly: {}", yes_no(lu.readonly));
        let _ = writeln!(out, "            SWP: {}", yes_no(lu.swp));
        let _ = writeln!(
            out,
            "            Thin-provisioning: {}",
            yes_no(lu.thin_provisioning)
        );
        let _ = writeln!(
            out,
            "            Backing store type: {}",
            lu.backing_store_type
        );
        let _ = writeln!(
            out,
            "            Backing store path: {}",
            lu.backing_store_path
        );
        let _ = writeln!(
            out,
            "            Backing store flags: {}",
            lu.backing_store_flags
        );
        for line in &lu.media {
            let _ = writeln!(out, "            {line}");
        }
        if lu.lun != 0 {
            let disk = lu.device_type == "disk";
            let masked = t.scsi.lun_initiators(lu.lun);
            let _ = writeln!(
                out,
                "            Initiators: {}",
                if masked.is_empty() {
                    "ALL".to_string()
                } else {
                    masked.join(", ")
                }
            );
            // rtgt's additions to tgtadm's list: the cache modes and geometry, and what
            // the store has done (so a flush that happened can be seen to have).
            if !disk {
                continue;
            }
            let _ = writeln!(
                out,
                "            Write cache: {}",
                if lu.write_cache { "on" } else { "off" }
            );
            let _ = writeln!(out, "            NV cache: {}", yes_no(lu.nv_cache));
            let _ = writeln!(
                out,
                "            Physical block size: {}",
                lu.physical_block_size
            );
            let io = lu.io_stats;
            let _ = writeln!(
                out,
                "            Backing store I/O: reads {}, writes {}, durable writes {}, flushes {}",
                io.reads, io.writes, io.durable_writes, io.flushes
            );
        }
    }
    out.push_str("    Account information:\n");
    t.auth().show(out);
    out.push_str("    ACL information:\n");
    let acl = t.acl();
    for a in &acl.addresses {
        let _ = writeln!(out, "        {a}");
    }
    for n in &acl.names {
        let _ = writeln!(out, "        {n}");
    }
}

/// `--mode conn --op show`, as tgtadm lays it out.
pub fn session_connections(s: &SessionInfo, out: &mut String) {
    for c in &s.connections {
        let _ = writeln!(out, "Session: {}", s.sid);
        let _ = writeln!(out, "    Connection: {}", c.cid);
        let _ = writeln!(out, "        Initiator: {}", s.initiator_name);
        let _ = writeln!(out, "        IP Address: {}", ip_of(&c.peer));
    }
}

fn portal(a: &SocketAddr, tpgt: u16) -> String {
    match a {
        SocketAddr::V4(v4) => format!("{}:{},{tpgt}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{},{tpgt}", v6.ip(), v6.port()),
    }
}

pub fn portals(reg: &Registry) -> String {
    let mut out = String::new();
    for (p, tpgt) in reg.portal_groups() {
        let _ = writeln!(out, "Portal: {}", portal(&p, tpgt));
    }
    out
}

pub fn system(reg: &Registry) -> String {
    let mut out = String::from("System:\n");
    let _ = writeln!(
        out,
        "    State: {}",
        if reg.system_ready() {
            "ready"
        } else {
            "offline"
        }
    );
    let _ = writeln!(out, "    debug: {}", if reg.debug() { "on" } else { "off" });
    out.push_str("LLDs:\n");
    for l in reg.llds() {
        let _ = writeln!(out, "    {}: {}", l.name, l.state);
    }
    out.push_str("Backing stores:\n    rdwr (bsoflags sync:direct)\n");
    match rtgt_backstore::uring::available() {
        Ok(()) => out.push_str("    io_uring, alias aio (bsoflags sync:direct)\n"),
        Err(why) => {
            let _ = writeln!(
                out,
                "    io_uring, alias aio: unavailable ({why}), served by rdwr"
            );
        }
    }
    out.push_str("    mem\n    null\n    handler (served by another process; bsoflags sync)\n    ssc (tape cartridge images: rtgt and tgt formats)\n");
    // The networked stores are cargo features: list what this build has.
    if rtgt_backstore::RBD {
        out.push_str("    rbd (Ceph RBD images)\n");
    }
    if rtgt_backstore::GLFS {
        out.push_str("    glfs (files on GlusterFS volumes, bsoflags sync)\n");
    }
    let _ = writeln!(
        out,
        "I/O threads: {}",
        rtgt_backstore::pool::pool().threads()
    );
    out.push_str("Device types:\n    disk\n    controller\n    tape\n    changer\n");
    out.push_str("Portals:\n");
    for (p, tpgt) in reg.portal_groups() {
        let _ = writeln!(out, "    {}", portal(&p, tpgt));
    }
    out.push_str("Security:\n");
    let _ = writeln!(
        out,
        "    chap_algorithms: {}",
        crate::auth::algorithm_names(&reg.chap_algorithms())
    );
    let limit = |n: u32| {
        if n == 0 {
            "unlimited".to_string()
        } else {
            n.to_string()
        }
    };
    let _ = writeln!(out, "    max_sessions: {}", limit(reg.max_sessions()));
    let _ = writeln!(out, "    auth_fail_limit: {}", limit(reg.auth_fail_limit()));
    if let Some(v) = reg.daemon_version() {
        let _ = writeln!(out, "Version:\n    rtgtd {v}");
    }
    out
}
