//! Standard output for every command, the load tests' included. `println!` panics when
//! stdout is closed (`tsunagu status | head -1`); [`outln!`](crate::outln) and
//! [`out!`](crate::out) return the failure instead, as [`OutputError`], so that a command
//! stops where it is, unwinds normally (closing what it opened), and `main` ends quietly
//! with exit code 0 when the reader went away. `println!` is denied in the binary's and
//! the load tests' crates (`clippy::print_stdout`).

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

/// An error and its causes on one line, `a: b: c`, without repeating what a level
/// already said: many errors print their source in their own message and return it as
/// their source too (`Input/output error: Connection refused` then `Connection
/// refused`), and a repeated run of parts (`x: y: x: y`) is printed once.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut levels: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || levels.iter().any(|printed| printed.contains(text)) {
            continue;
        }
        levels.push(text.to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for level in &levels {
        parts.extend(level.split(": "));
    }
    drop_repeated_runs(&mut parts);
    parts.join(": ")
}

/// Removes every run of parts that directly repeats the run before it.
fn drop_repeated_runs(parts: &mut Vec<&str>) {
    let mut i = 0;
    while i < parts.len() {
        let mut removed = false;
        for run in 1..=(parts.len() - i) / 2 {
            if parts[i..i + run] == parts[i + run..i + 2 * run] {
                parts.drain(i + run..i + 2 * run);
                removed = true;
                break;
            }
        }
        if !removed {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Input/output error: {0}")]
    struct Io(#[source] std::io::Error);

    #[test]
    fn a_cause_the_message_already_contains_is_printed_once() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let error = anyhow::Error::new(Io(refused))
            .context("Input/output error: Input/output error: Connection refused (os error 111)")
            .context("mysql at 127.0.0.1:1 (--target)");
        assert_eq!(
            error_chain(&error),
            "mysql at 127.0.0.1:1 (--target): Input/output error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn distinct_causes_all_print_in_order() {
        let error = anyhow::anyhow!("connection refused")
            .context("cannot open the primary")
            .context("status");
        assert_eq!(
            error_chain(&error),
            "status: cannot open the primary: connection refused"
        );
        let mut parts = vec!["a", "b", "c", "b", "c", "d", "d"];
        drop_repeated_runs(&mut parts);
        assert_eq!(parts, ["a", "b", "c", "d"]);
    }
}
