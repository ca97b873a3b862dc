//! [`ChunkedDecoder`] against a reference decoder written for the test.
//!
//! Input: four control bytes, then the chunked body. The control bytes give
//! the limits (`0xff` meaning "large") and the seed of the split points.
//!
//! The streaming decoder is run on the whole body and on the body split into
//! pieces (sometimes one byte at a time); the reference decoder reads the
//! whole body at once, one grammar production at a time. All three must give
//! the same outcome: the same body and bytes consumed, the same body so far
//! when the input ends first, or the same error.

use ebb_core::{ChunkedDecoder, ChunkedError, ChunkedLimits};

use crate::rng::Rng;

/// Decodes the body in `data` three ways and checks that they agree.
pub fn chunked(data: &[u8]) {
    let [line, trailer, body_limit, split, ref input @ ..] = *data else {
        return;
    };
    let limits = ChunkedLimits {
        max_line_bytes: if line == 0xff {
            1024
        } else {
            usize::from(line)
        },
        max_trailer_bytes: if trailer == 0xff {
            8 * 1024
        } else {
            usize::from(trailer)
        },
        max_body_bytes: if body_limit == 0xff {
            1 << 20
        } else {
            u64::from(body_limit) * 8
        },
    };
    let expected = reference(input, &limits);
    let whole = streaming(input, &[input.len()], &limits);
    assert_eq!(whole, expected, "whole input: decoder vs reference");
    let mut rng = Rng::from_input(data, u64::from(split));
    let cuts: Vec<usize> = if split < 64 {
        (1..=input.len()).collect()
    } else {
        let mut cuts: Vec<usize> = (0..1 + rng.index(6))
            .map(|_| rng.index(input.len() + 1))
            .collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        cuts
    };
    let pieces = streaming(input, &cuts, &limits);
    assert_eq!(
        pieces, expected,
        "split input {cuts:?}: decoder vs reference"
    );
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body ended after `used` input bytes.
    Done {
        body: Vec<u8>,
        used: usize,
    },
    /// The input ended inside the body.
    Incomplete {
        body: Vec<u8>,
    },
    Failed(ChunkedError),
}

/// The decoder under test, fed the pieces of `input` that end at `cuts`.
fn streaming(input: &[u8], cuts: &[usize], limits: &ChunkedLimits) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut used = 0;
    let mut from = 0;
    for &to in cuts {
        let piece = &input[from..to];
        match decoder.decode(piece, &mut body, limits) {
            Err(e) => return Outcome::Failed(e),
            Ok(n) => {
                used += n;
                if decoder.is_done() {
                    return Outcome::Done { body, used };
                }
                assert_eq!(n, piece.len(), "stopped before the end of the body");
            }
        }
        from = to;
    }
    Outcome::Incomplete { body }
}

/// The reference: RFC 9112 §7.1, with the strictness chunked.rs documents.
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ *WS ";" chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*"0" [ *WS ";" chunk-ext ] CRLF
/// chunk-size   = 1*HEXDIG            ; must fit in 64 bits
/// chunk-ext    = BWS ext-name [ BWS "=" BWS ext-val ] *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
/// ext-name     = token
/// ext-val      = token / quoted-string
/// trailer-section = *( field-line CRLF )
/// field-line   = 1*tchar ":" *( field byte )
/// ```
///
/// Limits: the chunk-size line (CRLF excluded) is at most `max_line_bytes`;
/// the decoded body at most `max_body_bytes`, checked when a chunk-size line
/// ends; the trailer section (its field lines with their CRLFs, not the
/// final empty line) at most `max_trailer_bytes`. Errors are reported at the
/// first byte that breaks a rule, limits counting the offending byte.
fn reference(input: &[u8], limits: &ChunkedLimits) -> Outcome {
    let mut p = Reference {
        input,
        pos: 0,
        body: Vec::new(),
        limits,
    };
    match p.chunked_body() {
        Ok(true) => Outcome::Done {
            body: p.body,
            used: p.pos,
        },
        Ok(false) => Outcome::Incomplete { body: p.body },
        Err(e) => Outcome::Failed(e),
    }
}

struct Reference<'a> {
    input: &'a [u8],
    pos: usize,
    body: Vec<u8>,
    limits: &'a ChunkedLimits,
}

/// `Ok(None)` (or `Ok(false)`): the input ended before the production did.
type Parsed<T> = Result<Option<T>, ChunkedError>;

