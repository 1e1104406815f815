//! What an iSCSI session registers with the daemon: its I_T nexus with the port names
//! RFC 7143 gives it (§10.1.1.1 ff: `<initiator>,i,0x<ISID>` and `<target>,t,0x<TPGT>`),
//! its `show` entry and the keys its login negotiated.

use std::net::SocketAddr;
use std::sync::Arc;

use rtgt_iscsi::params::SessionParams;
use rtgt_scsi::ItNexus;
use rtgt_target::{ConnInfo, SessionInfo, Target};

use crate::transport::nexus::NewSession;

/// The session `params` logged in to target `t` through portal group `tpgt`, as
/// [`crate::transport::nexus::Nexus::attach`] registers it.
pub(in crate::transport) fn new_session(
    id: u64,
    t: &Arc<Target>,
    params: &SessionParams,
    tpgt: u16,
    peer: SocketAddr,
    local: SocketAddr,
) -> NewSession {
    let isid_hex: String = params.isid.iter().map(|b| format!("{b:02x}")).collect();
    let it = ItNexus {
        id,
        initiator_name: params.initiator_name.clone(),
        initiator_port: format!("{},i,0x{isid_hex}", params.initiator_name),
        target_port: format!("{},t,0x{tpgt:04x}", t.name),
        // Each portal group is one target port and one target port group (ALUA):
        // both are identified by the TPGT.
        relative_port_id: tpgt,
        target_port_group: tpgt,
    };
    let info = SessionInfo {
        sid: id,
        initiator_name: params.initiator_name.clone(),
        initiator_alias: params.initiator_alias.clone(),
        isid: params.isid,
        tsih: params.tsih,
        connections: vec![ConnInfo {
            cid: params.cid,
            peer,
            local,
        }],
        transport: super::NAME,
        close: Arc::new(|| {}),
    };
    NewSession {
        target: t.clone(),
        it,
        info,
        keys: [(params.cid, negotiated_keys(params))].into(),
        peer: peer.to_string().into(),
    }
}

/// The keys negotiated at login, by their RFC 7143 §13 names, for `rtgtadm sessions`.
fn negotiated_keys(p: &SessionParams) -> Vec<(String, String)> {
    let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
    let digest = |b: bool| if b { "CRC32C" } else { "None" }.to_string();
    vec![
        ("AuthMethod".into(), p.auth_method.clone()),
        ("HeaderDigest".into(), digest(p.header_digest)),
        ("DataDigest".into(), digest(p.data_digest)),
        (
            "MaxRecvDataSegmentLength".into(),
            p.max_recv_data_segment_length.to_string(),
        ),
        (
            "MaxXmitDataSegmentLength".into(),
            p.max_xmit_data_segment_length.to_string(),
        ),
        ("InitialR2T".into(), yn(p.initial_r2t)),
        ("ImmediateData".into(), yn(p.immediate_data)),
        ("FirstBurstLength".into(), p.first_burst_length.to_string()),
        ("MaxBurstLength".into(), p.max_burst_length.to_string()),
        (
            "MaxOutstandingR2T".into(),
            p.max_outstanding_r2t.to_string(),
        ),
        ("DataPDUInOrder".into(), yn(p.data_pdu_in_order)),
        ("DataSequenceInOrder".into(), yn(p.data_sequence_in_order)),
        ("DefaultTime2Wait".into(), p.default_time2wait.to_string()),
        (
            "DefaultTime2Retain".into(),
            p.default_time2retain.to_string(),
        ),
        (
            "ErrorRecoveryLevel".into(),
            p.error_recovery_level.to_string(),
        ),
        ("MaxConnections".into(), p.max_connections.to_string()),
        (
            "TargetPortalGroupTag".into(),
            p.target_portal_group_tag.to_string(),
        ),
    ]
}
