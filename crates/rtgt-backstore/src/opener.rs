//! Opening a networked store's medium (an RBD image, a file on a Gluster volume) on a
//! thread of its own, retrying while the cluster cannot be reached.
//!
//! Connecting and opening block for up to the client timeout when the servers do not
//! answer, so they never run on a reactor: [`start`] hands them to a thread and waits
//! a little for the first attempt, so that a mistake in the configuration (no such
//! image or file) fails the LU's creation with its reason. A cluster that cannot be
//! reached is no mistake: the store is returned not ready (the LU answers INQUIRY and
//! says NOT READY to media access) and the thread tries again with back-off, logging why
//! each attempt failed, until the medium opens; it stops when the store is dropped.

use std::io;
use std::sync::{Arc, Weak};

use parking_lot::Mutex as PlMutex;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Why a medium could not be opened: `Permanent` failures are the configuration's (a
/// ceph.conf that cannot be read, a pool, image or file the cluster says does not
/// exist) and fail the LU's creation when they are known in time; `Transient` ones (the
/// cluster cannot be reached or does not answer) leave the LU NOT READY while the opener
/// retries.
#[derive(Debug)]
pub(crate) enum OpenFail {
    Permanent(io::Error),
    Transient(io::Error),
}

impl OpenFail {
    pub(crate) fn error(&self) -> &io::Error {
        match self {
            OpenFail::Permanent(e) | OpenFail::Transient(e) => e,
        }
    }
}

/// A store whose medium the opener thread opens.
pub(crate) trait Connect: Send + Sync + 'static {
    /// What the logs call the store's medium (`rbd image pool/img`, `glfs file
    /// vol@host:path`).
    fn medium(&self) -> String;
    /// One attempt at opening the medium (blocking, up to the client timeouts); on
    /// success the store becomes ready.
    fn try_open(&self) -> Result<(), OpenFail>;
}

/// How long creating a LU waits for the first attempt to open its image: long enough
/// for a healthy cluster (well under a second), short enough that a daemon starting
/// with many LUs on an unreachable cluster is not held up for long.
pub(crate) const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The first pause between attempts, doubled after each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest pause between attempts. An attempt itself waits for the monitors up to
/// the client timeout and succeeds as soon as they answer, so a cluster that comes
/// back is noticed within this pause.
const MAX_RETRY: Duration = Duration::from_secs(8);

/// Where the opener tells the creator how the first attempt went.
#[derive(Default)]
struct Gate {
    state: Mutex<First>,
    done: Condvar,
}

#[derive(Default)]
struct First {
    /// The creator stopped waiting: permanent failures are now only logged.
    detached: bool,
    /// Nobody can fail the LU's creation any more (a held opener): permanent failures
    /// are retried too.
    retry_all: bool,
    outcome: Option<Result<(), OpenFail>>,
}

/// What the opener does after an attempt.
#[derive(PartialEq)]
enum Next {
    /// The image is open, or the waiting creator reports the permanent failure (and
    /// drops the store).
    Stop,
    /// Try again; the waiting creator logs why this attempt failed.
    RetryQuietly,
    /// Try again; nobody has said why this attempt failed.
    Retry,
}

impl Gate {
    /// Hands an attempt's outcome to the creator if it still waits.
    fn report(&self, outcome: Result<(), OpenFail>) -> Next {
        let mut s = self.state.lock();
        let next = match (&outcome, s.detached) {
            (Ok(()), _) => Next::Stop,
            (Err(_), true) => Next::Retry,
            (Err(OpenFail::Permanent(_)), false) if !s.retry_all => Next::Stop,
            (Err(OpenFail::Permanent(_)), false) => Next::RetryQuietly,
            (Err(OpenFail::Transient(_)), false) => Next::RetryQuietly,
        };
        if !s.detached {
            s.outcome = Some(outcome);
            self.done.notify_all();
        }
        next
    }
}

