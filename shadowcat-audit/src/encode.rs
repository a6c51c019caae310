//! Serialization of one event into the bytes of one log line.
//!
//! Every string goes through [`SafeFormatter`], so a line never contains a raw control
//! character, ANSI escape or Unicode line separator, whatever the event carries.

use std::io;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use crate::event::{AuditEvent, SCHEMA_VERSION};
use crate::redact::{HashedField, Redactor};

/// A compact JSON formatter that also neutralizes text a terminal or log viewer would
/// act on.
///
/// On top of serde_json's escaping (quote, backslash, U+0000 to U+001F):
/// - ESC (U+001B) and the C1 controls (U+0080 to U+009F, which include the one-byte CSI)
///   become U+FFFD, so no decoded record can start an ANSI sequence;
/// - DEL, U+2028, U+2029 and the bidirectional overrides (U+202A to U+202E, U+2066 to
///   U+2069) are written as `\uXXXX` escapes, so the raw file shows them as text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SafeFormatter;

impl Formatter for SafeFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        // Fast path: printable ASCII needs no work.
        if fragment.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
            return writer.write_all(fragment.as_bytes());
        }

        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            let replacement = match ch {
                '\u{80}'..='\u{9f}' => Replacement::Fffd,
                '\u{7f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' => Replacement::Escape(ch as u32),
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            match replacement {
                Replacement::Fffd => writer.write_all(b"\\ufffd")?,
                Replacement::Escape(code) => write!(writer, "\\u{code:04x}")?,
            }
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W>(&mut self, writer: &mut W, char_escape: CharEscape) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        match char_escape {
            CharEscape::AsciiControl(0x1b) => writer.write_all(b"\\ufffd"),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }
}

enum Replacement {
    Fffd,
    Escape(u32),
}

/// Appends `value` to `out` as a JSON value, escaped by [`SafeFormatter`].
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, SafeFormatter);
    // Writing into a Vec cannot fail, and every value written here is a string, a
    // number or a derived enum, which always serialize.
    value
        .serialize(&mut serializer)
        .expect("audit fields serialize to JSON");
}

/// Formats record timestamps, reusing the date and time of day while the second is the
/// same.
#[derive(Debug, Default)]
pub(crate) struct TimestampFormatter {
    cached_second: Option<u64>,
    prefix: [u8; 19],
}

impl TimestampFormatter {
    /// Appends `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` (with quotes) for `time` in UTC. Times
    /// before 1970 are written as the epoch.
    pub(crate) fn write(&mut self, time: SystemTime, out: &mut Vec<u8>) {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if self.cached_second != Some(second) {
            self.prefix = format_second(second);
            self.cached_second = Some(second);
        }
        out.push(b'"');
        out.extend_from_slice(&self.prefix);
        out.push(b'.');
        push_padded(out, u64::from(since_epoch.subsec_micros()), 6);
        out.extend_from_slice(b"Z\"");
    }
}

/// Returns `YYYY-MM-DDTHH:MM:SS` for a Unix second.
fn format_second(second: u64) -> [u8; 19] {
    let datetime = i64::try_from(second)
        .ok()
        .and_then(|second| time::OffsetDateTime::from_unix_timestamp(second).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut text = Vec::with_capacity(19);
    push_padded(&mut text, u64::try_from(datetime.year()).unwrap_or(0), 4);
    text.push(b'-');
    push_padded(&mut text, u64::from(u8::from(datetime.month())), 2);
    text.push(b'-');
    push_padded(&mut text, u64::from(datetime.day()), 2);
    text.push(b'T');
    push_padded(&mut text, u64::from(datetime.hour()), 2);
    text.push(b':');
    push_padded(&mut text, u64::from(datetime.minute()), 2);
    text.push(b':');
    push_padded(&mut text, u64::from(datetime.second()), 2);
    let mut prefix = [0u8; 19];
    prefix.copy_from_slice(&text);
    prefix
}

/// Appends `value` in decimal, left-padded with zeros to `width` digits.
pub(crate) fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut rest = value;
    let mut index = digits.len();
    loop {
        index -= 1;
        digits[index] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let used = digits.len() - index;
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(used)));
    out.extend_from_slice(&digits[index..]);
}

/// Turns events into the canonical part of a log line.
#[derive(Debug)]
pub(crate) struct Encoder {
    timestamps: TimestampFormatter,
    redactor: Redactor,
}

