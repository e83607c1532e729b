//! Standard output: one buffered writer for every line the sniffer prints
//! (findings, summaries, followed streams, guard verdicts), a closed pipe
//! ending the program quietly, the finding printer the commands hand to the
//! analyzer, and the summary printed when it is done.

use std::io::Write;

use sniffer::analyze::Analyzer;
use sniffer::findings::Finding;
use sniffer::reassembly::ConnId;
use sniffer::report::{self, Printer};

thread_local! {
    /// Findings go out in big writes, not one system call per line: a
    /// capture can hold millions of them. `flush_out` runs after every
    /// live frame and at the end.
    static OUT: std::cell::RefCell<std::io::BufWriter<std::io::Stdout>> =
        std::cell::RefCell::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()));
}

/// A closed pipe (`sniffer ... | head`) ends the program quietly; any
/// other failure to write is one line and exit 2.
fn quiet_on_broken_pipe(r: std::io::Result<()>) {
    if let Err(e) = r {
        protocol::display::stdout_failed(e);
    }
}

/// Writes a line to stdout.
pub(crate) fn out(line: &str) {
    OUT.with(|o| quiet_on_broken_pipe(writeln!(o.borrow_mut(), "{line}")));
}

/// Writes raw bytes to stdout.
pub(crate) fn out_bytes(data: &[u8]) {
    OUT.with(|o| quiet_on_broken_pipe(o.borrow_mut().write_all(data)));
}

/// Sends what is buffered.
pub(crate) fn flush_out() {
    OUT.with(|o| quiet_on_broken_pipe(o.borrow_mut().flush()));
}

/// The analyzer's sink for findings: each one printed as `p` says (nothing
/// when quiet), as it is found.
pub(crate) fn print_finding(p: Printer) -> impl FnMut(ConnId, f64, &Finding) {
    move |conn, ts, f| {
        if let Some(line) = p.line(conn, ts, f) {
            out(&line);
        }
    }
}

/// The summary of what the analyzer saw: a table, or JSON lines.
pub(crate) fn print_summary(a: &Analyzer<'_>, json: bool, wide: bool) {
    out(report::summary(
        &a.summaries,
        &a.totals,
        &a.stats,
        a.connections(),
        a.bytes(),
        json,
        report::Look::for_stdout(wide),
    )
    .trim_end());
}
