//! `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1), decoded in place: a
//! first pass ([`scan`]) checks the framing without touching the bytes and says whether
//! the body is whole; once it is, a second pass ([`compact`]) moves the data of every
//! chunk to the front, so the body is one slice of the connection's buffer and nothing
//! is allocated.
//!
//! Strict where leniency has let requests be split differently by a proxy and a server:
//! a chunk size is one or more hex digits (no `0x`, no sign, no spaces inside), then
//! optional spaces or tabs before an extension (`;...`, ignored), then CRLF; a bare CR
//! or LF, or a control byte, in that line is an error. Trailer fields are checked by
//! `httparse` and ignored.

/// Longest chunk-size line accepted, extensions included.
const MAX_SIZE_LINE: usize = 1024;

/// Trailer fields accepted after the last chunk (ignored).
const MAX_TRAILERS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The data is over the body limit.
    TooLarge,
    /// Not chunked framing.
    Malformed,
}

/// A whole chunked body at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes of data (what [`compact`] leaves at the front).
    pub body_len: usize,
    /// Bytes of the framed body, last chunk and trailers included.
    pub consumed: usize,
}

/// Checks the chunked body at the start of `buf`: `Ok(None)` while it is incomplete.
/// Data beyond `max_body` bytes is an error as soon as a chunk size announces it.
pub fn scan(buf: &[u8], max_body: usize) -> Result<Option<Scanned>, ChunkError> {
    let mut pos = 0;
    let mut body_len = 0usize;
    loop {
        let Some((size, line)) = size_line(&buf[pos..])? else {
            return Ok(None);
        };
        pos += line;
        if size == 0 {
            return Ok(trailers(&buf[pos..])?.map(|t| Scanned {
                body_len,
                consumed: pos + t,
            }));
        }
        if size > (max_body - body_len) as u64 {
            return Err(ChunkError::TooLarge);
        }
        let size = size as usize;
        let Some(end) = buf.get(pos + size..pos + size + 2) else {
            return Ok(None);
        };
        if end != b"\r\n" {
            return Err(ChunkError::Malformed);
        }
        body_len += size;
        pos += size + 2;
    }
}

/// Moves the data of the chunked body at the start of `buf`, which [`scan`] found
/// whole, to the front of `buf`; returns its length. Writes only behind what it still
/// has to read, so one pass is enough.
pub fn compact(buf: &mut [u8]) -> usize {
    let mut pos = 0;
    let mut out = 0;
    while let Ok(Some((size, line))) = size_line(&buf[pos..]) {
        pos += line;
        if size == 0 {
            break;
        }
        let size = size as usize;
        buf.copy_within(pos..pos + size, out);
        out += size;
        pos += size + 2;
    }
    out
}

/// The chunk-size line at the start of `buf`: `(size, bytes of the line)`.
fn size_line(buf: &[u8]) -> Result<Option<(u64, usize)>, ChunkError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // 15 hex digits hold any size this server could accept; more is no honest size.
    if digits > 15 {
        return Err(ChunkError::Malformed);
    }
    if digits == buf.len() {
        return Ok(None);
    }
    if digits == 0 {
        return Err(ChunkError::Malformed);
    }
    let size = buf[..digits].iter().fold(0u64, |n, &d| n * 16 + hex(d));
    let mut i = digits;
    while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
        i += 1;
    }
    if i < buf.len() && buf[i] == b';' {
        // An extension: anything printable (or a tab) up to CR.
        while i < buf.len() && buf[i] != b'\r' {
            if (buf[i] < b' ' && buf[i] != b'\t') || buf[i] == 0x7f {
                return Err(ChunkError::Malformed);
            }
            i += 1;
        }
    }
    if i > MAX_SIZE_LINE {
        return Err(ChunkError::Malformed);
    }
    match (buf.get(i), buf.get(i + 1)) {
        (None, _) | (Some(b'\r'), None) => Ok(None),
        (Some(b'\r'), Some(b'\n')) => Ok(Some((size, i + 2))),
        _ => Err(ChunkError::Malformed),
    }
}

fn hex(d: u8) -> u64 {
    match d {
        b'0'..=b'9' => u64::from(d - b'0'),
        b'a'..=b'f' => u64::from(d - b'a' + 10),
        _ => u64::from(d - b'A' + 10),
    }
}

/// The trailer section after the last chunk: `Some(bytes)` once whole.
fn trailers(buf: &[u8]) -> Result<Option<usize>, ChunkError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((n, _))) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() > MAX_SIZE_LINE * 4 => {
            Err(ChunkError::Malformed)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(ChunkError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The whole decode, as the connection does it.
    fn decode(wire: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, ChunkError> {
        let mut buf = wire.to_vec();
        Ok(scan(&buf, max)?.map(|s| {
            assert_eq!(compact(&mut buf), s.body_len);
            (buf[..s.body_len].to_vec(), s.consumed)
        }))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let ok: &[(&[u8], &[u8])] = &[
            (b"0\r\n\r\n", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"a;name=value\r\n0123456789\r\n0;x\r\n\r\n", b"0123456789"),
            (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", b"hello"),
            (b"005\r\nhello\r\n000\r\n\r\n", b"hello"),
        ];
        for (wire, body) in ok {
            let got = decode(wire, 100).unwrap().unwrap();
            assert_eq!((got.0.as_slice(), got.1), (*body, wire.len()), "{wire:?}");
        }
        // What follows the body is left alone.
        let got = decode(b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1", 100).unwrap();
        assert_eq!(got, Some((b"x".to_vec(), 11)));
    }

    #[test]
    fn waits_for_every_part() {
        let wire = b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut], 100), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_what_proxies_could_read_otherwise() {
        let bad: &[&[u8]] = &[
            b"\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 0\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
            b"1000000000000000\r\n",
        ];
        for wire in bad {
            assert_eq!(decode(wire, 100), Err(ChunkError::Malformed), "{wire:?}");
        }
    }

    #[test]
    fn refuses_bodies_over_the_limit_as_soon_as_announced() {
        assert_eq!(
            decode(b"5\r\nhello\r\n0\r\n\r\n", 5).unwrap().unwrap().0,
            b"hello"
        );
        assert_eq!(decode(b"6\r\n", 5), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"3\r\nabc\r\n3\r\n", 5), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"fffffffffffffff\r\n", 5), Err(ChunkError::TooLarge));
    }

    /// A body cut into chunks any way decodes to itself.
    fn chunked(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut at = 0;
        for &c in cuts {
            let end = (at + c).min(body.len());
            if end > at {
                wire.extend_from_slice(format!("{:x}\r\n", end - at).as_bytes());
                wire.extend_from_slice(&body[at..end]);
                wire.extend_from_slice(b"\r\n");
                at = end;
            }
        }
        if at < body.len() {
            wire.extend_from_slice(format!("{:X};e=1\r\n", body.len() - at).as_bytes());
            wire.extend_from_slice(&body[at..]);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    proptest! {
        #[test]
        fn any_chunking_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(1usize..50, 0..10),
        ) {
            let wire = chunked(&body, &cuts);
            prop_assert_eq!(decode(&wire, 300), Ok(Some((body, wire.len()))));
        }

        #[test]
        fn garbage_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((body, consumed))) = decode(&wire, 32) {
                prop_assert!(body.len() <= 32 && consumed <= wire.len());
            }
        }
    }
}
