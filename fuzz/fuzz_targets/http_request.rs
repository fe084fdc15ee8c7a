//! Fuzzes netio's request decoder (head, `Content-Length` and chunked framing) with
//! arbitrary bytes, as a connection feeds it: never a panic; a whole request's parts lie
//! inside the bytes; a chunked body decodes to what a plain reference decoder reads;
//! and any shorter prefix of a whole request only ever asks for more bytes (the
//! connection decodes after every read, so a prefix must never be refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netio::request::{decode, Framing, Limits, Progress};
use netio::Request;

const LIMITS: Limits = Limits {
    max_head: 2048,
    max_body: 512,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let mut at = 0;
    while let Ok(Progress::Complete { head, body, consumed }) = decode(&mut buf[at..], &LIMITS) {
        assert!(head.len <= body.start && body.start <= body.end && body.end <= consumed);
        assert!(at + consumed <= data.len());
        let req = Request::new(&head, &buf[at..], body.clone());
        let _ = (req.header("host"), req.path, req.query);
        if head.framing == Framing::Chunked {
            let wire = &data[at + head.len..at + consumed];
            assert_eq!(reference_dechunk(wire).as_deref(), Some(req.body));
        }
        for cut in [consumed - 1, consumed / 2, data.len() % consumed.max(1)] {
            if cut < consumed {
                let mut prefix = data[at..at + cut].to_vec();
                let got = decode(&mut prefix, &LIMITS);
                assert!(
                    matches!(got, Ok(Progress::Head | Progress::Body { .. })),
                    "prefix of {cut} bytes: {got:?}"
                );
            }
        }
        at += consumed;
    }
});

/// Chunked framing read the plain way: size line (hex digits up to `;` or a blank; the
/// rest, any bytes, ignored), data, CRLF.
fn reference_dechunk(mut wire: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = wire.windows(2).position(|w| w == b"\r\n")?;
        let line = &wire[..eol];
        let end = line
            .iter()
            .position(|b| matches!(b, b';' | b' ' | b'\t'))
            .unwrap_or(line.len());
        let size = usize::from_str_radix(std::str::from_utf8(&line[..end]).ok()?, 16).ok()?;
        wire = &wire[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(wire.get(..size)?);
        if wire.get(size..size + 2)? != b"\r\n" {
            return None;
        }
        wire = &wire[size + 2..];
    }
}
