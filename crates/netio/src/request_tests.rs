//! Tables for the head parser and the request framing.

use super::*;
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_head: 1024,
    max_body: 64,
};

fn decode_str(s: &str) -> Result<Progress, DecodeError> {
    decode(&mut s.as_bytes().to_vec(), &LIMITS)
}

fn head(s: &str) -> Head {
    match decode_str(s) {
        Ok(Progress::Complete { head, .. } | Progress::Body { head, .. }) => head,
        other => panic!("{s:?}: {other:?}"),
    }
}

/// The whole request in `s`: its body and the bytes it took.
fn whole(s: &str) -> (Head, Vec<u8>, usize) {
    let mut buf = s.as_bytes().to_vec();
    match decode(&mut buf, &LIMITS) {
        Ok(Progress::Complete {
            head,
            body,
            consumed,
        }) => (head, buf[body].to_vec(), consumed),
        other => panic!("{s:?}: {other:?}"),
    }
}

#[test]
fn reads_what_k6_and_nginx_send() {
    let k6 = "POST /payments HTTP/1.1\r\nHost: localhost:9999\r\nUser-Agent: k6/1.1.0\r\n\
              Content-Length: 5\r\nContent-Type: application/json\r\n\r\nhello";
    let (h, body, consumed) = whole(k6);
    assert_eq!(h.method, Method::POST);
    assert_eq!(&k6[h.path.clone()], "/payments");
    assert!(h.query.is_empty());
    assert_eq!(
        (h.framing, h.keep_alive, h.http10),
        (Framing::Length(5), true, false)
    );
    assert_eq!((body.as_slice(), consumed), (&b"hello"[..], k6.len()));

    let nginx = "GET /payments-summary?from=2025-07-10T12:00:00.000Z&to=x HTTP/1.1\r\n\
                 Host: backend\r\nConnection: \r\n\r\n";
    let (h, body, _) = whole(nginx);
    assert_eq!(&nginx[h.path.clone()], "/payments-summary");
    assert_eq!(
        &nginx[h.query.clone()],
        "from=2025-07-10T12:00:00.000Z&to=x"
    );
    assert!(body.is_empty() && h.keep_alive);
}

#[test]
fn connection_rules_by_version() {
    let cases = [
        ("GET / HTTP/1.1\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (
            "GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            "GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
            false,
        ),
    ];
    for (req, keep) in cases {
        assert_eq!(head(req).keep_alive, keep, "{req:?}");
    }
    assert!(head("GET / HTTP/1.0\r\n\r\n").http10);
}

