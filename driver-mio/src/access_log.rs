//! The access log: one line per finished request, at info level on its own
//! target, [`ACCESS_LOG_TARGET`], so a logger can route or filter it.
//!
//! A line is [logfmt](https://brandur.org/logfmt): `key=value` pairs
//! separated by spaces, in a fixed order, values quoted only when they hold a
//! space, `=`, `"` or a control character —
//!
//! ```text
//! ts=2025-05-01T12:34:56.789Z peer=127.0.0.1:51234 method=GET target=/ status=200 bytes=13 dur_ms=0.123 keep_alive=true outcome=complete
//! ts=2025-05-01T12:34:57.012Z peer=127.0.0.1:51240 method=- target=- status=400 bytes=28 dur_ms=0.045 keep_alive=false outcome=rejected reason="invalid header"
//! ```
//!
//! - `ts`: when it finished, UTC, to the millisecond (RFC 3339).
//! - `peer`: the client's address.
//! - `method`, `target`: as the application saw them; `-` for a request core
//!   refused or cut before handing it over (core does not report what it
//!   parsed of those).
//! - `status`: of the response queued, `-` if none was.
//! - `bytes`: response body bytes (0 for `HEAD`, 204 and 304).
//! - `dur_ms`: from the request's first byte to its end — the response's
//!   last byte handed to the socket, or the close that ended it — in
//!   milliseconds to the microsecond.
//! - `keep_alive`: whether the connection stays open for another request.
//! - `outcome`: [`Outcome::label`]: `complete`, `rejected`, `app-fault`,
//!   `cut` (by the drain deadline or a forced exit), `client-gone` or
//!   `stalled`.
//! - `reason`: for `rejected` and the unfinished outcomes only, why, in words.
//!
//! Lines are formatted into one buffer the worker reuses: logging a request
//! allocates nothing.

use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebb_core::{Finished, Outcome, Time};

/// The `log` target of the access log's lines.
pub const ACCESS_LOG_TARGET: &str = "ebb::access";

/// A worker's access-log formatter: the line buffer and the clock mapping.
#[derive(Debug)]
pub(crate) struct AccessLog {
    line: String,
    /// Wall-clock time at core's epoch, since the Unix epoch.
    epoch_wall: Duration,
    /// The wall-clock second `second_text` spells, as seconds since the Unix
    /// epoch; `u64::MAX` before the first line.
    second: u64,
    /// `ts=YYYY-MM-DDTHH:MM:SS` of `second`.
    second_text: String,
}

impl AccessLog {
    /// A formatter for a worker whose core clock started at `start`.
    pub(crate) fn new(start: Instant) -> AccessLog {
        let since_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        AccessLog {
            line: String::with_capacity(256),
            epoch_wall: since_unix.saturating_sub(start.elapsed()),
            second: u64::MAX,
            second_text: String::with_capacity(22),
        }
    }

    /// The line for `finished`, a request from `peer` named `name` (method
    /// and target) if it was dispatched.
    pub(crate) fn line(
        &mut self,
        peer: &str,
        name: Option<(&str, &str)>,
        finished: &Finished,
    ) -> &str {
        let (method, target) = name.unwrap_or(("-", "-"));
        self.line.clear();
        // Room for all of it at once: one check instead of one per piece.
        self.line
            .reserve(LINE_BYTES_FIXED + peer.len() + method.len() + target.len());
        self.push_timestamp(finished.finished_at);
        let line = &mut self.line;
        line.push_str(" peer=");
        line.push_str(peer);
        // A method is a token: it never needs quotes.
        line.push_str(" method=");
        line.push_str(method);
        line.push_str(" target=");
        push_value(line, target);
        line.push_str(" status=");
        match finished.status {
            Some(status) => push_number(line, status.into()),
            None => line.push('-'),
        }
        line.push_str(" bytes=");
        push_number(line, finished.body_bytes);
        line.push_str(" dur_ms=");
        let duration = finished.finished_at - finished.began_at;
        push_number(line, duration.as_millis() as u64);
        push_three_digits(line, duration.subsec_micros() % 1000);
        line.push_str(if finished.keeps_connection {
            " keep_alive=true outcome="
        } else {
            " keep_alive=false outcome="
        });
        line.push_str(finished.outcome.label());
        let reason = match finished.outcome {
            Outcome::Rejected(reject) => Some(reject.detail()),
            Outcome::Unfinished(reason) => Some(reason.explain()),
            Outcome::Complete | Outcome::AppFault => None,
        };
        if let Some(reason) = reason {
            line.push_str(" reason=");
            push_value(line, reason);
        }
        &self.line
    }

