//! Command counters: per LU here (and per session in the transport), for `rtgtadm
//! stats` and the metrics endpoint.
//!
//! Counting must not add a lock to the I/O path: every counter is an atomic, updated
//! with relaxed ordering (they are statistics, read as a snapshot that may be a
//! command apart between fields). Latency goes into a fixed log2 histogram.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ScsiTarget;

/// Histogram buckets: bucket `i` counts commands that took at most 2^i µs
/// (1 µs … 2^25 µs ≈ 33.5 s); the last counts everything slower.
pub const LATENCY_BUCKETS: usize = 27;

/// The upper bound of bucket `i` in microseconds (`None` for the last, unbounded one).
pub fn bucket_bound_us(i: usize) -> Option<u64> {
    (i + 1 < LATENCY_BUCKETS).then(|| 1u64 << i)
}

#[derive(Default)]
pub struct IoCounters {
    commands: AtomicU64,
    errors: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    latency_us_sum: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

/// A point-in-time copy of [`IoCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IoSnapshot {
    pub commands: u64,
    /// Commands that ended with a status other than GOOD.
    pub errors: u64,
    /// Data-In bytes sent to the initiator.
    pub read_bytes: u64,
    /// Data-Out bytes the commands transferred.
    pub write_bytes: u64,
    pub latency_us_sum: u64,
    /// Per bucket, not cumulative; see [`bucket_bound_us`].
    pub latency_buckets: Vec<u64>,
}

impl IoCounters {
    /// Counts one finished command.
    pub fn record(&self, read: u64, written: u64, error: bool, latency: Duration) {
        self.commands.fetch_add(1, Relaxed);
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
        if read > 0 {
            self.read_bytes.fetch_add(read, Relaxed);
        }
        if written > 0 {
            self.write_bytes.fetch_add(written, Relaxed);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // A command answered on its first poll took no measurable time: one atomic
        // fewer on the path of nearly every page-cache and null I/O.
        if us > 0 {
            self.latency_us_sum.fetch_add(us, Relaxed);
        }
        // Smallest i with us <= 2^i.
        let i = if us <= 1 {
            0
        } else {
            (64 - (us - 1).leading_zeros()) as usize
        };
        self.buckets[i.min(LATENCY_BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> IoSnapshot {
        IoSnapshot {
            commands: self.commands.load(Relaxed),
            errors: self.errors.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            write_bytes: self.write_bytes.load(Relaxed),
            latency_us_sum: self.latency_us_sum.load(Relaxed),
            latency_buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
        }
    }
}

/// Runs a command, timing it from when it first has to wait. A command that finishes
/// within its first poll (everything without I/O, a page-cache hit, a null LU) took well
/// under the microsecond the counters count in, so it is recorded as 0 µs, as it would
/// be anyway, without the two clock reads that were a measurable share of such a
/// command. A command that waits loses only its first poll's time (its submission).
pub async fn timed<F: Future>(f: F) -> (F::Output, Duration) {
    let mut f = std::pin::pin!(f);
    let mut waiting_since: Option<Instant> = None;
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready((v, waiting_since.map_or(Duration::ZERO, |t| t.elapsed()))),
        Poll::Pending => {
            waiting_since.get_or_insert_with(Instant::now);
            Poll::Pending
        }
    })
    .await
}

impl ScsiTarget {
    /// The command counters of each LU (LUN 0 included), by LUN.
    pub fn lu_stats(&self) -> Vec<(u64, IoSnapshot)> {
        self.all_lus()
            .iter()
            .map(|lu| (lu.lun, lu.stats.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timing_starts_when_a_command_first_waits() {
        let (v, d) = timed(async { 7 }).await;
        assert_eq!((v, d), (7, Duration::ZERO), "finished in its first poll");
        let (v, d) = timed(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            8
        })
        .await;
        assert_eq!(v, 8);
        assert!(d >= Duration::from_millis(20), "{d:?}");
    }

    #[test]
    fn latency_lands_in_log2_buckets() {
        let c = IoCounters::default();
        c.record(4096, 0, false, Duration::from_micros(1));
        c.record(0, 512, true, Duration::from_micros(3));
        c.record(0, 0, false, Duration::from_micros(4));
        c.record(0, 0, false, Duration::from_secs(3600));
        let s = c.snapshot();
        assert_eq!(
            (s.commands, s.errors, s.read_bytes, s.write_bytes),
            (4, 1, 4096, 512)
        );
        assert_eq!(s.latency_buckets[0], 1);
        assert_eq!(s.latency_buckets[2], 2, "3 and 4 µs are both <= 4");
        assert_eq!(s.latency_buckets[LATENCY_BUCKETS - 1], 1);
        assert_eq!(bucket_bound_us(2), Some(4));
        assert_eq!(bucket_bound_us(LATENCY_BUCKETS - 1), None);
    }
}
