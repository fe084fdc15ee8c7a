//! Answers: what a handler returns ([`Response`]) and how it is written on the wire
//! ([`encode`]), appended to the connection's write buffer without `format!` or any
//! allocation, so that the answers to a pipelined batch leave in one write.

use crate::date;
use http::StatusCode;

/// A response body: a constant, or bytes built for this answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Body {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Owned(v) => v,
        }
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Static(s.as_bytes())
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Body {
        Body::Static(b)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Owned(s.into_bytes())
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Owned(v)
    }
}

/// An answer. The server adds `date`, `content-length` and, when it closes the
/// connection, `connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: Option<&'static str>,
    pub body: Body,
    /// Further header fields (`allow`, `retry-after`); none on the hot path, so an
    /// empty `Vec` that never allocates.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// An answer with no body.
    pub fn new(status: StatusCode) -> Response {
        Response {
            status,
            content_type: None,
            body: Body::Static(b""),
            headers: Vec::new(),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// A response with a JSON body.
pub fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    with_type(status, "application/json", body)
}

/// A response with a body of the given content type.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    Response {
        content_type: Some(content_type),
        body: body.into(),
        ..Response::new(status)
    }
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response {
    Response::new(status)
}

/// A JSON error body `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    json(status, format!("{{\"error\":{}}}", json_string(message)))
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the `connection` field says, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 keep-alive: nothing to say.
    Default,
    /// An HTTP/1.0 client that asked to keep the connection.
    KeepAlive,
    /// The server closes the connection after this answer.
    Close,
}

/// Appends `resp` to `out`, its body too unless `head_only` (an answer to `HEAD`).
pub fn encode(resp: &Response, head_only: bool, connection: Connection, out: &mut Vec<u8>) {
    let body = resp.body.as_bytes();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        resp.status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\ndate: ");
    date::append_now(out);
    if let Some(t) = resp.content_type {
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(t.as_bytes());
    }
    // RFC 9110 §8.6: no length on a 1xx or 204 answer, and no body.
    let bodiless = resp.status.is_informational() || resp.status == StatusCode::NO_CONTENT;
    if !bodiless {
        out.extend_from_slice(b"\r\ncontent-length: ");
        append_decimal(out, body.len() as u64);
    }
    for (name, value) in &resp.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    match connection {
        Connection::Default => {}
        Connection::KeepAlive => out.extend_from_slice(b"\r\nconnection: keep-alive"),
        Connection::Close => out.extend_from_slice(b"\r\nconnection: close"),
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only && !bodiless {
        out.extend_from_slice(body);
    }
}

/// Appends `n` in decimal.
fn append_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(resp: &Response, head_only: bool, c: Connection) -> String {
        let mut out = Vec::new();
        encode(resp, head_only, c, &mut out);
        let text = String::from_utf8(out).unwrap();
        // The date changes; check its shape, then hide it.
        let at = text.find("date: ").unwrap() + 6;
        assert!(text[at..].starts_with(|c: char| c.is_ascii_uppercase()));
        assert_eq!(&text[at + 26..at + 29], "GMT", "{text}");
        format!("{}<date>{}", &text[..at], &text[at + 29..])
    }

    #[test]
    fn writes_status_fields_and_body() {
        let r = json(StatusCode::BAD_REQUEST, r#"{"error":"x"}"#);
        assert_eq!(
            wire(&r, false, Connection::Default),
            "HTTP/1.1 400 Bad Request\r\ndate: <date>\r\ncontent-type: application/json\r\n\
             content-length: 13\r\n\r\n{\"error\":\"x\"}"
        );
        let r = empty(StatusCode::ACCEPTED).with_header("retry-after", "5");
        assert_eq!(
            wire(&r, false, Connection::Close),
            "HTTP/1.1 202 Accepted\r\ndate: <date>\r\ncontent-length: 0\r\nretry-after: 5\r\n\
             connection: close\r\n\r\n"
        );
    }

    #[test]
    fn head_answers_and_204_carry_no_body() {
        let r = json(StatusCode::OK, "{}");
        assert_eq!(
            wire(&r, true, Connection::KeepAlive),
            "HTTP/1.1 200 OK\r\ndate: <date>\r\ncontent-type: application/json\r\n\
             content-length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
        let r = json(StatusCode::NO_CONTENT, "{}");
        assert_eq!(
            wire(&r, false, Connection::Default),
            "HTTP/1.1 204 No Content\r\ndate: <date>\r\ncontent-type: application/json\r\n\r\n"
        );
    }

    #[test]
    fn decimal_and_json_strings() {
        for n in [0u64, 7, 10, 4096, u64::MAX] {
            let mut out = Vec::new();
            append_decimal(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
        assert_eq!(
            json_string("a\"b\\c\n\u{1f}é"),
            "\"a\\\"b\\\\c\\u000a\\u001fé\""
        );
    }
}