/// Openers held back while the daemon has yet to fork (see [`defer`]).
type Held = Vec<(Weak<dyn Connect>, Arc<Gate>, String)>;
static HELD: PlMutex<Option<Held>> = PlMutex::new(None);

/// From now until [`release`], stores are created not ready and their openers wait:
/// rtgtd loads its configuration before it forks into the background, and neither an
/// opener thread nor librados's or libgfapi's own threads would survive the fork.
pub fn defer() {
    HELD.lock().get_or_insert_with(Vec::new);
}

/// Starts the openers held since [`defer`] and waits up to `wait` for their first
/// attempts, so that LUs on a healthy cluster are ready before the daemon serves.
/// Failures are logged (there is no creator left to report them to) and retried.
pub fn release(wait: Duration) {
    let Some(held) = HELD.lock().take() else {
        return;
    };
    let deadline = Instant::now() + wait;
    let mut gates = Vec::new();
    for (weak, gate, name) in held {
        gate.state.lock().retry_all = true;
        let g = gate.clone();
        match std::thread::Builder::new()
            .name("rtgt-open".into())
            .spawn(move || run(weak, g))
        {
            Ok(_) => gates.push((gate, name)),
            Err(e) => tracing::error!("{name}: cannot start an opener thread: {e}"),
        }
    }
    for (gate, name) in gates {
        let mut s = gate.state.lock();
        while s.outcome.is_none() {
            if gate.done.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        s.detached = true;
        if let Some(Err(e)) = s.outcome.take() {
            tracing::warn!(
                "{name} cannot be opened now ({}): the LU is NOT READY until it can",
                e.error()
            );
        }
    }
}

/// Starts the opener for `inner` and waits up to `wait` for its first attempt. Err: a
/// permanent failure (the store cannot work as configured); Ok: the image is open, or
/// the opener goes on trying in the background.
pub(crate) fn start<T: Connect>(inner: &Arc<T>, wait: Duration) -> std::io::Result<()> {
    let gate = Arc::new(Gate::default());
    let weak: Weak<dyn Connect> = Arc::downgrade(inner) as Weak<dyn Connect>;
    let name = inner.medium();
    if let Some(held) = HELD.lock().as_mut() {
        held.push((weak, gate, name));
        return Ok(());
    }
    let g = gate.clone();
    std::thread::Builder::new()
        .name("rtgt-open".into())
        .spawn(move || run(weak, g))?;
    let deadline = Instant::now() + wait;
    let mut s = gate.state.lock();
    while s.outcome.is_none() {
        if gate.done.wait_until(&mut s, deadline).timed_out() {
            break;
        }
    }
    s.detached = true;
    match s.outcome.take() {
        Some(Ok(())) => Ok(()),
        Some(Err(OpenFail::Permanent(e))) => Err(e),
        Some(Err(OpenFail::Transient(e))) => {
            tracing::warn!("{name} cannot be opened now ({e}): the LU is NOT READY until it can");
            Ok(())
        }
        None => {
            tracing::warn!("{name} not open after {wait:?}: the LU is NOT READY until it is");
            Ok(())
        }
    }
}

/// The opener thread: attempts until the medium is open or the store is gone.
fn run(weak: Weak<dyn Connect>, gate: Arc<Gate>) {
    let mut pause = FIRST_RETRY;
    let mut attempt = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        attempt += 1;
        let outcome = inner.try_open();
        let why = outcome.as_ref().err().map(|f| f.error().to_string());
        if outcome.is_ok() && attempt > 1 {
            tracing::info!(attempt, "{} opened: the LU is ready", inner.medium());
        }
        match (gate.report(outcome), why) {
            (Next::Stop, _) => return,
            (Next::Retry, Some(why)) => tracing::warn!(
                attempt,
                "{} cannot be opened: {why}; next attempt in {pause:?}",
                inner.medium()
            ),
            _ => {}
        }
        drop(inner);
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_RETRY);
    }
}
