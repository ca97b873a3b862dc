//! The header fields of the common head, read without httparse.
//!
//! httparse reads fields through a loop that takes most of a head's parsing
//! time: it checks header names a byte at a time and handles cases (tabs,
//! bare LF, obsolete line folding, trailing whitespace) most fields never
//! have. Most fields have one simple shape, read here with a table for the
//! name and eight bytes a step for the value. As with [`super::line`], only
//! fields that httparse would read exactly so take this path: any other
//! field, a head not yet complete, or more fields than there is room for,
//! and the whole head is left to httparse, so the verdict on every input
//! stays httparse's.

use super::{FieldSpan, Span};
use crate::byteset::{run_of, TCHAR};

/// Reads the fields that start at `at` in `buf` (the head, from its first
/// byte) and the empty line after them, into `fields`; returns where the
/// head ends. Each field must be simple: a name of `tchar`s, a colon, any
/// spaces, a value of visible ASCII and spaces that ends in a visible byte,
/// and CRLF; and the head must end with CRLF. httparse takes such fields as
/// these names and values (it skips the spaces before a value and has none
/// after it to trim) and finds no error in them.
///
/// `None` — with `fields` holding any of them read so far — for anything
/// else, and for more than `room` fields.
#[inline]
pub(super) fn simple(
    buf: &[u8],
    mut at: usize,
    room: usize,
    fields: &mut Vec<FieldSpan>,
) -> Option<usize> {
    fields.clear();
    loop {
        let rest = buf.get(at..)?;
        if rest.starts_with(b"\r\n") {
            return Some(at + 2);
        }
        let name_len = run_of(rest, &TCHAR);
        if name_len == 0 || rest.get(name_len) != Some(&b':') {
            return None;
        }
        let after_colon = name_len + 1;
        let value_start = after_colon + spaces(&rest[after_colon..]);
        let value_end = value_start + visible_run(&rest[value_start..]);
        let value_ends_visibly = value_end > value_start && rest[value_end - 1] != b' ';
        if !value_ends_visibly || rest.get(value_end..value_end + 2) != Some(&b"\r\n"[..]) {
            return None;
        }
        if fields.len() == room {
            return None;
        }
        fields.push(FieldSpan {
            name: span(at, 0, name_len),
            value: span(at, value_start, value_end),
        });
        at += value_end + 2;
    }
}

/// The span `start..end` of the bytes that begin at `base`.
fn span(base: usize, start: usize, end: usize) -> Span {
    Span {
        start: (base + start) as u32,
        len: (end - start) as u32,
    }
}

/// How many spaces `bytes` starts with: mostly one.
fn spaces(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| b == b' ').count()
}