impl Reference<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn chunked_body(&mut self) -> Result<bool, ChunkedError> {
        let mut total: u64 = 0;
        loop {
            let Some(size) = self.chunk_size_line()? else {
                return Ok(false);
            };
            if size == 0 {
                return self.trailer_section();
            }
            total = total
                .checked_add(size)
                .filter(|&t| t <= self.limits.max_body_bytes)
                .ok_or(ChunkedError::BodyTooLarge)?;
            let rest = (self.input.len() - self.pos) as u64;
            let take = size.min(rest) as usize;
            self.body
                .extend_from_slice(&self.input[self.pos..self.pos + take]);
            self.pos += take;
            if (take as u64) < size || self.crlf()?.is_none() {
                return Ok(false);
            }
        }
    }

    /// `chunk-size [ *WS ";" chunk-ext ] CRLF`, giving the size.
    fn chunk_size_line(&mut self) -> Parsed<u64> {
        let mut line_bytes = 0;
        let max = self.limits.max_line_bytes;
        let count = |line_bytes: &mut usize| {
            *line_bytes += 1;
            if *line_bytes > max {
                Err(ChunkedError::LineTooLong)
            } else {
                Ok(())
            }
        };
        let mut size: u64 = 0;
        let mut digits = 0;
        loop {
            let Some(b) = self.input.get(self.pos).copied() else {
                return Ok(None);
            };
            let Some(digit) = (b as char).to_digit(16) else {
                break;
            };
            self.pos += 1;
            count(&mut line_bytes)?;
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
                .ok_or(ChunkedError::Malformed)?;
            digits += 1;
        }
        if digits == 0 {
            return Err(ChunkedError::Malformed);
        }
        let mut whitespace = false;
        while let Some(b' ' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
            count(&mut line_bytes)?;
            whitespace = true;
        }
        match self.input.get(self.pos) {
            None => return Ok(None),
            Some(b';') => {
                self.pos += 1;
                count(&mut line_bytes)?;
                if self.chunk_ext(&mut || count(&mut line_bytes))?.is_none() {
                    return Ok(None);
                }
            }
            // Whitespace is only allowed before an extension.
            Some(b'\r') if !whitespace => {}
            Some(_) => return Err(ChunkedError::Malformed),
        }
        Ok(self.crlf()?.map(|()| size))
    }

    /// `chunk-ext` after its first `;`, up to the CR that ends the line,
    /// each byte counted by `count`. The line may end after a name or a
    /// value, not after whitespace.
    fn chunk_ext(&mut self, count: &mut impl FnMut() -> Result<(), ChunkedError>) -> Parsed<()> {
        loop {
            let space = |b: u8| b == b' ' || b == b'\t';
            if self.take_while(count, space)?.is_none() {
                return Ok(None);
            }
            let Some(name) = self.take_while(count, is_tchar)? else {
                return Ok(None);
            };
            if name == 0 {
                return Err(ChunkedError::Malformed);
            }
            let Some(mut trailing_space) = self.take_while(count, space)? else {
                return Ok(None);
            };
            if self.peek() == Some(b'=') {
                self.pos += 1;
                count()?;
                if self.take_while(count, space)?.is_none() {
                    return Ok(None);
                }
                let value = match self.peek() {
                    None => return Ok(None),
                    Some(b'"') => self.quoted_string(count)?,
                    Some(b) if is_tchar(b) => self.take_while(count, is_tchar)?.map(|_| ()),
                    Some(_) => return Err(ChunkedError::Malformed),
                };
                if value.is_none() {
                    return Ok(None);
                }
                let Some(space_after) = self.take_while(count, space)? else {
                    return Ok(None);
                };
                trailing_space = space_after;
            }
            match self.peek() {
                None => return Ok(None),
                Some(b';') => {
                    self.pos += 1;
                    count()?;
                }
                Some(b'\r') if trailing_space == 0 => return Ok(Some(())),
                Some(_) => return Err(ChunkedError::Malformed),
            }
        }
    }

    /// `quoted-string`, from its opening quote.
    fn quoted_string(
        &mut self,
        count: &mut impl FnMut() -> Result<(), ChunkedError>,
    ) -> Parsed<()> {
        // VCHAR, whitespace or obs-text: what may follow a backslash.
        let quotable = |b: u8| b == b' ' || b == b'\t' || b.is_ascii_graphic() || b >= 0x80;
        self.pos += 1;
        count()?;
        loop {
            let Some(b) = self.peek() else {
                return Ok(None);
            };
            let closing = b == b'"';
            if b == b'\\' {
                self.pos += 1;
                count()?;
                match self.peek() {
                    None => return Ok(None),
                    Some(b) if quotable(b) => {}
                    Some(_) => return Err(ChunkedError::Malformed),
                }
            } else if !closing && !quotable(b) {
                return Err(ChunkedError::Malformed);
            }
            self.pos += 1;
            count()?;
            if closing {
                return Ok(Some(()));
            }
        }
    }

    /// Takes the bytes for which `wanted` holds, each counted; how many, or
    /// `None` if the input ended among them.
    fn take_while(
        &mut self,
        count: &mut impl FnMut() -> Result<(), ChunkedError>,
        wanted: impl Fn(u8) -> bool,
    ) -> Parsed<usize> {
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Ok(None),
                Some(b) if wanted(b) => {
                    self.pos += 1;
                    count()?;
                }
                Some(_) => return Ok(Some(self.pos - start)),
            }
        }
    }

    fn crlf(&mut self) -> Parsed<()> {
        for expected in [b'\r', b'\n'] {
            match self.peek() {
                None => return Ok(None),
                Some(b) if b == expected => self.pos += 1,
                Some(_) => return Err(ChunkedError::Malformed),
            }
        }
        Ok(Some(()))
    }

    /// `*( field-line CRLF ) CRLF`.
    fn trailer_section(&mut self) -> Result<bool, ChunkedError> {
        let mut section_bytes = 0;
        let max = self.limits.max_trailer_bytes;
        let count = |section_bytes: &mut usize| {
            *section_bytes += 1;
            if *section_bytes > max {
                Err(ChunkedError::TrailersTooLarge)
            } else {
                Ok(())
            }
        };
        loop {
            match self.peek() {
                None => return Ok(false),
                Some(b'\r') => return Ok(self.crlf()?.is_some()),
                Some(_) => {}
            }
            // The name: at least one token byte, up to its colon. No
            // obsolete line folding, as a line starts with a name.
            let mut name_bytes = 0;
            loop {
                let Some(b) = self.peek() else {
                    return Ok(false);
                };
                count(&mut section_bytes)?;
                self.pos += 1;
                match b {
                    b':' if name_bytes > 0 => break,
                    _ if is_tchar(b) => name_bytes += 1,
                    _ => return Err(ChunkedError::Malformed),
                }
            }
            // The value and its CRLF, each byte counted.
            loop {
                let Some(b) = self.peek() else {
                    return Ok(false);
                };
                count(&mut section_bytes)?;
                self.pos += 1;
                if b == b'\r' {
                    break;
                }
                if !is_field_byte(b) {
                    return Err(ChunkedError::Malformed);
                }
            }
            let Some(b) = self.peek() else {
                return Ok(false);
            };
            count(&mut section_bytes)?;
            if b != b'\n' {
                return Err(ChunkedError::Malformed);
            }
            self.pos += 1;
        }
    }
}

