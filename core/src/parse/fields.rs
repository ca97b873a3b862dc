//! The header fields of the common head, read without httparse.
//!
//! httparse reads fields through a loop that takes most of a head's parsing
//! time: it checks header names a byte at a time and handles cases (tabs,
//! bare LF, obsolete line folding, trailing whitespace) most fields never
//! have. Most fields have one simple shape, read here from the classes of
//! their bytes, found a chunk at a time ([`super::block`]): a name ends at the
//! first byte that is not a letter, digit or `-`, a value at the first that
//! is not visible ASCII or space. As with [`super::line`], only fields that
//! httparse would read exactly so take this path: any other field, a head
//! not yet complete, or more fields than there is room for, and the whole
//! head is left to httparse, so the verdict on every input stays
//! httparse's.

#[cfg(target_arch = "x86_64")]
use super::block::Avx2;
use super::block::{Baseline, Classes, Classify, CHUNK};
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
    at: usize,
    room: usize,
    fields: &mut Vec<FieldSpan>,
) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = Avx2::detect() {
        // SAFETY: `avx2` is proof that the CPU has AVX2.
        return unsafe { simple_avx2(avx2, buf, at, room, fields) };
    }
    read(Baseline, buf, at, room, fields)
}

/// [`read`] with AVX2's classes, compiled for AVX2 so that they inline.
///
/// # Safety
/// The CPU must have AVX2, as `avx2` shows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn simple_avx2(
    avx2: Avx2,
    buf: &[u8],
    at: usize,
    room: usize,
    fields: &mut Vec<FieldSpan>,
) -> Option<usize> {
    read(avx2, buf, at, room, fields)
}

/// [`simple`], with the chunks classified `way`.
#[inline(always)]
fn read(
    way: impl Classify,
    buf: &[u8],
    at: usize,
    room: usize,
    fields: &mut Vec<FieldSpan>,
) -> Option<usize> {
    fields.clear();
    let mut scan = Scan::new(way, buf, at);
    let mut line = at;
    loop {
        let rest = buf.get(line..)?;
        if rest.starts_with(b"\r\n") {
            return Some(line + 2);
        }
        let colon = match scan.next(line, |c| !c.name) {
            Some(end) if end > line && buf[end] == b':' => end,
            // A name with other `tchar`s, or none.
            _ => line + name_len(rest)?,
        };
        let mut value_start = colon + 1;
        if buf.get(value_start) == Some(&b' ') {
            // Mostly one space, and then the loop is one test.
            value_start += 1;
            while buf.get(value_start) == Some(&b' ') {
                value_start += 1;
            }
        }
        let value_end = scan.next(value_start, |c| c.outside)?;
        if value_end <= value_start {
            return None;
        }
        // The value's last byte, visible, then CRLF: one look for both.
        match buf.get(value_end - 1..value_end + 2) {
            Some(&[last, b'\r', b'\n']) if last != b' ' => {}
            _ => return None,
        }
        if fields.len() == room {
            return None;
        }
        fields.push(FieldSpan {
            name: span(line, colon),
            value: span(value_start, value_end),
        });
        line = value_end + 2;
    }
}

/// The bytes of a head, and the classes of the chunk that the reading of
/// its fields has got to. Chunks are classified in order, one after the
/// other, so that classifying the next does not wait on where the last
/// field ended: found a field at a time, each step waited on the last, and
/// the head took longer than with the byte loops, whose every branch is
/// predicted.
struct Scan<'b, C> {
    way: C,
    bytes: &'b [u8],
    /// Where the chunk classified ends: `classes` are those of the
    /// [`CHUNK`] bytes before.
    end: usize,
    classes: Classes,
}

impl<'b, C: Classify> Scan<'b, C> {
    /// A scan of `bytes` from `at` on, classified `way`.
    #[inline(always)]
    fn new(way: C, bytes: &'b [u8], at: usize) -> Self {
        Scan {
            way,
            bytes,
            end: at + CHUNK,
            classes: classify_at(way, bytes, at),
        }
    }

