//! Progress bars and log lines on one terminal. A bar redraws its line on stderr; a log
//! line written over it tears both. While a bar is shown ([`shown`]), [`LogWriter`] (the
//! tracing writer) hides the bar, writes the line and redraws the bar below it.

use indicatif::ProgressBar;
use std::io::{self, Write};
use std::sync::Mutex;

/// The bar on screen, if any.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Routes log lines around `bar` until the guard is dropped.
pub fn shown(bar: &ProgressBar) -> ShownGuard {
    if let Ok(mut shown) = SHOWN.lock() {
        *shown = Some(bar.clone());
    }
    ShownGuard
}

/// See [`shown`].
pub struct ShownGuard;

impl Drop for ShownGuard {
    fn drop(&mut self) {
        if let Ok(mut shown) = SHOWN.lock() {
            *shown = None;
        }
    }
}

/// Standard error for log lines, suspending the bar on screen while one is written (the
/// fmt subscriber writes each event with one `write_all`).
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = SHOWN.lock().ok().and_then(|shown| shown.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