/// A token byte (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII, space, tab and obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `;` and every sequence of up to four bytes that matter to the
    /// extensions' grammar, in the first chunk's line and the last's, under
    /// line limits that cut it anywhere: the decoder and the reference agree
    /// on each (`chunked` asserts it), and they read some as extensions and
    /// refuse the others.
    #[test]
    fn decoder_and_reference_agree_on_every_short_extension() {
        let pieces: [&[u8]; 10] = [
            b";", b" ", b"a", b"=", b"\"", b"\\", b"\t", b"@", b"\x80", b"\x01",
        ];
        let mut extensions: Vec<Vec<u8>> = vec![b";".to_vec()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = extensions
                .iter()
                .filter(|e| e.len() == extensions.last().map_or(1, Vec::len))
                .flat_map(|e| pieces.iter().map(move |p| [&e[..], p].concat()))
                .collect();
            extensions.extend(longer);
        }
        let (mut read, mut refused) = (0, 0);
        for ext in &extensions {
            let body = [b"1", &ext[..], b"\r\nx\r\n0", &ext[..], b"\r\n\r\n"].concat();
            for line in [2, 4, 0xff] {
                chunked(&[[line, 0xff, 0xff, 7].as_slice(), &body].concat());
            }
            match reference(&body, &LIMITS) {
                Outcome::Done { .. } => read += 1,
                Outcome::Failed(ChunkedError::Malformed) => refused += 1,
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(ext)),
            }
        }
        // `;a`, `;a=a`, `; a`, `;a="\x80"`, `;a;a` and so on: 45, as a
        // regular expression of the grammar also counts them.
        assert_eq!((read, refused), (45, 11_066));
    }

    const LIMITS: ChunkedLimits = ChunkedLimits {
        max_line_bytes: 1024,
        max_trailer_bytes: 8 * 1024,
        max_body_bytes: 1 << 20,
    };
}
