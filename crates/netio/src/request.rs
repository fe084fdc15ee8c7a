//! Requests as they arrive: the head (request line and header fields, parsed by
//! `httparse`) and the body's framing, decided from the head alone. Pure: [`decode`]
//! looks at the bytes received so far and says what is complete, what is missing, or
//! why the request is refused. The connection loop and the fuzz target
//! (`fuzz/fuzz_targets/http_request.rs`) both drive it.

use crate::chunked;
use http::Method;
use std::ops::Range;

/// Header fields read per request at most; more is a 431, as for too large a head.
/// Real clients send about ten.
pub const MAX_HEADERS: usize = 64;

/// What the server reads of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of head (request line and header fields) at most: 431 beyond.
    pub max_head: usize,
    /// Bytes of body at most, after chunked decoding: 413 beyond.
    pub max_body: usize,
}

/// A parsed request head: positions into the buffer it was parsed from, so that it can
/// be kept while the body arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The path of the request target (no query); empty for an absolute-form target
    /// without a path, which [`crate::Request::path`] reads as `/`.
    pub path: Range<usize>,
    /// The query, without its `?`; empty when there is none.
    pub query: Range<usize>,
    /// Bytes of the head, blank lines before the request line and the final empty line
    /// included: the body starts here.
    pub len: usize,
    /// An HTTP/1.0 request (else 1.1).
    pub http10: bool,
    pub framing: Framing,
    /// Whether the client allows the connection to stay open after the answer.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request is refused before the handler sees it. Each becomes a status and the
/// connection is closed after the answer (its framing can no longer be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The head is over [`Limits::max_head`] or has over [`MAX_HEADERS`] fields: 431.
    HeadTooLarge,
    /// The body is over [`Limits::max_body`]: 413.
    BodyTooLarge,
    /// Not HTTP/1.x syntax, a bad `Content-Length`, both `Content-Length` and
    /// `Transfer-Encoding`, a transfer coding not ending in `chunked`, a bad chunk: 400.
    Malformed,
    /// A transfer coding other than `chunked` alone (`gzip, chunked`): 501.
    UnsupportedCoding,
    /// An `Expect` other than `100-continue`: 417.
    Expectation,
    /// An HTTP version other than 1.0 and 1.1: 505.
    Version,
}

/// What the bytes received so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not a whole head yet.
    Head,
    /// A whole head; its body is not all there. `whole`: bytes the request takes with
    /// its body, when known (a `Content-Length`), to size the buffer once.
    Body { head: Head, whole: Option<usize> },
    /// A whole request. The body is `buf[body]` (a chunked body has been decoded in
    /// place, at the same start); the next request starts at `buf[consumed..]`.
    Complete {
        head: Head,
        body: Range<usize>,
        consumed: usize,
    },
}

/// A whole request as a handler sees it, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path of the target, not decoded (`/payments`).
    pub path: &'a str,
    /// The query without its `?` (`from=...&to=...`), empty when there is none.
    pub query: &'a str,
    /// The body, chunked framing removed.
    pub body: &'a [u8],
    /// The head's bytes, for [`Request::header`].
    head: &'a [u8],
}

impl<'a> Request<'a> {
    /// The request in `buf` that `head` describes, with its body at `body`.
    pub fn new(head: &'a Head, buf: &'a [u8], body: Range<usize>) -> Request<'a> {
        // The head was parsed from these bytes, so the ranges are on UTF-8 boundaries;
        // the fallbacks are never taken.
        let text = |r: Range<usize>| std::str::from_utf8(&buf[r]).unwrap_or("");
        let path = if head.path.is_empty() {
            "/"
        } else {
            text(head.path.clone())
        };
        Request {
            method: &head.method,
            path,
            query: text(head.query.clone()),
            body: &buf[body],
            head: &buf[..head.len],
        }
    }

    /// The value of the first header field called `name` (any case), without
    /// surrounding whitespace. Looked up by scanning the head: handlers ask for one or
    /// two fields, rarely, so nothing is indexed in advance.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let mut lines = self
            .head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            // Blank lines before the request line, then the request line.
            .skip_while(|l| l.is_empty())
            .skip(1);
        lines.find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| trim(&line[colon + 1..]))
        })
    }
}

/// Bytes a chunked body may take on the wire, framing included, before it is refused
/// (413): its data, plus room for honest framing (a size line and CRLF per chunk) that
/// a flood of one-byte chunks would exceed.
pub fn max_chunked_wire(max_body: usize) -> usize {
    2 * max_body + 1024
}

/// Looks at the start of `buf`. A complete chunked body is decoded in place (its data
/// moved to the front of the body), so `buf` is mutable; nothing else is changed.
pub fn decode(buf: &mut [u8], limits: &Limits) -> Result<Progress, DecodeError> {
    let Some(head) = parse_head(buf, limits.max_head)? else {
        return Ok(Progress::Head);
    };
    let start = head.len;
    match head.framing {
        Framing::None => Ok(Progress::Complete {
            body: start..start,
            consumed: start,
            head,
        }),
        Framing::Length(n) if n > limits.max_body => Err(DecodeError::BodyTooLarge),
        Framing::Length(n) if buf.len() - start >= n => Ok(Progress::Complete {
            body: start..start + n,
            consumed: start + n,
            head,
        }),
        Framing::Length(n) => Ok(Progress::Body {
            whole: Some(start + n),
            head,
        }),
        Framing::Chunked => match chunked::scan(&buf[start..], limits.max_body)? {
            // The same bound whether the body arrived whole or is still arriving.
            Some(done) if done.consumed > max_chunked_wire(limits.max_body) => {
                Err(DecodeError::BodyTooLarge)
            }
            Some(done) => {
                chunked::compact(&mut buf[start..]);
                Ok(Progress::Complete {
                    body: start..start + done.body_len,
                    consumed: start + done.consumed,
                    head,
                })
            }
            None if buf.len() - start >= max_chunked_wire(limits.max_body) => {
                Err(DecodeError::BodyTooLarge)
            }
            None => Ok(Progress::Body { head, whole: None }),
        },
    }
}

