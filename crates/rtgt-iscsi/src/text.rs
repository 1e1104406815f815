//! Text Request / Text Response exchanges in the full-feature phase (RFC 7143 §11.10,
//! §11.11), chiefly SendTargets (RFC 7143 §13.3, Appendix C).
//!
//! [`TextExchange`] keeps the state of the one text exchange a connection may have open:
//! request text continued with the C bit, and a long response split over several Text
//! Responses that the initiator pulls with empty requests carrying our Target Transfer Tag.
//! The responses it returns lack StatSN, ExpCmdSN and MaxCmdSN: the caller (the session,
//! which owns those counters) fills them in before sending.

use std::net::SocketAddr;

use thiserror::Error;

use crate::keys::{self, TextAccumulator};
use crate::login::key_use;
use crate::params::{SessionParams, SessionType, MAX_SEGMENT_LIMIT, MIN_SEGMENT_LIMIT};
use crate::pdu::{op, reject, Pdu, RESERVED_TAG};

const FLAG_F: u8 = 0x80;
const FLAG_C: u8 = 0x40;

/// A target as SendTargets reports it: its name and the portals that reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    pub name: String,
    /// Portal addresses with their target portal group tags. Empty means "the address of
    /// this connection" (RFC 7143 Appendix C: TargetAddress may be omitted).
    pub addresses: Vec<(SocketAddr, u16)>,
}

/// A Text Request that must be answered with a Reject PDU (RFC 7143 §11.17).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("reject (reason {reason:#04x}): {why}")]
pub struct Reject {
    reason: u8,
    why: String,
}

impl Reject {
    pub fn new(reason: u8, why: impl Into<String>) -> Self {
        Self {
            reason,
            why: why.into(),
        }
    }
    /// The Reject reason code (`pdu::reject`).
    pub fn reason(&self) -> u8 {
        self.reason
    }
    /// What was wrong, for the log.
    pub fn why(&self) -> &str {
        &self.why
    }
    /// The Reject PDU for `rejected` (RFC 7143 §11.17): the rejected header as data.
    /// StatSN, ExpCmdSN and MaxCmdSN are left for the caller.
    pub fn to_pdu(&self, rejected: &Pdu) -> Pdu {
        let mut r = Pdu::new(op::REJECT);
        r.set_flags(0x80);
        r.bhs[2] = self.reason;
        r.set_itt(RESERVED_TAG);
        r.data = rejected.bhs.to_vec();
        r.fix_lengths();
        r
    }
}

/// The text exchange state of one connection.
#[derive(Debug, Default)]
pub struct TextExchange {
    /// ITT of the open exchange.
    itt: Option<u32>,
    /// TTT we gave the initiator to continue the open exchange with.
    ttt: Option<u32>,
    next_ttt: u32,
    acc: TextAccumulator,
    /// Response bytes not yet sent.
    out: Vec<u8>,
    out_pos: usize,
    /// A MaxRecvDataSegmentLength the initiator declared in this phase.
    declared_mrdsl: Option<u32>,
}

impl TextExchange {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while an exchange is open (request or response continued, or F=0 pending).
    pub fn in_progress(&self) -> bool {
        self.itt.is_some()
    }

    /// A MaxRecvDataSegmentLength the initiator declared in a Text Request (RFC 7143
    /// §13.12: Use ALL), once: the caller applies it to the PDUs it sends from now on
    /// (capped by any MaxXmitDataSegmentLength of its own).
    pub fn take_declared_max_recv_data_segment_length(&mut self) -> Option<u32> {
        self.declared_mrdsl.take()
    }

    /// Handles one Text Request. The response lacks StatSN/ExpCmdSN/MaxCmdSN, which the
    /// caller fills in; an `Err` is to be answered with a Reject PDU of that reason.
    pub fn handle(
        &mut self,
        req: &Pdu,
        params: &SessionParams,
        targets: &[DiscoveredTarget],
    ) -> Result<Pdu, Reject> {
        if req.opcode() != op::TEXT_REQ {
            return Err(Reject::new(reject::PROTOCOL_ERROR, "not a Text Request"));
        }
        let fin = req.final_bit();
        let cont = req.flags() & FLAG_C != 0;
        // RFC 7143 §11.10.2: C=1 requires F=0.
        if fin && cont {
            return Err(Reject::new(
                reject::PROTOCOL_ERROR,
                "Text Request with F and C set",
            ));
        }
        let itt = req.itt();
        if itt == RESERVED_TAG {
            return Err(Reject::new(reject::INVALID_PDU_FIELD, "reserved ITT"));
        }
        let ttt = req.ttt();
        if ttt == RESERVED_TAG {
            // A new exchange; with the ITT of the open one it restarts it (RFC 7143
            // §11.10.4), with another ITT the old one is abandoned.
            self.reset();
            self.itt = Some(itt);
        } else if self.itt != Some(itt) || self.ttt != Some(ttt) {
            // RFC 7143 §11.10.4: a TTT we did not hand out for this ITT.
            return Err(Reject::new(
                reject::INVALID_PDU_FIELD,
                format!("unknown Target Transfer Tag {ttt:#x} for ITT {itt:#x}"),
            ));
        }

        if self.out_pos < self.out.len() {
            // The initiator pulls the rest of a continued response with empty requests.
            if !req.data.is_empty() || cont {
                self.reset();
                return Err(Reject::new(
                    reject::PROTOCOL_ERROR,
                    "Text Request data while the response is continued",
                ));
            }
            return Ok(self.next_response(req, params));
        }

        let set = match self.acc.push(&req.data, cont) {
            Err(e) => {
                self.reset();
                return Err(Reject::new(reject::PROTOCOL_ERROR, e.to_string()));
            }
            Ok(None) => {
                // Acknowledge a continued request: empty, F=0, with a TTT to continue with.
                let tag = self.tag();
                return Ok(self.response(req, 0, tag, Vec::new()));
            }
            Ok(Some(set)) => set,
        };

        let mut out = Vec::new();
        for (k, v) in set.iter() {
            self.answer(k, v, params, targets, &mut out);
        }
        self.out = out;
        self.out_pos = 0;
        Ok(self.next_response(req, params))
    }

