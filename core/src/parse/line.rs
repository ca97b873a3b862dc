//! The request line of the common request, read without httparse.
//!
//! httparse reads a request line through its general machinery and checks
//! the target's UTF-8; most request lines have one simple shape that two
//! table scans and a comparison read for a fraction of that. Only a line that
//! httparse would read exactly so takes this path: any other — a byte outside
//! the tables, another target form or version, a line not yet complete — is
//! left to httparse, so the verdict on every input stays httparse's.

use super::block::{self, VisibleBut};
use crate::byteset::{short_run_of, TCHAR};

/// A simple request line, as offsets into the buffer it starts.
pub(super) struct Line {
    /// The method is `..method_len`, and one space follows it.
    pub method_len: usize,
    /// The target is `method_len + 1..target_end`, its path up to
    /// `path_end`, where a `?` begins its query if there is one.
    pub path_end: usize,
    pub target_end: usize,
    pub minor_version: u8,
    /// Bytes of the line, its line end included.
    pub len: usize,
}

/// The request line starting `buf` if it is simple: a method of `tchar`s,
/// one space, an origin-form target of visible ASCII, one space, `HTTP/1.1`
/// or `HTTP/1.0`, and CRLF or LF. httparse takes such a line as these parts
/// (its method and target bytes are supersets of these tables, and a space
/// ends each) and has no error to find in it.
#[inline]
pub(super) fn simple(buf: &[u8]) -> Option<Line> {
    let method_len = short_run_of(buf, &TCHAR);
    let target_start = method_len + 1;
    if method_len == 0 || buf.get(method_len..=target_start) != Some(&b" /"[..]) {
        return None;
    }
    let mut path_end = target_start + block::run_of(&buf[target_start..], &PATH);
    // A `%` starts two hex digits (RFC 3986 §2.1); a path with a stray one
    // is left to httparse, and refused after it (see `parse::split_target`).
    while buf.get(path_end) == Some(&b'%') {
        let after = path_end + 3;
        if !buf
            .get(path_end + 1..after)?
            .iter()
            .all(u8::is_ascii_hexdigit)
        {
            return None;
        }
        path_end = after + block::run_of(&buf[after..], &PATH);
    }
    let target_end = match buf.get(path_end) {
        Some(b'?') => path_end + 1 + block::run_of(&buf[path_end + 1..], &QUERY),
        _ => path_end,
    };
    let (version, end) = buf[target_end..].split_first_chunk::<9>()?;
    // Whole-array comparisons: a `match` on the bytes compares them one by one.
    let minor_version = if version == b" HTTP/1.1" {
        1
    } else if version == b" HTTP/1.0" {
        0
    } else {
        return None;
    };
    let line_end = match end {
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => return None,
    };
    Some(Line {
        method_len,
        path_end,
        target_end,
        minor_version,
        len: target_end + version.len() + line_end,
    })
}

/// VCHAR, `!` to `~`, but `#`: the bytes of a simple target's query.
/// httparse also takes `#` and bytes from 0x80 in a target (and then checks
/// its UTF-8); such a target is left to it, and refused after it (see
/// `parse::parse_general`).
const QUERY: VisibleBut = VisibleBut::new(b"#");