    /// The first byte from `from` on whose bit `class` sets, if the bytes
    /// have one. `from` must not be behind the chunk classified.
    #[inline(always)]
    fn next(&mut self, from: usize, class: impl Fn(&Classes) -> u32) -> Option<usize> {
        let mut from = from;
        loop {
            while from >= self.end {
                if self.end >= self.bytes.len() {
                    return None;
                }
                self.classes = classify_at(self.way, self.bytes, self.end);
                self.end += CHUNK;
            }
            let bits = class(&self.classes) >> (from + CHUNK - self.end);
            if bits != 0 {
                let found = from + bits.trailing_zeros() as usize;
                return (found < self.bytes.len()).then_some(found);
            }
            from = self.end;
        }
    }
}

/// The classes of the chunk of `bytes` from `start`.
#[inline(always)]
fn classify_at(way: impl Classify, bytes: &[u8], start: usize) -> Classes {
    match bytes.get(start..start + CHUNK) {
        Some(chunk) => way.classify(chunk.try_into().expect("a chunk")),
        None => classify_last(way, bytes, start),
    }
}

/// The classes of the bytes from `start`, fewer than a chunk: those of the
/// last chunk of `bytes`, shifted to start there, so that no byte past the
/// end is in a class (and `Scan::next` finds nothing past the end). Only
/// bytes shorter than a chunk are copied to classify.
// Out of line: a copy inlined made every head's frame larger.
#[inline(never)]
fn classify_last(way: impl Classify, bytes: &[u8], start: usize) -> Classes {
    let (last, shift) = match bytes.last_chunk::<CHUNK>() {
        Some(last) => (*last, start - (bytes.len() - CHUNK)),
        None => {
            let mut padded = [0; CHUNK];
            padded[..bytes.len()].copy_from_slice(bytes);
            (padded, start)
        }
    };
    let classes = way.classify(&last);
    let keep = |mask: u32| mask.checked_shr(shift as u32).unwrap_or(0);
    Classes {
        outside: keep(classes.outside),
        name: keep(classes.name),
    }
}

/// How long the name at the start of `rest` is, if a colon ends it: the
/// table's way, for names with `tchar`s other than letters, digits and `-`.
#[cold]
fn name_len(rest: &[u8]) -> Option<usize> {
    let len = run_of(rest, &TCHAR);
    (len > 0 && rest.get(len) == Some(&b':')).then_some(len)
}