#[test]
fn targets_in_every_form() {
    let cases = [
        ("/a/b?x=1&y", "/a/b", "x=1&y"),
        ("/?", "/", ""),
        ("http://example.com/p?q", "/p", "q"),
        ("HTTPS://example.com:8443?q", "/", "q"),
        ("http://example.com", "/", ""),
        ("*", "*", ""),
    ];
    for (target, path, query) in cases {
        let text = format!("OPTIONS {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = text.into_bytes();
        let Ok(Progress::Complete { head, body, .. }) = decode(&mut buf, &LIMITS) else {
            panic!("{target}");
        };
        let req = Request::new(&head, &buf, body);
        assert_eq!((req.path, req.query), (path, query), "{target}");
    }
}

#[test]
fn header_lookup_is_case_blind_and_trims() {
    let text = "\r\nPOST /x HTTP/1.1\r\nX-Rinha-Token:  123 \r\nx-payroute-token:\tabc\r\n\
                Empty:\r\n\r\n";
    let mut buf = text.as_bytes().to_vec();
    let Ok(Progress::Complete { head, body, .. }) = decode(&mut buf, &LIMITS) else {
        panic!()
    };
    let req = Request::new(&head, &buf, body);
    assert_eq!(req.header("x-rinha-token"), Some(&b"123"[..]));
    assert_eq!(req.header("X-PAYROUTE-TOKEN"), Some(&b"abc"[..]));
    assert_eq!(req.header("empty"), Some(&b""[..]));
    assert_eq!(req.header("host"), None);
    // The request line is not a field.
    assert_eq!(req.header("POST /x HTTP/1.1\r\nX-Rinha-Token"), None);
}

#[test]
fn bodies_by_length_and_chunked() {
    let (_, body, n) = whole("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabcGET");
    assert_eq!((body.as_slice(), n), (&b"abc"[..], 44));
    let chunked =
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let (h, body, n) = whole(chunked);
    assert_eq!(
        (h.framing, body.as_slice(), n),
        (Framing::Chunked, &b"abcde"[..], chunked.len())
    );
    // Incomplete: the head is there, the body is not; a known length says how much.
    let Ok(Progress::Body { whole, .. }) =
        decode_str("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    else {
        panic!()
    };
    assert_eq!(whole, Some(49));
    assert!(matches!(
        decode_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"),
        Ok(Progress::Body { whole: None, .. })
    ));
    assert_eq!(
        decode_str("POST / HTTP/1.1\r\nContent-Le"),
        Ok(Progress::Head)
    );
}

#[test]
fn expect_continue_on_http11_only() {
    let h = head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
    assert!(h.expect_continue);
    let h = head("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(!h.expect_continue);
}

#[test]
fn refusals() {
    let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    let cases: Vec<(String, DecodeError)> = vec![
        (big_head.clone(), DecodeError::HeadTooLarge),
        (big_head[..1500].to_string(), DecodeError::HeadTooLarge),
        (many, DecodeError::HeadTooLarge),
        (
            "GET / HTTP/1.1\r\nContent-Length: 65\r\n\r\n".into(),
            DecodeError::BodyTooLarge,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n".into(),
            DecodeError::BodyTooLarge,
        ),
        (
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
            DecodeError::UnsupportedCoding,
        ),
        (
            "POST / HTTP/1.1\r\nExpect: magic\r\n\r\n".into(),
            DecodeError::Expectation,
        ),
        ("GET / HTTP/2.0\r\n\r\n".into(), DecodeError::Version),
        ("GET /\r\n\r\n".into(), DecodeError::Malformed),
        ("G@T / HTTP/1.1\r\n\r\n".into(), DecodeError::Malformed),
        (
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".into(),
            DecodeError::Malformed,
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            decode_str(&req),
            Err(want),
            "{:?}",
            &req[..req.len().min(80)]
        );
    }
    // A TLS client hello on the plain port.
    let mut tls = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    assert_eq!(decode(&mut tls, &LIMITS), Err(DecodeError::Malformed));
}

#[test]
fn pipelined_requests_come_one_at_a_time() {
    let two = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    let mut buf = two.as_bytes().to_vec();
    let Ok(Progress::Complete { consumed, .. }) = decode(&mut buf, &LIMITS) else {
        panic!()
    };
    buf.drain(..consumed);
    let Ok(Progress::Complete {
        head,
        body,
        consumed,
    }) = decode(&mut buf, &LIMITS)
    else {
        panic!()
    };
    assert_eq!(
        (head.method, &buf[body], consumed),
        (Method::POST, &b"hi"[..], buf.len())
    );
}

proptest! {
    #[test]
    fn any_cut_of_a_request_waits_for_the_rest(cut in 0usize..120) {
        let req = "POST /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
        let cut = cut.min(req.len());
        let got = decode_str(&req[..cut]);
        if cut == req.len() {
            let complete = matches!(got, Ok(Progress::Complete { .. }));
            prop_assert!(complete);
        } else {
            let waiting = matches!(got, Ok(Progress::Head | Progress::Body { .. }));
            prop_assert!(waiting, "{:?}", got);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = bytes.clone();
        if let Ok(Progress::Complete { head, body, consumed }) = decode(&mut buf, &LIMITS) {
            prop_assert!(head.len <= consumed && consumed <= buf.len());
            prop_assert!(body.start == head.len && body.end <= consumed);
            let _ = Request::new(&head, &buf, body).header("x");
        }
    }
}