    /// Abandons the open exchange.
    pub fn reset(&mut self) {
        self.itt = None;
        self.ttt = None;
        self.acc.reset();
        self.out.clear();
        self.out_pos = 0;
    }

    fn tag(&mut self) -> u32 {
        if let Some(t) = self.ttt {
            return t;
        }
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 0;
        }
        self.ttt = Some(t);
        t
    }

    /// The next Text Response of the pending answer, at most MaxRecvDataSegmentLength of
    /// the initiator long (RFC 7143 §11.11.2: C=1 while more follows).
    fn next_response(&mut self, req: &Pdu, params: &SessionParams) -> Pdu {
        let max = (params.max_xmit_data_segment_length as usize).max(MIN_SEGMENT_LIMIT as usize);
        let left = self.out.len() - self.out_pos;
        if left > max {
            let chunk = self.out[self.out_pos..self.out_pos + max].to_vec();
            self.out_pos += max;
            let tag = self.tag();
            return self.response(req, FLAG_C, tag, chunk);
        }
        let chunk = self.out[self.out_pos..].to_vec();
        self.out.clear();
        self.out_pos = 0;
        if req.final_bit() {
            // RFC 7143 §11.11.1: F=1 ends the exchange; the TTT is then reserved.
            self.reset();
            self.response(req, FLAG_F, RESERVED_TAG, chunk)
        } else {
            // The initiator has more to say (F=0): we must not close the exchange.
            let tag = self.tag();
            self.response(req, 0, tag, chunk)
        }
    }

    fn response(&self, req: &Pdu, flags: u8, ttt: u32, data: Vec<u8>) -> Pdu {
        let mut r = Pdu::new(op::TEXT_RSP);
        r.set_flags(flags);
        r.set_lun_raw(req.lun_raw());
        r.set_itt(req.itt());
        r.set_ttt(ttt);
        r.data = data;
        r.fix_lengths();
        r
    }

    /// Answers one key of a full-feature-phase Text Request.
    fn answer(
        &mut self,
        k: &str,
        v: &str,
        params: &SessionParams,
        targets: &[DiscoveredTarget],
        out: &mut Vec<u8>,
    ) {
        match k {
            "SendTargets" => send_targets(v, params, targets, out),
            "MaxRecvDataSegmentLength" => {
                match keys::parse_number_in(
                    k,
                    v,
                    MIN_SEGMENT_LIMIT as u64,
                    MAX_SEGMENT_LIMIT as u64,
                ) {
                    // Declarative: no answer (RFC 7143 §13.12).
                    Ok(n) => self.declared_mrdsl = Some(n as u32),
                    Err(_) => keys::encode_pair(out, k, keys::REJECT),
                }
            }
            // Declarative, Use ALL (RFC 7143 §13.6): nothing to answer.
            "InitiatorAlias" => {}
            // Answers to offers we never make: ignore.
            _ if keys::is_reserved_answer(v) => {}
            _ => {
                let answer = match key_use(k) {
                    // Login-only keys (and keys only a target sends) cannot be negotiated
                    // here (RFC 7143 §13: Use IO/LO).
                    Some(_) => keys::REJECT,
                    None => keys::NOT_UNDERSTOOD,
                };
                keys::encode_pair(out, k, answer);
            }
        }
    }
}

/// Appends the SendTargets answer (RFC 7143 Appendix C): for each target a TargetName
/// followed by its TargetAddress pairs.
fn send_targets(
    value: &str,
    params: &SessionParams,
    targets: &[DiscoveredTarget],
    out: &mut Vec<u8>,
) {
    let own = params.target_name.as_deref();
    let selected: Vec<DiscoveredTarget> = match (params.session_type, value) {
        (SessionType::Discovery, "All") => targets.to_vec(),
        // No session target in a discovery session: nothing to report.
        (SessionType::Discovery, "") => Vec::new(),
        (SessionType::Discovery, name) => {
            targets.iter().filter(|t| t.name == name).cloned().collect()
        }
        // RFC 7143 Appendix C: an operational session reports only its own target. "All"
        // is answered that way too (as libiscsi's conformance suite and LIO expect), which
        // honours "MUST NOT return targets other than the one logged in".
        (SessionType::Normal, name) if name.is_empty() || name == "All" || Some(name) == own => {
            match own {
                Some(own) => vec![targets
                    .iter()
                    .find(|t| t.name == own)
                    .cloned()
                    .unwrap_or_else(|| DiscoveredTarget {
                        name: own.to_string(),
                        addresses: Vec::new(),
                    })],
                None => Vec::new(),
            }
        }
        // Any other value cannot be served on this session.
        (SessionType::Normal, _) => {
            keys::encode_pair(out, "SendTargets", keys::REJECT);
            return;
        }
    };
    for t in &selected {
        keys::encode_pair(out, "TargetName", &t.name);
        for (addr, tpgt) in &t.addresses {
            keys::encode_pair(out, "TargetAddress", &target_address(addr, *tpgt));
        }
    }
}

/// `ip:port,tpgt`, IPv6 addresses in brackets (RFC 7143 §13.8).
pub fn target_address(addr: &SocketAddr, tpgt: u16) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{},{}", a.ip(), a.port(), tpgt),
        SocketAddr::V6(a) => format!("[{}]:{},{}", a.ip(), a.port(), tpgt),
    }
}

#[cfg(test)]
mod tests;