/// [`QUERY`]'s bytes but `?`, which ends a path, and `%`, which starts an
/// escape.
const PATH: VisibleBut = VisibleBut::new(b"#?%");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_line_is_read_as_httparse_reads_it() {
        for line in [
            &b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"PROPFIND /a/b?c=d%20e?f HTTP/1.0\nHost: h\n\n",
            b"GET /? HTTP/1.1\r\n",
            b"M /x HTTP/1.1\r\n",
        ] {
            let simple = simple(line).expect("a simple line");
            let mut req = httparse::Request::new(&mut []);
            let parsed = req.parse(line);
            assert!(
                !matches!(parsed, Err(e) if e != httparse::Error::TooManyHeaders),
                "{parsed:?}"
            );
            let method = req.method.unwrap().as_bytes();
            let target = req.path.unwrap().as_bytes();
            assert_eq!(&line[..simple.method_len], method);
            assert_eq!(&line[simple.method_len + 1..simple.target_end], target);
            let path = target.split(|&b| b == b'?').next().unwrap();
            assert_eq!(&line[simple.method_len + 1..simple.path_end], path);
            assert_eq!(Some(simple.minor_version), req.version);
            assert_eq!(line[simple.len - 1], b'\n');
            assert!(!line[..simple.len - 1].contains(&b'\n'));
        }
    }

    /// Every line built from these pieces, near misses among them: where
    /// `simple` reads one, httparse reads the same parts from it; where
    /// httparse finds an error, `simple` reads nothing.
    #[test]
    fn simple_agrees_with_httparse_on_every_combination() {
        let methods: [&[u8]; 8] = [
            b"GET",
            b"M",
            b"G(T",
            b"",
            b"GE T",
            b"\x7f",
            b"\xc3\xa9",
            b"PROPFIND",
        ];
        let gaps: [&[u8]; 4] = [b" ", b"  ", b"\t", b""];
        // Past the first chunk too, where the runs go a chunk at a time:
        // an escape, a query, `#`, DEL and a stray `%` there.
        let long_escaped = [&b"/"[..], &[b'a'; 40], b"/b%41", &[b'c'; 30]].concat();
        let long_query = [&b"/"[..], &[b'p'; 35], b"?q=", &[b'x'; 50], b"?y"].concat();
        let long_fragment = [&b"/"[..], &[b'a'; 50], b"#frag"].concat();
        let long_del = [&b"/"[..], &[b'a'; 33], b"\x7fb"].concat();
        let long_stray = [&b"/"[..], &[b'a'; 64], b"%zz"].concat();
        let targets: [&[u8]; 21] = [
            b"/",
            b"/a",
            b"/a?b",
            b"/?",
            b"/a?b?c#d",
            b"/\x7f",
            b"/\xc3\xa9",
            b"*",
            b"http://h/",
            b"",
            b"/ a",
            b"/%20",
            b"/%zz",
            b"/a%2",
            b"/%2f%ZZ?%zz",
            b"/%2F%a1?%zz",
            &long_escaped,
            &long_query,
            &long_fragment,
            &long_del,
            &long_stray,
        ];
        let versions: [&[u8]; 6] = [
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"HTTP/1.2",
            b"http/1.1",
            b"HTTP/1.1 ",
            b"HTTP/11",
        ];
        let ends: [&[u8]; 5] = [b"\r\n", b"\n", b"\r", b"", b"\rX"];
        let mut read = 0;
        for method in methods {
            for gap in gaps {
                for target in targets {
                    for gap2 in gaps {
                        for version in versions {
                            for end in ends {
                                let line = [method, gap, target, gap2, version, end].concat();
                                read += usize::from(agrees(&line));
                            }
                        }
                    }
                }
            }
        }
        // 3 methods × 8 targets (not those with `#` or DEL, nor those with
        // a `%` that starts no escape in their path) × 2 versions × 2 line
        // ends, with one space for each gap.
        assert_eq!(read, 96);
    }

    /// Whether `simple` read `line`, after checking it against httparse.
    fn agrees(line: &[u8]) -> bool {
        let head = [line, b"\r\n"].concat();
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse(&head);
        let Some(simple) = simple(line) else {
            return false;
        };
        let shown = String::from_utf8_lossy(line);
        assert!(parsed.is_ok(), "{shown:?}: httparse says {parsed:?}");
        assert_eq!(
            req.method.map(str::as_bytes),
            Some(&line[..simple.method_len])
        );
        let target = &line[simple.method_len + 1..simple.target_end];
        assert_eq!(req.path.map(str::as_bytes), Some(target), "{shown:?}");
        let path = target.split(|&b| b == b'?').next().unwrap();
        assert_eq!(&line[simple.method_len + 1..simple.path_end], path);
        assert_eq!(req.version, Some(simple.minor_version));
        assert_eq!(simple.len, line.len(), "{shown:?}");
        true
    }

    #[test]
    fn other_lines_are_left_to_httparse() {
        for line in [
            &b"GET / HTTP/1.1\r"[..],
            b"GET / HTTP/1.1",
            b"GET /",
            b"GET",
            b"",
            b"\r\nGET / HTTP/1.1\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET * HTTP/1.1\r\n",
            b"GET http://h/ HTTP/1.1\r\n",
            b"GET /\xc3\xa9 HTTP/1.1\r\n",
            b"GET /\t HTTP/1.1\r\n",
            b"GET / HTTP/1.2\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET / http/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"GET / HTTP/1.1\rX",
            b"G(T / HTTP/1.1\r\n",
        ] {
            assert!(
                simple(line).is_none(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
