//! The clients' side of HTTP/1.1: request bytes out, responses parsed back.
//! Small on purpose: it only has to read what core writes, and reject
//! anything else loudly.

/// The token that names one attempt of one request: carried in the request
/// target (`/r/<token>`) and echoed by the application in `x-req`.
pub fn token(client: usize, no: usize, attempt: u32) -> String {
    format!("{client}.{no}.{attempt}")
}

/// Parses a token back into (client, request number, attempt).
pub fn parse_token(t: &str) -> Option<(usize, usize, u32)> {
    let mut it = t.split('.');
    let r = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(r)
}

/// The body a client sends with request `no`: deterministic, so the
/// application can check it arrived intact.
pub fn body(no: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + ((no * 7 + i) % 26) as u8).collect()
}

/// Whether `got` is exactly the body of request `no` with `len` bytes.
pub fn is_body(no: usize, len: usize, got: &[u8]) -> bool {
    got.len() == len
        && got
            .iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + ((no * 7 + i) % 26) as u8)
}

/// How a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Body length (0: a `GET` without body).
    pub body_len: usize,
    /// Chunked instead of `Content-Length`, split into this many chunks.
    pub chunks: Option<usize>,
    /// Sends `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The connection closes after this request: `Connection: close` in
    /// HTTP/1.1; no `Connection: keep-alive` in HTTP/1.0.
    pub close: bool,
    /// An HTTP/1.0 request.
    pub http10: bool,
    /// The application answers it with a large body (so a client that
    /// does not read stalls the server's writes).
    pub big_response: bool,
}

/// A request as bytes: the head, and the body (already framed). Empty lines
/// before the request line (RFC 9112 §2.2) start the head, if `shape` says.
pub fn request(tok: &str, no: usize, shape: Shape) -> (Vec<u8>, Vec<u8>) {
    let mut head = Vec::with_capacity(96);
    let method = if shape.body_len == 0 && shape.chunks.is_none() {
        "GET"
    } else {
        "POST"
    };
    let minor = if shape.http10 { 0 } else { 1 };
    head.extend_from_slice(format!("{method} /r/{tok} HTTP/1.{minor}\r\nHost: sim\r\n").as_bytes());
    match (shape.http10, shape.close) {
        (false, true) => head.extend_from_slice(b"Connection: close\r\n"),
        (true, false) => head.extend_from_slice(b"Connection: keep-alive\r\n"),
        _ => {}
    }
    if shape.expect_continue {
        head.extend_from_slice(b"Expect: 100-continue\r\n");
    }
    let content = body(no, shape.body_len);
    let framed = match shape.chunks {
        Some(n) => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut out = Vec::with_capacity(content.len() + 16 * n + 5);
            let step = content.len().div_ceil(n.max(1)).max(1);
            for part in content.chunks(step) {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        None => {
            if method == "POST" {
                head.extend_from_slice(format!("Content-Length: {}\r\n", content.len()).as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            content
        }
    };
    (head, framed)
}

/// One parsed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resp {
    pub status: u16,
    /// Carried `Connection: close`.
    pub close: bool,
    /// The `x-req` header: which request the application answered.
    pub token: Option<String>,
    pub body_len: usize,
    /// Carried `Retry-After`: core's farewell to a request the drain
    /// deadline cut while it was arriving.
    pub retry_after: bool,
}

impl Resp {
    /// Core's farewell: `503` with `Retry-After` and `Connection: close`,
    /// a clean refusal the client may retry.
    pub fn is_farewell(&self) -> bool {
        self.status == 503 && self.retry_after && self.close && self.token.is_none()
    }
}

/// An incremental response parser over one connection's byte stream.
#[derive(Debug, Default)]
pub struct RespParser {
    head: Vec<u8>,
    /// How much of `\r\n\r\n` the head ends with (0..=3).
    crlf: u8,
    /// A response whose head is parsed, and the body bytes still to come.
    body: Option<(Resp, usize)>,
}

/// Longest response head the parser accepts.
const MAX_HEAD: usize = 64 * 1024;

impl RespParser {
    /// Whether part of a response has been seen but not all of it.
    pub fn mid_response(&self) -> bool {
        !self.head.is_empty() || self.body.is_some()
    }

    /// Feeds bytes; complete responses (interim `1xx` included) go to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Resp>) -> Result<(), String> {
        while !bytes.is_empty() {
            if let Some((_, left)) = &mut self.body {
                let n = (*left).min(bytes.len());
                *left -= n;
                bytes = &bytes[n..];
                if *left == 0 {
                    out.push(self.body.take().expect("checked").0);
                }
                continue;
            }
            // Scan for the end of the head, byte by byte, copying only head bytes.
            let mut end = None;
            for (i, &b) in bytes.iter().enumerate() {
                self.crlf = match (self.crlf, b) {
                    (0 | 2, b'\r') => self.crlf + 1,
                    (1 | 3, b'\n') => self.crlf + 1,
                    (_, b'\r') => 1,
                    _ => 0,
                };
                if self.crlf == 4 {
                    end = Some(i + 1);
                    break;
                }
            }
            let Some(end) = end else {
                self.head.extend_from_slice(bytes);
                if self.head.len() > MAX_HEAD {
                    return Err("response head over 64 KiB".into());
                }
                return Ok(());
            };
            self.head.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end..];
            self.crlf = 0;
            let resp = parse_head(&self.head)?;
            self.head.clear();
            let len = resp.body_len;
            if len == 0 {
                out.push(resp);
            } else {
                self.body = Some((resp, len));
            }
        }
        Ok(())
    }
}

fn parse_head(head: &[u8]) -> Result<Resp, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut resp = Resp {
        status,
        close: false,
        token: None,
        body_len: 0,
        retry_after: false,
    };
    let mut length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            resp.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("x-req") {
            resp.token = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("retry-after") {
            resp.retry_after = true;
        }
    }
    let bodiless = status < 200 || status == 204 || status == 304;
    resp.body_len = match (bodiless, length) {
        (true, _) => 0,
        (false, Some(n)) => n,
        (false, None) => return Err(format!("status {status} without Content-Length")),
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-req: 1.2.0\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno";

    fn parse_in(parts: &[&[u8]]) -> Vec<Resp> {
        let mut p = RespParser::default();
        let mut out = Vec::new();
        for part in parts {
            p.feed(part, &mut out).unwrap();
        }
        assert!(!p.mid_response());
        out
    }

    #[test]
    fn whole_bytewise_and_split_agree() {
        let whole = parse_in(&[WIRE]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].token.as_deref(), Some("1.2.0"));
        assert!(whole[2].close && whole[2].status == 413);
        let bytes: Vec<&[u8]> = WIRE.chunks(1).collect();
        assert_eq!(parse_in(&bytes), whole);
        for cut in 0..WIRE.len() {
            assert_eq!(parse_in(&[&WIRE[..cut], &WIRE[cut..]]), whole);
        }
    }

    #[test]
    fn tokens_and_requests_round_trip() {
        assert_eq!(parse_token(&token(3, 4, 5)), Some((3, 4, 5)));
        assert_eq!(parse_token("3.4"), None);
        let shape = Shape {
            body_len: 10,
            chunks: Some(3),
            expect_continue: false,
            close: false,
            http10: false,
            big_response: false,
        };
        let (head, body) = request("1.1.0", 1, shape);
        assert!(head.ends_with(b"chunked\r\n\r\n"));
        assert!(body.ends_with(b"0\r\n\r\n"));
        assert!(is_body(4, 30, &super::body(4, 30)));
        assert!(!is_body(4, 30, &super::body(5, 30)));
    }
}
