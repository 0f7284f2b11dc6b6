//! Where kubefedctl speaks: result lines on stdout (`... created`), and klog-formatted progress and warnings on
//! stderr (`I0102 15:04:05.000000   12345 join.rs:42] Creating ...`), gated by `--v` as upstream's klog flags gate
//! them, so scripts and eyes that know upstream's output read ours the same way.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

/// klog severities kubefedctl uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Fatal,
}

impl Severity {
    fn letter(self) -> char {
        match self {
            Severity::Info => 'I',
            Severity::Warning => 'W',
            Severity::Error => 'E',
            Severity::Fatal => 'F',
        }
    }
}

type Sink = Mutex<Box<dyn Write + Send>>;

/// The two output streams and the `--v` level.
pub struct Console {
    verbosity: u32,
    out: Sink,
    err: Sink,
}

impl Console {
    pub fn new(verbosity: u32, out: Box<dyn Write + Send>, err: Box<dyn Write + Send>) -> Self {
        Self {
            verbosity,
            out: Mutex::new(out),
            err: Mutex::new(err),
        }
    }

    /// stdout and stderr of this process.
    pub fn stdio(verbosity: u32) -> Self {
        Self::new(
            verbosity,
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
        )
    }

    pub fn verbosity(&self) -> u32 {
        self.verbosity
    }

    /// A klog line on stderr if `level <= --v` (warnings and errors pass `level` 0). Losing a log line to a closed
    /// stderr must not fail the command, so write errors are ignored here.
    pub fn log(&self, severity: Severity, level: u32, file: &str, line: u32, args: fmt::Arguments<'_>) {
        if level > self.verbosity {
            return;
        }
        let base = file.rsplit('/').next().unwrap_or(file);
        let header = klog_header(severity, SystemTime::now(), std::process::id(), base, line);
        let mut sink = self.err.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = writeln!(sink, "{header}{args}");
        let _ = sink.flush();
    }

    /// A result line on stdout.
    pub fn print(&self, args: fmt::Arguments<'_>) -> Result<(), Error> {
        let mut sink = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writeln!(sink, "{args}")
            .and_then(|()| sink.flush())
            .map_err(Error::Output)
    }

    /// Raw text on stdout (YAML documents).
    pub fn write(&self, text: &str) -> Result<(), Error> {
        let mut sink = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sink.write_all(text.as_bytes())
            .and_then(|()| sink.flush())
            .map_err(Error::Output)
    }
}

/// `klog!(console, Severity::Info, 2, "...", args)`: a log line with this source file and line in its header.
macro_rules! klog {
    ($console:expr, $severity:expr, $level:expr, $($arg:tt)*) => {
        $console.log($severity, $level, file!(), line!(), format_args!($($arg)*))
    };
}
/// `v2!(console, ...)`: what upstream logs with `klog.V(2).Infof`.
macro_rules! v2 {
    ($console:expr, $($arg:tt)*) => {
        $crate::kubefedctl::console::klog!($console, $crate::kubefedctl::console::Severity::Info, 2, $($arg)*)
    };
}
/// `info!(console, ...)`: what upstream logs with `klog.Infof` (always shown).
macro_rules! info {
    ($console:expr, $($arg:tt)*) => {
        $crate::kubefedctl::console::klog!($console, $crate::kubefedctl::console::Severity::Info, 0, $($arg)*)
    };
}
/// `warning!(console, ...)`: what upstream logs with `klog.Warningf`.
macro_rules! warning {
    ($console:expr, $($arg:tt)*) => {
        $crate::kubefedctl::console::klog!($console, $crate::kubefedctl::console::Severity::Warning, 0, $($arg)*)
    };
}
pub(crate) use {info, klog, v2, warning};

/// klog's header, `Lmmdd hh:mm:ss.uuuuuu threadid file:line] `, in UTC (klog uses local time; hosts that run
/// clusters keep UTC, and reading the zone database is not worth it for a log prefix).
pub fn klog_header(severity: Severity, now: SystemTime, pid: u32, file: &str, line: u32) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (_, month, day) = civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{}{month:02}{day:02} {:02}:{:02}:{:02}.{:06} {pid:>7} {file}:{line}] ",
        severity.letter(),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// (year, month, day) of a day count since 1970-01-01, Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[test]
    fn days_map_to_the_civil_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn headers_are_klogs() {
        let t = UNIX_EPOCH + Duration::from_secs(19_723 * 86_400 + 3_723) + Duration::from_micros(42);
        assert_eq!(
            klog_header(Severity::Info, t, 12345, "join.rs", 7),
            "I0101 01:02:03.000042   12345 join.rs:7] "
        );
        assert!(klog_header(Severity::Fatal, t, 1, "a.rs", 1).starts_with("F0101 "));
    }

    #[test]
    fn verbose_lines_show_only_at_their_level_and_results_go_to_stdout() {
        let (out, err) = (Buffer::default(), Buffer::default());
        let console = Console::new(1, Box::new(out.clone()), Box::new(err.clone()));
        v2!(console, "hidden {}", 1);
        warning!(console, "careful");
        console.print(format_args!("thing created")).unwrap();
        assert_eq!(out.text(), "thing created\n");
        let err = err.text();
        assert!(!err.contains("hidden"));
        assert!(
            err.starts_with('W') && err.contains("console.rs:") && err.ends_with("] careful\n"),
            "{err}"
        );
    }
}
