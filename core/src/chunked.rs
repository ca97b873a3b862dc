//! A strict, streaming decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! It keeps its place between calls, so bytes are looked at once however the
//! body is split across reads. Anything the grammar does not allow — a bare LF,
//! a missing CRLF after data, a size that overflows — is an error rather than a
//! guess, because lenient chunked parsing is how request smuggling starts.

use crate::byteset::TCHAR;

/// Why a chunked body was rejected.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// The bytes do not follow the chunked grammar (400).
    Malformed,
    /// The decoded body would exceed `max_body_bytes` (413).
    BodyTooLarge,
    /// A chunk-size line, with its extensions, is longer than allowed (400).
    LineTooLong,
    /// The trailer section is longer than allowed (431).
    TrailersTooLarge,
}

/// The limits the decoder enforces.
#[derive(Copy, Clone, Debug)]
pub struct ChunkedLimits {
    /// Most decoded body bytes.
    pub max_body_bytes: u64,
    /// Longest chunk-size line, extensions included, CRLF excluded.
    pub max_line_bytes: usize,
    /// Largest trailer section: its field lines, CRLFs included (the final
    /// empty line is not counted).
    pub max_trailer_bytes: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// Whitespace after the size: only `;` may follow.
    SizeSpace,
    /// After a `;`, in whitespace: an extension's name must come
    /// (RFC 9112 §7.1.1: `BWS ";" BWS chunk-ext-name [ BWS "=" BWS
    /// chunk-ext-val ]`). Extensions are checked, bounded and ignored.
    ExtNameStart,
    /// Inside an extension's name, a token.
    ExtName,
    /// Whitespace after a name: `=` or `;` must follow.
    ExtNameSpace,
    /// After `=`, in whitespace: a token or a quoted string must follow.
    ExtValueStart,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a backslash inside a quoted string.
    ExtQuotedPair,
    /// Just after a quoted string's closing quote.
    ExtQuotedEnd,
    /// Whitespace after a value: `;` must follow.
    ExtValueSpace,
    /// Saw the CR ending a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Chunk data ended: CR must come.
    DataCr,
    /// Chunk data ended: LF must come.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field's name, a token that ends at its colon.
    TrailerName,
    /// Inside a trailer field's value, after the colon.
    TrailerValue,
    /// Saw the CR ending a trailer field line.
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    /// The whole body, trailers included, has been read.
    Done,
}

