//! `--save-config FILE`: the running configuration written to FILE after every change
//! (atomically, the previous file kept as FILE.bak), so a restart with
//! `--config FILE` brings back exactly what ran.
//!
//! Changes are signalled by the registry's change hook; a thread writes them, a burst
//! of changes (a `config apply`, an `rtgtadm --batch`) in one write.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rtgt_target::Registry;

/// Changes within this time of the first are written together.
const COALESCE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    dirty: bool,
    stop: bool,
}

pub struct Saver {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Writes the running configuration to `path` now.
pub fn save(registry: &Registry, path: &Path) -> std::io::Result<()> {
    let text = rtgt_target::config::running(registry).to_toml();
    rtgt_target::atomic_file::write_atomically(path, text.as_bytes())
}

impl Saver {
    /// Starts saving to `path` on every change (after detaching: threads don't survive
    /// fork).
    pub fn start(registry: &Arc<Registry>, path: PathBuf) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let hook = shared.clone();
        registry.add_change_hook(Box::new(move || {
            hook.0.lock().dirty = true;
            hook.1.notify_one();
        }));
        let reg = registry.clone();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rtgtd-save".into())
            .spawn(move || loop {
                let mut st = s.0.lock();
                while !st.dirty && !st.stop {
                    s.1.wait(&mut st);
                }
                if !st.dirty {
                    return;
                }
                let stopping = st.stop;
                drop(st);
                if !stopping {
                    std::thread::sleep(COALESCE);
                }
                s.0.lock().dirty = false;
                match save(&reg, &path) {
                    Ok(()) => tracing::debug!("configuration saved to {}", path.display()),
                    Err(e) => tracing::error!(
                        "--save-config: can't write {}: {e}; the change is not saved",
                        path.display()
                    ),
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Writes what is still unsaved and stops.
    pub fn finish(mut self) {
        self.shared.0.lock().stop = true;
        self.shared.1.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
