//! Running SCSI commands for a transport: what every transport needs from the daemon
//! between "a command arrived on this I_T nexus" and "its answer may go out", whatever
//! carries the command (iSCSI over TCP today; iSER and vhost-user-scsi beside it).
//!
//! - A command enters the SCSI core's task set before it runs (`begin_task`), so an abort
//!   can never miss it, and its task ends only after its completion has been applied.
//! - It is polled once right where it arrived: most commands (null and page-cache reads,
//!   small buffered writes, everything without I/O) finish on that poll and are answered
//!   in the same write, with no task spawn, channel send or wake-up. The rest go on as
//!   their own task on the same reactor and come back on the completion queue.
//! - A panic in a command is contained to that command: CHECK CONDITION, HARDWARE ERROR,
//!   INTERNAL TARGET FAILURE (SPC-4 4.5.6, 44/00).
//! - A task management function runs on the SCSI core; its response waits for the end of
//!   every task it aborted, here and on other nexuses (SAM-5 7.1).
//! - Aborts from another I_T nexus arrive on the same completion queue, so a function's
//!   response can never overtake the completion of a task it waited for.
//! - Each command is counted in its session's counters where it completes.
//!
//! The command's future is a type parameter (static dispatch, no box per command): its
//! heap slot is reused from one command that finished on its first poll to the next.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rtgt_scsi::stats::IoCounters;
use rtgt_scsi::{
    ScsiCommand, ScsiResult, ScsiTarget, TaskGuard, TmFunction, TmResponse, TransportAbort,
};
use tokio::sync::mpsc;

use super::nexus::Nexus;

/// What comes back to a transport's loop from elsewhere. Command completions and task
/// management responses share one queue, so a function's response can never overtake
/// the completion of a task it waited for (which is then dropped, not sent).
#[derive(Debug)]
pub enum Completion {
    /// A command ended. `result.aborted`: a task management function (or PREEMPT AND
    /// ABORT) aborted it, and its outcome must not reach the initiator (SAM-5 5.6, TAS=0).
    Command { tag: u64, result: ScsiResult },
    /// A task management function's response, once the tasks it aborted have ended.
    /// `close`: TARGET COLD RESET, the session ends after the response.
    TaskManagement {
        tag: u64,
        response: TmResponse,
        close: bool,
    },
    /// Tasks aborted from another I_T nexus: the transport drops those it still holds
    /// (for iSCSI, commands still gathering Data-Out), then drops the request, which
    /// acknowledges it.
    Abort(TransportAbort),
}

/// What a command's future gives back: its completion and its task, which ends (and
/// releases a task management function waiting on it) when dropped.
pub type Finished = (Completion, TaskGuard);

/// The future of one command, as [`Commands`] holds it.
pub trait CommandFuture: Future<Output = Finished> + Send + 'static {}
impl<F: Future<Output = Finished> + Send + 'static> CommandFuture for F {}

type Start<F> = fn(Arc<ScsiTarget>, ScsiCommand, TaskGuard, Arc<IoCounters>) -> F;

/// The commands of one connection: running them on the SCSI core and collecting what
/// comes back. One per transport connection (an iSCSI connection, a vhost-user queue).
pub struct Commands<F> {
    start: Start<F>,
    /// The heap slot of a command that finished on its first poll, for the next command:
    /// boxing every command's future was one of the allocations per READ and WRITE.
    /// Kept to one: commands are submitted one at a time, and a spawned one keeps its own.
    spare: Option<Pin<Box<Option<F>>>>,
    tx: mpsc::UnboundedSender<Completion>,
    rx: mpsc::UnboundedReceiver<Completion>,
    /// Commands that went on as their own task, and those of them that came back: a
    /// connection closed while the daemon stops waits for the difference.
    spawned: u64,
    finished: u64,
    /// Commands submitted since the last [`Commands::take_answered`] (wake-up coalescing).
    submitted: u32,
}

