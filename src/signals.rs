//! Process signals for the long-running commands: SIGINT/SIGTERM ask for a clean stop
//! (every alert flushed), SIGHUP asks to reopen output files (logrotate).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static STOP: AtomicBool = AtomicBool::new(false);
static REOPEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}
extern "C" fn on_hup(_: libc::c_int) {
    REOPEN.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM stop capture and flush everything; SIGHUP reopens output files.
pub fn install() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reopen = Arc::new(AtomicBool::new(false));
    let (s, r) = (stop.clone(), reopen.clone());
    std::thread::Builder::new()
        .name("portent-signals".into())
        .spawn(move || loop {
            if STOP.load(Ordering::Relaxed) {
                s.store(true, Ordering::Relaxed);
            }
            if REOPEN.swap(false, Ordering::Relaxed) {
                r.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        })
        .ok();
    (stop, reopen)
}