    /// Appends `ts=` and `at` as wall-clock UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn push_timestamp(&mut self, at: Time) {
        let wall = self.epoch_wall + at.since_epoch();
        let second = wall.as_secs();
        if second != self.second {
            self.second = second;
            self.second_text.clear();
            let (days, of_day) = (second / 86_400, second % 86_400);
            let (year, month, day) = civil_from_days(days);
            let _ = write!(
                self.second_text,
                "ts={year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                of_day / 3600,
                of_day / 60 % 60,
                of_day % 60
            );
        }
        self.line.push_str(&self.second_text);
        push_three_digits(&mut self.line, wall.subsec_millis());
        self.line.push('Z');
    }
}

/// A line's length without its peer, method, target and reason, rounded up.
const LINE_BYTES_FIXED: usize = 192;

/// Appends `n` in decimal, a digit at a time: the numbers here are short,
/// and copying a formatted slice would cost a `memcpy` call each.
fn push_number(line: &mut String, mut n: u64) {
    let mut digits = [0; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        line.push(char::from(digit));
    }
}

/// Appends `.` and `n` (below 1000) as three digits.
fn push_three_digits(line: &mut String, n: u32) {
    line.push('.');
    line.push(char::from(b'0' + (n / 100) as u8));
    line.push(char::from(b'0' + (n / 10 % 10) as u8));
    line.push(char::from(b'0' + (n % 10) as u8));
}

/// Appends a logfmt value: as it is, or quoted (with `"` and `\` escaped,
/// control characters as `\u00XX`) when it is empty or holds a space, `=`,
/// `"`, `\` or a control character.
fn push_value(line: &mut String, value: &str) {
    let plain = !value.is_empty() && !value.bytes().any(needs_quotes);
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Whether a value holding byte `b` must be quoted.
fn needs_quotes(b: u8) -> bool {
    b <= b' ' || matches!(b, b'=' | b'"' | b'\\' | 0x7f)
}

/// The proleptic Gregorian date of `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::{CloseReason, Config, Reject, Server};

    fn finished(outcome: Outcome, status: Option<u16>) -> Finished {
        Finished {
            conn: Server::new(Config::default()).handle_accept(Time::ZERO),
            request: None,
            status,
            body_bytes: 13,
            outcome,
            began_at: Time::from_millis(1_000),
            responded_at: status.map(|_| Time::from_millis(1_001)),
            finished_at: Time::from_nanos(1_002_345_678),
            keeps_connection: outcome == Outcome::Complete,
        }
    }

    /// A formatter whose core epoch is 2025-05-01T12:34:55Z.
    fn access_log() -> AccessLog {
        let mut log = AccessLog::new(Instant::now());
        log.epoch_wall = Duration::from_secs(1_746_102_895);
        log
    }

    #[test]
    fn a_complete_request_is_one_logfmt_line() {
        let mut log = access_log();
        let line = log.line(
            "127.0.0.1:5555",
            Some(("GET", "/")),
            &finished(Outcome::Complete, Some(200)),
        );
        assert_eq!(
            line,
            "ts=2025-05-01T12:34:56.002Z peer=127.0.0.1:5555 method=GET target=/ status=200 \
             bytes=13 dur_ms=2.345 keep_alive=true outcome=complete"
        );
    }

    #[test]
    fn refused_and_cut_requests_say_why_and_lack_what_is_unknown() {
        let mut log = access_log();
        let rejected = finished(Outcome::Rejected(Reject::TargetTooLong), Some(414));
        assert!(log.line("[::1]:80", None, &rejected).ends_with(
            "method=- target=- status=414 bytes=13 dur_ms=2.345 keep_alive=false \
             outcome=rejected reason=\"request target too long\""
        ));
        let cut = finished(Outcome::Unfinished(CloseReason::DeadlineCut), None);
        let line = log.line("[::1]:80", Some(("GET", "/sleep?ms=9")), &cut);
        assert!(line.contains(" target=\"/sleep?ms=9\" status=- "), "{line}");
        assert!(line.ends_with(" outcome=cut reason=\"the drain deadline cut the connection\""));
    }

    #[test]
    fn values_are_quoted_and_escaped_only_when_needed() {
        let quoted = |value: &str| {
            let mut line = String::new();
            push_value(&mut line, value);
            line
        };
        assert_eq!(quoted("/a/b%20c?"), "/a/b%20c?");
        assert_eq!(quoted("/é"), "/é");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a b"), "\"a b\"");
        assert_eq!(quoted("/?q=\"x\\\""), "\"/?q=\\\"x\\\\\\\"\"");
        assert_eq!(quoted("a\u{1b}"), "\"a\\u001b\"");
    }

    #[test]
    fn numbers_are_plain_decimal() {
        for n in [0, 7, 10, 200, 65_535, 1_000_001, u64::MAX] {
            let mut line = String::new();
            push_number(&mut line, n);
            assert_eq!(line, n.to_string());
        }
    }

    #[test]
    fn dates_are_proleptic_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_209), (2025, 5, 1));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
    }
}