/// A command's future: runs it on the core, counts it in the session's counters.
fn command(
    scsi: Arc<ScsiTarget>,
    cmd: ScsiCommand,
    task: TaskGuard,
    stats: Arc<IoCounters>,
) -> impl CommandFuture {
    async move {
        let tag = cmd.tag;
        let written = cmd.data_out.len() as u64;
        let mut result = scsi.execute_task(cmd, &task).await;
        stats.record(
            result.data_in.len() as u64,
            if result.status == 0 { written } else { 0 },
            result.status != 0,
            result.elapsed,
        );
        result.aborted |= task.aborted();
        (Completion::Command { tag, result }, task)
    }
}

impl Commands<()> {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Commands<impl CommandFuture> {
        let (tx, rx) = mpsc::unbounded_channel();
        Commands {
            start: command,
            spare: None,
            tx,
            rx,
            spawned: 0,
            finished: 0,
            submitted: 0,
        }
    }
}

impl<F: CommandFuture> Commands<F> {
    /// Where completions are sent from elsewhere (the nexus's abort hook).
    pub fn sender(&self) -> mpsc::UnboundedSender<Completion> {
        self.tx.clone()
    }

    /// Runs `cmd` on `nexus`'s target. If it finishes on its first poll, `apply` gets its
    /// completion here, before its task ends; otherwise it runs on as its own task and
    /// its completion comes from [`Commands::next`].
    pub fn submit(&mut self, nexus: &Nexus, cmd: ScsiCommand, apply: impl FnOnce(Completion)) {
        self.submitted += 1;
        let scsi = nexus.target().scsi.clone();
        // In the task set before it runs, so an abort can never miss it.
        let task = scsi.begin_task(&cmd.nexus, cmd.tag, cmd.lun);
        let (tag, opcode) = (cmd.tag, cmd.cdb.first().copied().unwrap_or(0));
        let fut = (self.start)(scsi, cmd, task, nexus.stats().clone());
        let mut run = match self.spare.take() {
            Some(mut slot) => {
                slot.set(Some(fut));
                slot
            }
            None => Box::pin(Some(fut)),
        };
        // The first poll, here. The rest go on as their own task, which polls them again
        // with a real waker (a future registers the waker of its latest poll).
        let mut cx = Context::from_waker(Waker::noop());
        match poll_contained(run.as_mut().as_pin_mut().expect("set"), &mut cx) {
            Poll::Ready(polled) => {
                // A panicked command's task guard is still inside `run`, dropped after
                // its answer is applied, like `task` below.
                let (done, task) = completion(polled, tag, opcode, nexus);
                apply(done);
                run.set(None);
                // Only now is the task over for a task management function waiting on it.
                drop(task);
                self.spare = Some(run);
            }
            Poll::Pending => {
                self.spawned += 1;
                let tx = self.tx.clone();
                let peer = nexus.peer().clone();
                // This reactor does not nap while the command waits (see coalesce).
                let waiting = crate::coalesce::Waiting::start();
                tokio::spawn(async move {
                    let _waiting = waiting;
                    let polled = std::future::poll_fn(|cx| {
                        poll_contained(run.as_mut().as_pin_mut().expect("set"), cx)
                    })
                    .await;
                    let (done, task) = match polled {
                        Some((done, task)) => (done, Some(task)),
                        None => (command_panicked(tag, opcode, &peer), None),
                    };
                    let _ = tx.send(done);
                    drop(task);
                });
            }
        }
    }

    /// Runs a task management function received on `nexus`. `Some`: the response, to
    /// send now. `None`: it aborted tasks, and its response comes from
    /// [`Commands::next`] once they have all ended (SAM-5 7.1).
    pub fn task_management(
        &self,
        nexus: &Nexus,
        function: TmFunction,
        lun: u64,
        referenced: Option<u64>,
        tag: u64,
    ) -> Option<TmResponse> {
        let out = nexus
            .target()
            .scsi
            .task_management(nexus.it(), function, lun, referenced);
        if out.wait.is_empty() && !out.close {
            return Some(out.response);
        }
        let tx = self.tx.clone();
        let (response, close, wait) = (out.response, out.close, out.wait);
        tokio::spawn(async move {
            wait.wait().await;
            let _ = tx.send(Completion::TaskManagement {
                tag,
                response,
                close,
            });
        });
        None
    }