impl From<chunked::ChunkError> for DecodeError {
    fn from(e: chunked::ChunkError) -> Self {
        match e {
            chunked::ChunkError::TooLarge => DecodeError::BodyTooLarge,
            chunked::ChunkError::Malformed => DecodeError::Malformed,
        }
    }
}

/// The head at the start of `buf`, once it is whole.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<Head>, DecodeError> {
    // Left uninitialised: httparse writes the fields it finds (as hyper uses it), which
    // spares clearing 2 KiB of stack per parse.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Complete(_)) => return Err(DecodeError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(DecodeError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(DecodeError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(DecodeError::Version),
        Err(_) => return Err(DecodeError::Malformed),
    };
    // A complete parse has every part.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(DecodeError::Malformed);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| DecodeError::Malformed)?;
    let http10 = version == 0;
    let fields = Fields::read(req.headers, http10)?;
    let (path, query) = split_target(target, offset_in(buf, target));
    Ok(Some(Head {
        method,
        path,
        query,
        len,
        http10,
        keep_alive: if http10 {
            fields.keep_alive && !fields.close
        } else {
            !fields.close
        },
        expect_continue: fields.expect_continue && !http10,
        framing: fields.framing(http10)?,
    }))
}

/// Where `part` (a slice of `buf`) starts in `buf`.
fn offset_in(buf: &[u8], part: &str) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize
}

/// Path and query ranges of a request target that starts at `at`. Origin form
/// (`/p?q`) is what clients send; absolute form (`http://host/p?q`) is accepted as
/// RFC 9112 §3.2.2 asks; anything else (`*`, `host:port`) is passed on as the path.
fn split_target(target: &str, at: usize) -> (Range<usize>, Range<usize>) {
    let mut path_from = 0;
    let absolute = || target.find("://");
    if let Some(scheme_end) = (!target.starts_with('/')).then(absolute).flatten() {
        let scheme = &target[..scheme_end];
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            let rest = scheme_end + 3;
            path_from = target[rest..]
                .find(['/', '?'])
                .map_or(target.len(), |i| rest + i);
        }
    }
    let path_to = target[path_from..]
        .find('?')
        .map_or(target.len(), |i| path_from + i);
    let query = if path_to < target.len() {
        at + path_to + 1..at + target.len()
    } else {
        at + target.len()..at + target.len()
    };
    (at + path_from..at + path_to, query)
}

/// What the header fields say about framing and the connection.
#[derive(Default)]
struct Fields {
    content_length: Option<usize>,
    /// Transfer codings, in order, across every `Transfer-Encoding` field.
    codings: usize,
    last_coding_chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Fields {
    fn read(fields: &[httparse::Header<'_>], http10: bool) -> Result<Fields, DecodeError> {
        let mut f = Fields::default();
        for h in fields {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = content_length(h.value)?;
                if f.content_length.is_some_and(|m| m != n) {
                    return Err(DecodeError::Malformed);
                }
                f.content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in tokens(h.value) {
                    f.codings += 1;
                    f.last_coding_chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
                if f.codings == 0 {
                    return Err(DecodeError::Malformed);
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for option in tokens(h.value) {
                    f.close |= option.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") && !http10 {
                if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(DecodeError::Expectation);
                }
                f.expect_continue = true;
            }
        }
        Ok(f)
    }

    /// RFC 9112 §6: a transfer coding and a length together, or a transfer coding on
    /// HTTP/1.0, cannot be framed reliably (400); a coding list must end in `chunked`
    /// (400), and `chunked` is the only one this server decodes (501).
    fn framing(&self, http10: bool) -> Result<Framing, DecodeError> {
        match (self.codings, self.content_length) {
            (0, None) => Ok(Framing::None),
            (0, Some(n)) => Ok(Framing::Length(n)),
            (_, Some(_)) => Err(DecodeError::Malformed),
            _ if http10 || !self.last_coding_chunked => Err(DecodeError::Malformed),
            (1, None) => Ok(Framing::Chunked),
            _ => Err(DecodeError::UnsupportedCoding),
        }
    }
}

/// A `Content-Length` value: digits, or a list of the same digits (`5, 5`, which RFC
/// 9110 §8.6 allows a recipient to accept).
fn content_length(value: &[u8]) -> Result<usize, DecodeError> {
    let mut found = None;
    for item in value.split(|&b| b == b',') {
        let item = trim(item);
        // 19 digits fit a u64; more is no honest length.
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::Malformed);
        }
        let n = item.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|m| m != n) {
            return Err(DecodeError::Malformed);
        }
        found = Some(n);
    }
    let n = found.ok_or(DecodeError::Malformed)?;
    // Beyond usize (32-bit targets) is beyond any body limit anyway.
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The non-empty comma-separated tokens of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// `v` without leading and trailing spaces and tabs.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &v[start..=end]
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