/// Decodes one chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read, or bytes of it still to come in `Data`.
    size: u64,
    /// Bytes of the current size line so far.
    line_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Decoded body bytes so far.
    body_bytes: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            body_bytes: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending body bytes to `body`. Returns how many
    /// input bytes were consumed: all of them unless the body ended inside
    /// `input`, in which case the rest belongs to the next request.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        limits: &ChunkedLimits,
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let take = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                body.extend_from_slice(&input[i..i + take]);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.step(b, limits)?;
            if self.state == State::Done {
                break;
            }
        }
        Ok(i)
    }

    fn step(&mut self, b: u8, limits: &ChunkedLimits) -> Result<(), ChunkedError> {
        use State::*;
        match self.state {
            SizeStart | Size => {
                if let Some(digit) = hex_value(b) {
                    self.count_line_byte(limits)?;
                    if self.size > (u64::MAX >> 4) {
                        return Err(ChunkedError::Malformed);
                    }
                    self.size = (self.size << 4) | u64::from(digit);
                    self.state = Size;
                } else if self.state == SizeStart {
                    return Err(ChunkedError::Malformed);
                } else {
                    match b {
                        b'\r' => self.state = SizeLf,
                        b';' => self.enter_extension(limits)?,
                        b' ' | b'\t' => {
                            self.count_line_byte(limits)?;
                            self.state = SizeSpace;
                        }
                        _ => return Err(ChunkedError::Malformed),
                    }
                }
            }
            SizeSpace => match b {
                b' ' | b'\t' => self.count_line_byte(limits)?,
                b';' => self.enter_extension(limits)?,
                _ => return Err(ChunkedError::Malformed),
            },
            ExtName | ExtToken | ExtQuotedEnd if b == b'\r' => self.state = SizeLf,
            ExtNameStart | ExtName | ExtNameSpace | ExtValueStart | ExtToken | ExtQuoted
            | ExtQuotedPair | ExtQuotedEnd | ExtValueSpace => {
                let next = extension_step(self.state, b).ok_or(ChunkedError::Malformed)?;
                self.count_line_byte(limits)?;
                self.state = next;
            }
            SizeLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed);
                }
                self.line_bytes = 0;
                if self.size == 0 {
                    self.state = TrailerStart;
                } else {
                    self.body_bytes = self
                        .body_bytes
                        .checked_add(self.size)
                        .filter(|&n| n <= limits.max_body_bytes)
                        .ok_or(ChunkedError::BodyTooLarge)?;
                    self.state = Data;
                }
            }
            Data => unreachable!("data bytes are copied in bulk by decode"),
            DataCr => {
                if b != b'\r' {
                    return Err(ChunkedError::Malformed);
                }
                self.state = DataLf;
            }
            DataLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed);
                }
                self.size = 0;
                self.state = SizeStart;
            }
            TrailerStart => {
                if b == b'\r' {
                    // The final empty line is not part of the trailer section.
                    self.state = EndLf;
                    return Ok(());
                }
                self.count_trailer_byte(limits)?;
                // A field line, as in a head: a name (so no whitespace
                // first, which would be obsolete line folding), a colon, a
                // value.
                if !TCHAR[usize::from(b)] {
                    return Err(ChunkedError::Malformed);
                }
                self.state = TrailerName;
            }
            TrailerName => {
                self.count_trailer_byte(limits)?;
                match b {
                    b':' => self.state = TrailerValue,
                    _ if TCHAR[usize::from(b)] => {}
                    _ => return Err(ChunkedError::Malformed),
                }
            }
            TrailerValue => {
                self.count_trailer_byte(limits)?;
                match b {
                    b'\r' => self.state = TrailerLf,
                    _ if is_field_byte(b) => {}
                    _ => return Err(ChunkedError::Malformed),
                }
            }
            TrailerLf => {
                self.count_trailer_byte(limits)?;
                if b != b'\n' {
                    return Err(ChunkedError::Malformed);
                }
                self.state = TrailerStart;
            }
            EndLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed);
                }
                self.state = Done;
            }
            Done => unreachable!("decode stops at Done"),
        }
        Ok(())
    }

    fn enter_extension(&mut self, limits: &ChunkedLimits) -> Result<(), ChunkedError> {
        self.count_line_byte(limits)?;
        self.state = State::ExtNameStart;
        Ok(())
    }

    fn count_line_byte(&mut self, limits: &ChunkedLimits) -> Result<(), ChunkedError> {
        self.line_bytes += 1;
        if self.line_bytes > limits.max_line_bytes {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self, limits: &ChunkedLimits) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > limits.max_trailer_bytes {
            return Err(ChunkedError::TrailersTooLarge);
        }
        Ok(())
    }
}