    /// The next completion from elsewhere (never ends: `self` holds a sender).
    pub async fn next(&mut self) -> Completion {
        let c = self
            .rx
            .recv()
            .await
            .expect("the queue holds its own sender");
        self.count(&c);
        c
    }

    /// A completion that is already there, if any.
    pub fn try_next(&mut self) -> Option<Completion> {
        let c = self.rx.try_recv().ok()?;
        self.count(&c);
        Some(c)
    }

    fn count(&mut self, c: &Completion) {
        self.finished += u64::from(matches!(c, Completion::Command { .. }));
    }

    /// Commands submitted since the last call, for wake-up coalescing.
    pub fn take_answered(&mut self) -> u32 {
        std::mem::take(&mut self.submitted)
    }

    /// Waits (until `until`) for the commands still running as their own tasks: a
    /// connection closed while the daemon stops lets its commands finish first.
    pub async fn drain(&mut self, until: tokio::time::Instant) {
        while self.finished < self.spawned {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(c)) => self.count(&c),
                _ => break,
            }
        }
    }
}

/// Polls a command, containing a panic in it to that command: `Ready(None)` if it
/// panicked. Without this a bug in one command's code dropped the whole connection, and
/// the initiator, retrying after its reconnect, met the same panic again and again: to
/// its user a hang, with nothing in the log saying which command.
fn poll_contained<F: Future + ?Sized>(
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<Option<F::Output>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(_) => Poll::Ready(None),
    }
}

/// A command's completion and task guard; for one that panicked (`None`), the answer
/// [`command_panicked`] gives and no guard (it is still in the command's future).
fn completion(
    polled: Option<Finished>,
    tag: u64,
    opcode: u8,
    nexus: &Nexus,
) -> (Completion, Option<TaskGuard>) {
    match polled {
        Some((done, task)) => (done, Some(task)),
        None => (command_panicked(tag, opcode, nexus.peer()), None),
    }
}

/// The answer to a command whose code panicked: CHECK CONDITION, HARDWARE ERROR,
/// INTERNAL TARGET FAILURE (SPC-4 4.5.6, 44/00), fixed format. The connection and its
/// other commands go on; the panic itself was printed by the panic hook.
fn command_panicked(tag: u64, opcode: u8, peer: &str) -> Completion {
    use rtgt_scsi::sense::{asc, key, Sense};
    tracing::error!(
        peer,
        tag,
        opcode = format_args!("{opcode:#04x}"),
        "command failed: internal error (panic); answered HARDWARE ERROR 44/00"
    );
    Completion::Command {
        tag,
        result: ScsiResult {
            status: rtgt_scsi::status::CHECK_CONDITION,
            sense: Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).encode(false),
            ..ScsiResult::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_command_is_contained_and_answered_hardware_error_44_00() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut ok = Box::pin(async { 7 });
        assert_eq!(poll_contained(ok.as_mut(), &mut cx), Poll::Ready(Some(7)));
        let mut bad = Box::pin(async {
            if std::hint::black_box(true) {
                panic!("a bug in a command");
            }
            7
        });
        assert_eq!(poll_contained(bad.as_mut(), &mut cx), Poll::Ready(None));
        let Completion::Command { tag, result } = command_panicked(42, 0x28, "127.0.0.1:1") else {
            panic!("not a command completion");
        };
        assert_eq!((tag, result.aborted, result.status), (42, false, 0x02));
        // Fixed format: response code 70h, sense key byte 2, ASC/ASCQ bytes 12-13.
        assert_eq!(result.sense[0] & 0x7f, 0x70);
        assert_eq!(result.sense[2] & 0x0f, 0x04, "HARDWARE ERROR");
        assert_eq!((result.sense[12], result.sense[13]), (0x44, 0x00));
    }
}
