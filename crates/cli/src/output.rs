//! Standard output for every command. `println!` panics when stdout is closed
//! (`tsunagu status | head -1`); [`outln!`](crate::outln) and [`out!`](crate::out) return
//! the failure instead, as [`OutputError`], so that a command stops where it is, unwinds
//! normally (closing what it opened), and `main` ends quietly with exit code 0 when the
//! reader went away. `println!` is denied in this crate (`clippy::print_stdout`).

use std::io::{self, Write};

/// Writing to standard output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed its end (`| head`): not a failure of the command.
    #[error("standard output was closed")]
    Closed,
    #[error("cannot write to standard output: {0}")]
    Failed(io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Failed(e)
        }
    }
}

/// Writes `args` to stdout, with a newline when `newline`.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    if newline {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Whether `error` is (caused by) standard output being closed by its reader.
pub fn closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<OutputError>(),
            Some(OutputError::Closed)
        )
    })
}

/// `println!` that returns an [`OutputError`] instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), true)
    };
}

/// `print!` that returns an [`OutputError`] instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), false)
    };
}