/// The span `start..end`.
fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        len: (end - start) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of lengths around the chunks' edges, with bytes outside
    /// visible ASCII at a few distances from one another wherever they
    /// may be, after a few bytes not scanned: `next` finds the first from
    /// every place, on a new scan, and each in turn on one scan, asked from
    /// just after the last as the parser asks.
    /// Runs `check` with each way of classifying that this CPU has.
    fn each_way(check: impl Fn(&dyn Fn(&[u8], usize) -> Scan<'_, Way>)) {
        check(&|bytes, at| Scan::new(Way::Baseline(Baseline), bytes, at));
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = Avx2::detect() {
            check(&|bytes, at| Scan::new(Way::Avx2(avx2), bytes, at));
        }
    }

    /// Either way of classifying, chosen at run time, for the tests.
    #[derive(Copy, Clone)]
    enum Way {
        Baseline(Baseline),
        #[cfg(target_arch = "x86_64")]
        Avx2(Avx2),
    }

    impl Classify for Way {
        fn classify(self, chunk: &[u8; CHUNK]) -> Classes {
            match self {
                Way::Baseline(way) => way.classify(chunk),
                #[cfg(target_arch = "x86_64")]
                Way::Avx2(way) => way.classify(chunk),
            }
        }
    }

    #[test]
    fn next_finds_the_first_byte_of_its_class_from_anywhere_before_it() {
        each_way(|scan| next_finds_the_first_byte_of_its_class(scan));
    }

    fn next_finds_the_first_byte_of_its_class(new_scan: &dyn Fn(&[u8], usize) -> Scan<'_, Way>) {
        for (skipped, len) in [0, 5].into_iter().flat_map(|skipped| {
            [0, 1, 15, 31, 32, 33, 63, 64, 65, 100].map(|len| (skipped, skipped + len))
        }) {
            for outside in [0x00, b'\r', 0x7f, 0xff] {
                for at in skipped..len.max(skipped + 1) {
                    let marked: Vec<usize> = [0, 1, 31, 32, 70]
                        .iter()
                        .map(|d| at + d)
                        .filter(|&m| m < len)
                        .collect();
                    let mut bytes = vec![b'a'; len];
                    for &m in &marked {
                        bytes[m] = outside;
                    }
                    let first_from = |from| marked.iter().copied().find(|&m| m >= from);
                    for from in skipped..=len + 1 {
                        let fresh = new_scan(&bytes, skipped).next(from, |c| c.outside);
                        assert_eq!(fresh, first_from(from), "len {len}, at {at}, from {from}");
                    }
                    let mut scan = new_scan(&bytes, skipped);
                    let mut found = Vec::new();
                    let mut from = skipped;
                    while let Some(m) = scan.next(from, |c| c.outside) {
                        found.push(m);
                        from = m + 1;
                    }
                    assert_eq!(found, marked, "len {len}, at {at}");
                }
            }
        }
    }

    #[test]
    fn a_name_ends_at_its_first_byte_other_than_a_letter_digit_or_dash() {
        let bytes = b"X-Forwarded-For9: a\r\n";
        each_way(|scan| {
            assert_eq!(scan(bytes, 0).next(0, |c| !c.name), Some(16));
            assert_eq!(scan(bytes, 0).next(17, |c| !c.name), Some(17));
        });
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

    /// Whether `simple` read `head`, after checking it against httparse,
    /// and the baseline's reader against it where `simple` took AVX2's.
    fn agrees(head: &[u8]) -> bool {
        agrees_at(head, 0)
    }

    /// [`agrees`] for fields that start at `at` in `buf`.
    fn agrees_at(buf: &[u8], at: usize) -> bool {
        let mut fields = Vec::new();
        let end = simple(buf, at, 4, &mut fields);
        let mut baseline = Vec::new();
        assert_eq!(read(Baseline, buf, at, 4, &mut baseline), end);
        assert_eq!(baseline, fields);
        let Some(end) = end else {
            return false;
        };
        let shown = String::from_utf8_lossy(buf);
        let read: Vec<_> = fields
            .iter()
            .map(|f| (f.name.get(buf).to_vec(), f.value.get(buf).to_vec()))
            .collect();
        let expected = Ok(Some((end - at, read)));
        assert_eq!(
            httparse_fields(&buf[at..]),
            expected,
            "at {at} of {shown:?}"
        );
        true
    }

    /// Fields of every part, long enough to cross two chunks' edges.
    const FIELDS: &[u8] = b"Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101\r\n\
Accept:   */*\r\n\
X-y:z\r\n\r\n";

    /// The fields above starting at every place in a chunk, with the next
    /// pipelined request after them, and cut short at every length; and,
    /// at every place, each of their bytes in turn made each byte that
    /// plays a part in a field or that no simple field has: where `simple`
    /// reads them, httparse reads the same, and they are read whole.
    #[test]
    fn simple_agrees_with_httparse_wherever_the_chunks_cut() {
        let bytes = [
            b'\r', b'\n', b':', b' ', b'a', b'-', b'_', b'\t', 0x00, 0x7f, 0x80,
        ];
        for at in 0..CHUNK {
            let mut buf = vec![b'x'; at];
            buf.extend_from_slice(FIELDS);
            buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert!(agrees_at(&buf, at), "at {at}");
            for len in at..at + FIELDS.len() {
                assert!(!agrees_at(&buf[..len], at), "at {at}, cut at {len}");
            }
            for place in at..at + FIELDS.len() {
                for b in bytes {
                    let mut changed = buf.clone();
                    changed[place] = b;
                    agrees_at(&changed, at);
                }
            }
        }
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
        /// some longer than a chunk, and an end: where `simple` reads one,
        /// httparse reads the same.
        #[test]
        fn simple_agrees_with_httparse_on_any_head(
            fields in proptest::collection::vec(
                (
                    piece(
                        &[b"Host", b"X-y", b"Sec-Fetch-Dest-And-Then-Some-More", b"X_y"],
                        &[b"", b"a b", b"\xff", b"\t", b"a\"", b"Sec-Fetch-Dest-And-Then-Some/"],
                    ),
                    piece(&[b":"], &[b"", b" :", b"::"]),
                    piece(&[b"", b" ", b"  "], &[b"\t", b" \t"]),
                    piece(
                        &[b"h", b"a b", b"*/*", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko"],
                        &[
                            b"",
                            b"a ",
                            b"a\t",
                            b"\x7f",
                            b"\x00",
                            b"\xff",
                            b"a\tb",
                            b":",
                            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0)\x01Gecko",
                        ],
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
