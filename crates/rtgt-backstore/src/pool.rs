//! The daemon's I/O worker pool for blocking system calls (rdwr's pread/pwrite/fdatasync,
//! block device ioctls): a fixed number of threads, `rtgtd -t/--nr_iothreads N` as
//! tgtd's. One pool serves every LUN, so many LUNs don't multiply threads; an I/O waits
//! for a free thread when all are busy.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// tgtd's default number of I/O threads.
pub const DEFAULT_IO_THREADS: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

pub struct IoPool {
    tx: mpsc::Sender<Job>,
    threads: usize,
}

static POOL: OnceLock<IoPool> = OnceLock::new();

impl IoPool {
    fn start(threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("rtgt-io-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, not while running it.
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("spawning an I/O thread");
        }
        Self { tx, threads }
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Sets the pool size; must come before the first I/O. Returns false (and changes
/// nothing) if the pool already runs.
pub fn init(threads: usize) -> bool {
    let mut fresh = false;
    POOL.get_or_init(|| {
        fresh = true;
        IoPool::start(threads)
    });
    fresh
}

/// The pool, started with the default size if [`init`] was not called.
pub fn pool() -> &'static IoPool {
    POOL.get_or_init(|| IoPool::start(DEFAULT_IO_THREADS))
}

/// Runs `f` on a pool thread and waits for it without blocking the caller's thread.
pub async fn run<T, F>(f: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(f());
    });
    pool()
        .tx
        .send(job)
        .map_err(|_| std::io::Error::other("I/O pool stopped"))?;
    result
        .await
        .map_err(|_| std::io::Error::other("I/O thread panicked"))?
}

/// Runs `f` on a pool thread without waiting for it.
pub fn spawn(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    pool()
        .tx
        .send(Box::new(f))
        .map_err(|_| std::io::Error::other("I/O pool stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_caller_thread() {
        let me = std::thread::current().id();
        let (name, id) = run(|| {
            Ok((
                std::thread::current().name().unwrap_or("").to_string(),
                std::thread::current().id(),
            ))
        })
        .await
        .unwrap();
        assert!(name.starts_with("rtgt-io-"), "{name}");
        assert_ne!(id, me);
        let e = run::<(), _>(|| Err(std::io::Error::other("boom")))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }
}