impl Encoder {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self {
            timestamps: TimestampFormatter::default(),
            redactor,
        }
    }

    /// Appends the canonical body of a record without its closing brace:
    /// `{"v":1,"seq":…,"ts":…,"kind":…,<payload>,<context>,"prev":"…"`.
    ///
    /// Hashed fields are replaced by their hashes before anything is written.
    pub(crate) fn write_body(
        &mut self,
        event: &mut AuditEvent,
        seq: u64,
        prev_hex: &[u8; 64],
        out: &mut Vec<u8>,
    ) {
        self.redactor.redact_kind(&mut event.kind);

        out.extend_from_slice(b"{\"v\":");
        push_padded(out, u64::from(SCHEMA_VERSION), 1);
        out.extend_from_slice(b",\"seq\":");
        push_padded(out, seq, 1);
        out.extend_from_slice(b",\"ts\":");
        self.timestamps.write(event.time, out);

        // The payload serializes as `{"kind":…,…}`: its opening brace becomes the comma
        // after `ts`, and its closing brace is dropped so the context can follow.
        let payload_start = out.len();
        write_json(out, &event.kind);
        out[payload_start] = b',';
        out.pop();

        if let Some(request_id) = event.request_id {
            out.extend_from_slice(b",\"request_id\":\"");
            push_hex_u64(out, request_id.as_u64());
            out.push(b'"');
        }
        if let Some(session_id) = event.session_id {
            out.extend_from_slice(b",\"session_id\":");
            if self.redactor.hashes(HashedField::SessionId) {
                let hashed = self.redactor.hash_field(&session_id.to_string());
                write_json(out, hashed.as_str());
            } else {
                out.push(b'"');
                let mut hex = [0u8; 32];
                hex::encode_to_slice(session_id.as_bytes(), &mut hex)
                    .expect("32 hex digits fit 16 bytes");
                out.extend_from_slice(&hex);
                out.push(b'"');
            }
        }
        if let Some(client_ip) = event.client_ip {
            out.extend_from_slice(b",\"client_ip\":");
            self.write_ip(client_ip, out);
        }
        if let Some(subject) = &event.subject {
            out.extend_from_slice(b",\"subject\":");
            if self.redactor.hashes(HashedField::Subject) {
                write_json(out, self.redactor.hash_field(subject.as_str()).as_str());
            } else {
                write_json(out, subject.as_str());
            }
        }

        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(prev_hex);
        out.push(b'"');
    }

    fn write_ip(&self, client_ip: IpAddr, out: &mut Vec<u8>) {
        use std::io::Write as _;

        if self.redactor.hashes(HashedField::ClientIp) {
            let hashed = self.redactor.hash_field(&client_ip.to_string());
            write_json(out, hashed.as_str());
            return;
        }
        // An address's text form needs no escaping. IPv4 is written by hand because the
        // `Display` implementation costs several times more per record.
        match client_ip {
            IpAddr::V4(v4) => {
                out.push(b'"');
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        out.push(b'.');
                    }
                    push_padded(out, u64::from(octet), 1);
                }
                out.push(b'"');
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "\"{v6}\"");
            }
        }
    }
}

fn push_hex_u64(out: &mut Vec<u8>, value: u64) {
    let mut hex = [0u8; 16];
    hex::encode_to_slice(value.to_be_bytes(), &mut hex).expect("16 hex digits fit 8 bytes");
    out.extend_from_slice(&hex);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn json_string(text: &str) -> String {
        let mut out = Vec::new();
        write_json(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamp_has_microseconds_and_zulu() {
        let mut formatter = TimestampFormatter::default();
        let mut out = Vec::new();
        let time = UNIX_EPOCH + Duration::new(1_780_000_000, 123_456_789);
        formatter.write(time, &mut out);
        assert_eq!(out, b"\"2026-05-28T20:26:40.123456Z\"");
    }

    #[test]
    fn timestamp_cache_tracks_second_changes() {
        let mut formatter = TimestampFormatter::default();
        let mut first = Vec::new();
        let mut second = Vec::new();
        formatter.write(UNIX_EPOCH + Duration::from_micros(59_999_999), &mut first);
        formatter.write(UNIX_EPOCH + Duration::from_micros(60_000_001), &mut second);
        assert_eq!(first, b"\"1970-01-01T00:00:59.999999Z\"");
        assert_eq!(second, b"\"1970-01-01T00:01:00.000001Z\"");
    }

    #[test]
    fn escape_sequences_become_replacement_chars() {
        assert_eq!(json_string("a\u{1b}[31mb"), r#""a\ufffd[31mb""#);
        assert_eq!(json_string("x\u{9b}y"), r#""x\ufffdy""#);
    }

    #[test]
    fn line_breaks_and_bidi_are_escaped() {
        assert_eq!(json_string("a\nb\rc"), r#""a\nb\rc""#);
        assert_eq!(
            json_string("p\u{2028}q\u{202e}r\u{7f}"),
            r#""p\u2028q\u202er\u007f""#
        );
    }

    #[test]
    fn other_unicode_passes_through() {
        assert_eq!(json_string("héllo ✓"), "\"héllo ✓\"");
    }

    #[test]
    fn client_ip_text_matches_display() {
        let encoder = Encoder::new(Redactor::default());
        for text in [
            "0.0.0.0",
            "192.0.2.7",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let mut out = Vec::new();
            encoder.write_ip(text.parse().unwrap(), &mut out);
            assert_eq!(out, format!("\"{text}\"").into_bytes());
        }
    }

    #[test]
    fn padded_numbers() {
        let mut out = Vec::new();
        push_padded(&mut out, 7, 3);
        push_padded(&mut out, 12345, 2);
        push_padded(&mut out, u64::MAX, 20);
        assert_eq!(
            out,
            b"00712345"
                .iter()
                .chain(b"18446744073709551615")
                .copied()
                .collect::<Vec<_>>()
        );
    }
}
