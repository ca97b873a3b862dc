//! Identifiers, and the view of a request the application reads.

use crate::parse::{FieldSpan, Head};

/// A connection, as core names it to the driver. Stays unique for the life of
/// a [`Server`](crate::Server): a slot reused by a later connection gets a new
/// generation, so inputs for a closed connection are ignored, not misapplied.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A small integer, unique among open connections: suitable as a mio
    /// `Token` or a slab index in the driver.
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The whole identifier as one number, unique for the life of the server.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

/// A request handed to the application, to be answered with
/// [`Server::handle_response`](crate::Server::handle_response).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub(crate) conn: ConnId,
    pub(crate) seq: u32,
}

impl RequestId {
    /// The connection the request arrived on.
    pub fn conn(self) -> ConnId {
        self.conn
    }

    /// The request's position on its connection: 0 for the first.
    pub fn seq(self) -> u32 {
        self.seq
    }
}

/// The HTTP version of a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// A complete request, borrowed from core's buffers: reading it copies
/// nothing. Copy out what an answer given later needs.
#[derive(Copy, Clone, Debug)]
pub struct Request<'a> {
    pub(crate) raw: &'a [u8],
    pub(crate) head: &'a Head,
    pub(crate) fields: &'a [FieldSpan],
    pub(crate) body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        text(self.head.method.get(self.raw))
    }

    /// The request target as sent: origin-form (`/a?b`), absolute-form
    /// (`http://host/a?b`), or `*`.
    pub fn target(&self) -> &'a str {
        text(self.head.target.get(self.raw))
    }

    /// The target's path, without the query: what to route by. For an
    /// absolute-form target (`http://host/a?b`) it is the path after the
    /// authority (`/a`), or `/` when there is none; for `OPTIONS *` it is `*`.
    pub fn path(&self) -> &'a str {
        match text(self.head.path.get(self.raw)) {
            "" => "/",
            path => path,
        }
    }

    /// The target's query, without the `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.head.query.map(|q| text(q.get(self.raw)))
    }

    /// The request's HTTP version.
    pub fn version(&self) -> Version {
        if self.head.minor_version == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// The header fields in the order received, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let raw = self.raw;
        self.fields
            .iter()
            .map(move |f| (text(f.name.get(raw)), f.value.get(raw)))
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The whole body, decoded if it was chunked.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

/// httparse only yields method, target and names that are ASCII tokens, so
/// this never loses anything; it avoids `unsafe` for a check that cannot fail.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}