/// The state after byte `b` (not the CR that ends the line) of a chunk
/// extension in `state`, or `None` where the grammar has no place for it:
///
/// ```text
/// chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-val = token / quoted-string
/// ```
///
/// A line may end after a name or a value, not after whitespace (BWS is
/// only ever followed by `;` or `=`). llhttp's strict mode reads
/// extensions so; nginx ignores them unread.
fn extension_step(state: State, b: u8) -> Option<State> {
    use State::*;
    let space = matches!(b, b' ' | b'\t');
    let token = TCHAR[usize::from(b)];
    Some(match (state, b) {
        (ExtNameStart, _) if space => ExtNameStart,
        (ExtNameStart | ExtName, _) if token => ExtName,
        (ExtName | ExtNameSpace, _) if space => ExtNameSpace,
        (ExtName | ExtNameSpace, b'=') => ExtValueStart,
        (ExtName | ExtNameSpace | ExtToken | ExtQuotedEnd | ExtValueSpace, b';') => ExtNameStart,
        (ExtValueStart, _) if space => ExtValueStart,
        (ExtValueStart, b'"') => ExtQuoted,
        (ExtValueStart | ExtToken, _) if token => ExtToken,
        (ExtToken | ExtQuotedEnd | ExtValueSpace, _) if space => ExtValueSpace,
        (ExtQuoted, b'"') => ExtQuotedEnd,
        (ExtQuoted, b'\\') => ExtQuotedPair,
        // qdtext (whitespace, visible ASCII but `"` and `\`, obs-text), and
        // the byte a backslash quotes (whitespace, VCHAR or obs-text).
        (ExtQuoted | ExtQuotedPair, _) if space || b.is_ascii_graphic() || b >= 0x80 => ExtQuoted,
        _ => return None,
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes allowed inside a trailer field line: visible ASCII, space, tab, obs-text.
fn is_field_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ChunkedLimits = ChunkedLimits {
        max_body_bytes: 1024,
        max_line_bytes: 32,
        max_trailer_bytes: 64,
    };

    fn decode_whole(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let used = d.decode(input, &mut body, &LIMITS)?;
        assert!(d.is_done(), "body not finished");
        Ok((body, used))
    }

    fn decode_bytewise(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut used = 0;
        while !d.is_done() && used < input.len() {
            used += d.decode(&input[used..used + 1], &mut body, &LIMITS)?;
        }
        assert!(d.is_done(), "body not finished");
        Ok((body, used))
    }

    #[test]
    fn decodes_chunks_and_stops_at_the_end_of_the_body() {
        let input = b"5\r\nhello\r\n7;name=value\r\n, world\r\n0\r\n\r\nGET";
        let (body, used) = decode_whole(input).unwrap();
        assert_eq!(body, b"hello, world");
        assert_eq!(&input[used..], b"GET");
        assert_eq!(decode_bytewise(input).unwrap(), (body, used));
    }

    #[test]
    fn accepts_trailers_and_uppercase_hex() {
        let input = b"A\r\n0123456789\r\n0\r\nExpires: never\r\nX: y\r\n\r\n";
        let (body, used) = decode_whole(input).unwrap();
        assert_eq!(body, b"0123456789");
        assert_eq!(used, input.len());
    }

    #[test]
    fn rejects_bare_lf_and_missing_crlf_after_data() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nX: y\n\r\n",
        ] {
            let mut d = ChunkedDecoder::new();
            assert_eq!(
                d.decode(bad, &mut Vec::new(), &LIMITS),
                Err(ChunkedError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rejects_sizes_that_are_not_hex_or_overflow() {
        for bad in [&b"\r\n"[..], b"x\r\n", b"-1\r\n", b"+1\r\n", b"0x5\r\n"] {
            let mut d = ChunkedDecoder::new();
            assert_eq!(
                d.decode(bad, &mut Vec::new(), &LIMITS),
                Err(ChunkedError::Malformed)
            );
        }
        let limits = ChunkedLimits {
            max_line_bytes: 64,
            ..LIMITS
        };
        let mut d = ChunkedDecoder::new();
        let overflow = b"10000000000000000\r\n";
        assert_eq!(
            d.decode(overflow, &mut Vec::new(), &limits),
            Err(ChunkedError::Malformed)
        );
        // The largest size a u64 holds is a number, only too large; so is
        // one behind any number of zeros.
        for largest in [
            &b"ffffffffffffffff\r\n"[..],
            b"0000000000000000000fffffffffffffff0\r\n",
        ] {
            let mut d = ChunkedDecoder::new();
            assert_eq!(
                d.decode(largest, &mut Vec::new(), &limits),
                Err(ChunkedError::BodyTooLarge)
            );
        }
    }

    #[test]
    fn rejects_a_body_over_the_limit_before_reading_its_data() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"401\r\n", &mut Vec::new(), &LIMITS),
            Err(ChunkedError::BodyTooLarge)
        );
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let two_halves = b"200\r\n";
        d.decode(two_halves, &mut body, &LIMITS).unwrap();
        d.decode(&[b'a'; 0x200], &mut body, &LIMITS).unwrap();
        assert_eq!(
            d.decode(b"\r\n201\r\n", &mut body, &LIMITS),
            Err(ChunkedError::BodyTooLarge)
        );
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        // The size, `;` and the extension count: 32 bytes fit, 33 do not.
        let line = |ext: usize| format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(ext));
        assert!(decode_whole(line(30).as_bytes()).is_ok());
        assert_eq!(
            decode_whole(line(31).as_bytes()),
            Err(ChunkedError::LineTooLong)
        );
        let mut d = ChunkedDecoder::new();
        let long_ext = format!("1;{}\r\n", "e".repeat(40));
        assert_eq!(
            d.decode(long_ext.as_bytes(), &mut Vec::new(), &LIMITS),
            Err(ChunkedError::LineTooLong)
        );
        let mut d = ChunkedDecoder::new();
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(80));
        assert_eq!(
            d.decode(long_trailer.as_bytes(), &mut Vec::new(), &LIMITS),
            Err(ChunkedError::TrailersTooLarge)
        );
    }

    /// RFC 9112 §7.1.1's grammar for extensions, and near misses of it.
    #[test]
    fn extensions_follow_their_grammar() {
        for ext in [
            ";a",
            ";a=b",
            " ;a=b",
            "; a = b ;c",
            ";a=b;c=\"\"",
            ";a=\"x y;z=\\\"w\\\\\"",
            ";a=\"\t\u{80}\"",
            ";a=\"x\" ; b",
            ";a=\"\\\u{80}\"",
        ] {
            let input = format!("1{ext}\r\nx\r\n0{ext}\r\n\r\n").into_bytes();
            assert_eq!(
                decode_whole(&input),
                Ok((b"x".to_vec(), input.len())),
                "{ext:?}"
            );
            assert_eq!(
                decode_bytewise(&input),
                Ok((b"x".to_vec(), input.len())),
                "{ext:?}"
            );
        }
        for ext in [
            &b";"[..],
            b"; ",
            b";a ",
            b";a=b ",
            b";a=",
            b";a= ",
            b";=b",
            b";@",
            b";a b",
            b";a=b c",
            b";a=b=c",
            b";a=\"x",
            b";a=\"x\"y",
            b";a=\"\x01\"",
            b";a=\"x\\\x01\"",
            b";a=\"\x7f\"",
            b";a;",
            b";;a",
            b";a\x80",
        ] {
            let mut input = b"1".to_vec();
            input.extend_from_slice(ext);
            input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
            let shown = String::from_utf8_lossy(ext);
            assert_eq!(
                decode_whole(&input),
                Err(ChunkedError::Malformed),
                "{shown:?}"
            );
            assert_eq!(
                decode_bytewise(&input),
                Err(ChunkedError::Malformed),
                "{shown:?}"
            );
        }
    }

    #[test]
    fn allows_whitespace_only_before_an_extension() {
        assert!(decode_whole(b"1 ;x\r\na\r\n0\r\n\r\n").is_ok());
        assert!(decode_whole(b"1 \t ;x\r\na\r\n0\r\n\r\n").is_ok());
        assert!(decode_bytewise(b"1\t\t;x\r\na\r\n0\r\n\r\n").is_ok());
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"1 \r\n", &mut Vec::new(), &LIMITS),
            Err(ChunkedError::Malformed)
        );
    }

    #[test]
    fn the_final_empty_line_is_not_part_of_the_trailer_limit() {
        let none = ChunkedLimits {
            max_trailer_bytes: 0,
            ..LIMITS
        };
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(b"0\r\n\r\n", &mut Vec::new(), &none), Ok(5));
        let exact = ChunkedLimits {
            max_trailer_bytes: 6,
            ..LIMITS
        };
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"0\r\nX: y\r\n\r\n", &mut Vec::new(), &exact),
            Ok(11)
        );
        let short = ChunkedLimits {
            max_trailer_bytes: 5,
            ..LIMITS
        };
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"0\r\nX: y\r\n\r\n", &mut Vec::new(), &short),
            Err(ChunkedError::TrailersTooLarge)
        );
    }

    #[test]
    fn rejects_obsolete_folding_in_trailers() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"0\r\nX: y\r\n z\r\n\r\n", &mut Vec::new(), &LIMITS),
            Err(ChunkedError::Malformed)
        );
    }

    #[test]
    fn a_trailer_line_is_a_field_line_with_a_name_and_a_colon() {
        for line in [
            &b"no colon here"[..],
            b"X : y",
            b": y",
            b"X@: y",
            b"\x80: y",
        ] {
            let mut input = b"0\r\n".to_vec();
            input.extend_from_slice(line);
            input.extend_from_slice(b"\r\n\r\n");
            let mut d = ChunkedDecoder::new();
            assert_eq!(
                d.decode(&input, &mut Vec::new(), &LIMITS),
                Err(ChunkedError::Malformed),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [&b"X:y"[..], b"X-Y_z: ", b"x: a:b"] {
            let mut input = b"0\r\n".to_vec();
            input.extend_from_slice(line);
            input.extend_from_slice(b"\r\n\r\n");
            assert_eq!(decode_bytewise(&input).unwrap().1, input.len());
        }
    }
}
