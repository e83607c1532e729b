//! Ctrl-C and SIGTERM as a flag. A program that starts servers must not die
//! at once on Ctrl-C: it would leave them running behind a class. Instead
//! the signal sets [`INTERRUPTED`], every wait in this crate checks it and
//! returns [`Error::Interrupted`], and the handles' drops stop the processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::Error;

/// Set by Ctrl-C or SIGTERM once [`catch_signals`] ran; every wait checks it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Routes Ctrl-C and SIGTERM to [`INTERRUPTED`] instead of killing the
/// process at once, so the cleanup code runs.
pub fn catch_signals() -> std::io::Result<()> {
    // signal-hook sets its own flag from the handler (the only thing a
    // handler may safely do); a thread copies it to ours.
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        INTERRUPTED.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// [`Error::Interrupted`] once Ctrl-C was pressed.
pub fn check_interrupt() -> Result<(), Error> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    Ok(())
}
