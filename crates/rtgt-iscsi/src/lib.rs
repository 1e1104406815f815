//! Sans-IO iSCSI target protocol (RFC 7143).
//!
//! Nothing here touches a socket: PDUs are framed and checked from bytes ([`pdu`]),
//! login and text negotiation turn requests into responses ([`login`], [`keys`]), and the
//! full-feature phase state machine ([`conn`]) turns PDUs into actions for the driver.

pub mod ahs;
pub mod chap;
pub mod keys;
pub mod login;
pub mod params;
pub mod pdu;
pub mod serial;
pub mod session;
pub mod text;
