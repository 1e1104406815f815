//! NOP-In pings on a quiet connection (RFC 7143 §11.19), for every transport that
//! carries iSCSI PDUs (TCP and iSER): when the initiator was last heard from, and what
//! a tick of the ping timer decides.

use std::time::{Duration, Instant};

/// What a tick decides.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Heard from within the interval: nothing to do.
    Heard,
    /// Quiet for an interval: send a ping (if none is out).
    Ping,
    /// Quiet for `count` intervals with a ping unanswered: the peer is gone.
    Gone,
}

/// When the initiator was last heard from, for NOP-In pings.
pub struct Liveness {
    interval: Option<Duration>,
    count: u32,
    /// Ticks once per interval (hourly, unused, when pings are off).
    pub ticker: tokio::time::Interval,
    /// When a PDU last arrived, as of the last tick: the ticker is the only reader, so a
    /// read only sets `rx_seen` (a clock read per read was measurable at 150K IOPS) and
    /// the tick turns it into a time. Checks happen at ticks only, so this is as exact.
    last_rx: Instant,
    rx_seen: bool,
}

impl Liveness {
    /// Pings every `interval` (None: never); `count` quiet intervals with one
    /// unanswered end the connection (at least 1).
    pub fn new(interval: Option<Duration>, count: u32) -> Self {
        let every = interval.unwrap_or(Duration::from_secs(3600));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            interval,
            count: count.max(1),
            ticker,
            last_rx: Instant::now(),
            rx_seen: false,
        }
    }

    pub fn enabled(&self) -> bool {
        self.interval.is_some()
    }

    /// A PDU (or data) arrived from the initiator.
    pub fn seen(&mut self) {
        self.rx_seen = true;
    }

    /// At a tick: `ping_outstanding` says whether a ping is still unanswered.
    pub fn check(&mut self, ping_outstanding: bool) -> Verdict {
        let interval = self.interval.expect("ticks only when enabled");
        if std::mem::take(&mut self.rx_seen) {
            self.last_rx = Instant::now();
        }
        let quiet = self.last_rx.elapsed();
        if quiet >= interval * self.count && ping_outstanding {
            Verdict::Gone
        } else if quiet >= interval {
            Verdict::Ping
        } else {
            Verdict::Heard
        }
    }
}