/// How many bytes at the start of `bytes` are visible ASCII or space
/// (0x20 to 0x7e), eight a step: a value is mostly tens of bytes.
fn visible_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH_BITS: u64 = ONES << 7;
    let mut steps = bytes.chunks_exact(8);
    let mut at = 0;
    for step in steps.by_ref() {
        let x = u64::from_le_bytes(step.try_into().expect("a step is eight bytes"));
        // The high bit of each byte that is below 0x20 (which then borrows,
        // but only from the bytes above it), of each that is 0x7f or above
        // (whose 0xff carries, likewise upwards), and of each from 0x80.
        // The lowest byte so marked is the first byte outside the run.
        let below_space = x.wrapping_sub(ONES * 0x20) & !x;
        let from_delete = x.wrapping_add(ONES) | x;
        let outside = (below_space | from_delete) & HIGH_BITS;
        if outside != 0 {
            return at + (outside.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + steps
        .remainder()
        .iter()
        .take_while(|&&b| is_visible_or_space(b))
        .count()
}

fn is_visible_or_space(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visible_run_ends_at_the_first_byte_outside_it_wherever_it_is() {
        let visible = b"Mozilla/5.0 (X11; Linux x86_64) ~ !";
        assert_eq!(visible_run(visible), visible.len());
        assert_eq!(visible_run(b""), 0);
        for outside in [0x00, 0x09, 0x0a, 0x0d, 0x1f, 0x7f, 0x80, 0xa0, 0xff] {
            for at in 0..visible.len() {
                let mut bytes = *visible;
                bytes[at] = outside;
                // Bytes outside after the first must not move it.
                for later in at + 1..visible.len() {
                    bytes[later] = [0x00, 0xff, 0x7f][later % 3];
                }
                assert_eq!(visible_run(&bytes), at, "{outside:#04x} at {at}");
            }
        }
        for b in 0..=255u8 {
            let expected = usize::from(is_visible_or_space(b));
            assert_eq!(visible_run(&[b; 8][..1]), expected, "{b:#04x}");
            assert_eq!(visible_run(&[b; 8]).min(1), expected, "{b:#04x} in a step");
        }
    }

    /// A head's length and its fields' names and values.
    type Read = (usize, Vec<(Vec<u8>, Vec<u8>)>);

    /// What httparse reads from `head` (which starts with its fields), or
    /// its error.
    fn httparse_fields(head: &[u8]) -> Result<Option<Read>, String> {
        let mut headers = [httparse::EMPTY_HEADER; 4];
        match httparse::parse_headers(head, &mut headers) {
            Ok(httparse::Status::Complete((len, headers))) => Ok(Some((
                len,
                headers
                    .iter()
                    .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
                    .collect(),
            ))),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// Whether `simple` read `head`, after checking it against httparse.
    fn agrees(head: &[u8]) -> bool {
        let mut fields = Vec::new();
        let Some(end) = simple(head, 0, 4, &mut fields) else {
            return false;
        };
        let shown = String::from_utf8_lossy(head);
        let read: Vec<_> = fields
            .iter()
            .map(|f| (f.name.get(head).to_vec(), f.value.get(head).to_vec()))
            .collect();
        assert_eq!(httparse_fields(head), Ok(Some((end, read))), "{shown:?}");
        true
    }

    /// Every head of one or two fields built from these pieces, near
    /// misses among them: where `simple` reads one, httparse reads the same
    /// fields and length from it.
    #[test]
    fn simple_agrees_with_httparse_on_every_combination() {
        let names: [&[u8]; 6] = [b"Host", b"X-a_b", b"", b"Ho st", b"Ho\"st", b"\xc3\xa9"];
        let colons: [&[u8]; 4] = [b":", b" :", b"", b"::"];
        let gaps: [&[u8]; 4] = [b"", b" ", b"   ", b"\t"];
        let values: [&[u8]; 9] = [
            b"a",
            b"example.com:8080",
            b"a b",
            b"a ",
            b"a\tb",
            b"a\x7fb",
            b"\xc3\xa9",
            b"a\x01",
            b"",
        ];
        let ends: [&[u8]; 4] = [b"\r\n", b"\n", b"\r", b""];
        let mut read = 0;
        let mut seen = 0;
        for name in names {
            for colon in colons {
                for gap in gaps {
                    for value in values {
                        for end in ends {
                            let field = [name, colon, gap, value, end].concat();
                            for head in [
                                [&field[..], b"\r\n"].concat(),
                                [&b"Accept: */*\r\n"[..], &field, b"\r\n"].concat(),
                                [&field[..], b"\n"].concat(),
                                field.clone(),
                            ] {
                                read += usize::from(agrees(&head));
                                seen += 1;
                            }
                        }
                    }
                }
            }
        }
        // Read, each in the two heads that end with CRLF CRLF: a good name,
        // `:`, a gap of spaces and one of the three values that hold only
        // visible ASCII and end visibly (18 fields); the same after `::`,
        // whose second colon starts the value, and `::` alone (20); and
        // pieces that run together into a good field, such as
        // `Hostexample.com:8080` (3): 82 heads. And 7 in which every piece of
        // the field but its end is empty, so that the head is an empty line.
        assert_eq!((read, seen), (89, 6 * 4 * 4 * 9 * 4 * 4));
    }

    /// A piece of a head for a proptest: mostly one of `good`, sometimes
    /// one of `bad`, so that heads of several fields are often all good and
    /// still meet every near miss.
    fn piece(
        good: &'static [&'static [u8]],
        bad: &'static [&'static [u8]],
    ) -> impl Strategy<Value = &'static [u8]> {
        proptest::prop_oneof![
            4 => proptest::sample::select(good),
            1 => proptest::sample::select(bad),
        ]
    }

    use proptest::prelude::Strategy;

    proptest::proptest! {
        // Each case is a few microseconds; most near misses need many.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8192))]

        /// Heads of up to five fields, each built of pieces good and bad,
        /// and an end: where `simple` reads one, httparse reads the same.
        #[test]
        fn simple_agrees_with_httparse_on_any_head(
            fields in proptest::collection::vec(
                (
                    piece(&[b"Host", b"X-y"], &[b"", b"a b", b"\xff", b"\t", b"a\""]),
                    piece(&[b":"], &[b"", b" :", b"::"]),
                    piece(&[b"", b" ", b"  "], &[b"\t", b" \t"]),
                    piece(
                        &[b"h", b"a b", b"*/*"],
                        &[b"", b"a ", b"a\t", b"\x7f", b"\x00", b"\xff", b"a\tb", b":"],
                    ),
                    piece(&[b"\r\n"], &[b"\n", b"\r", b"", b"\rx"]),
                ),
                0..5,
            ),
            end in piece(&[b"\r\n"], &[b"\n", b"", b"\r", b"\rx"]),
        ) {
            let mut head = Vec::new();
            for (name, colon, gap, value, line_end) in fields {
                head.extend([name, colon, gap, value, line_end].concat());
            }
            head.extend_from_slice(end);
            agrees(&head);
        }
    }

    #[test]
    fn more_fields_than_there_is_room_for_are_left_to_httparse() {
        let head = b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let mut fields = Vec::new();
        assert_eq!(simple(head, 0, 3, &mut fields), Some(head.len()));
        assert_eq!(simple(head, 0, 2, &mut fields), None);
    }

    #[test]
    fn spans_are_relative_to_the_start_of_the_head() {
        let head = b"GET / HTTP/1.1\r\nHost:  h\r\n\r\n";
        let mut fields = Vec::new();
        assert_eq!(simple(head, 16, 4, &mut fields), Some(head.len()));
        assert_eq!(fields[0].name.get(head), b"Host");
        assert_eq!(fields[0].value.get(head), b"h");
    }
}
