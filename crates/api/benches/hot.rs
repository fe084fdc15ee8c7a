//! One microbenchmark per function on the path of a `POST /payments` through the api:
//! the request's head (and framing), the payment body, the IPC submit and its reply
//! both ways, the answer. Meant for instruction counts under callgrind, which are
//! repeatable on a shared machine where wall time is not:
//!
//! ```text
//! scripts/microbench                              # instructions per call, each function
//! cargo bench -p api --bench hot                  # wall time per call, each function
//! cargo bench -p api --bench hot -- head_parse 1000000   # one function, N calls
//! ```
//! `model` and `ipc` are measured from here, as the api uses them, without code of
//! their own for it.

use http::StatusCode;
use ipc::{split_frame, Message, Reply, Request, SubmitStatus};
use model::{Cents, PaymentRequest};
use netio::request::{decode, Limits, Progress};
use netio::response::{encode, Connection};
use std::hint::black_box;
use std::time::Instant;
use uuid::Uuid;

const BODY: &[u8] = br#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90}"#;

/// What k6 sends for a payment, head and body.
fn k6_request() -> Vec<u8> {
    let mut r = format!(
        "POST /payments HTTP/1.1\r\nHost: localhost:9999\r\nUser-Agent: k6/1.1.0 (https://k6.io/)\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    r.extend_from_slice(BODY);
    r
}

fn head_parse(n: u64) {
    let mut buf = k6_request();
    let limits = Limits {
        max_head: 16 * 1024,
        max_body: 4096,
    };
    for _ in 0..n {
        let got = decode(black_box(&mut buf), &limits);
        assert!(matches!(black_box(got), Ok(Progress::Complete { .. })));
    }
}

fn payment_parse(n: u64) {
    for _ in 0..n {
        black_box(PaymentRequest::parse(black_box(BODY)).unwrap());
    }
}

fn response_encode(n: u64) {
    let resp = netio::empty(StatusCode::ACCEPTED);
    let mut out = Vec::with_capacity(512);
    for _ in 0..n {
        out.clear();
        encode(black_box(&resp), false, Connection::Default, &mut out);
        black_box(&out);
    }
}

fn submit() -> Request {
    Request::Submit {
        id: Uuid::from_u128(0x4a7901b8_7d26_4d9d_aa19_4dc1c7cf60b3),
        amount: Cents(1990),
    }
}

fn submit_encode(n: u64) {
    let req = submit();
    let mut out = Vec::with_capacity(512);
    for _ in 0..n {
        out.clear();
        black_box(&req).encode(&mut out);
        black_box(&out);
    }
}

fn submit_decode(n: u64) {
    let mut frame = Vec::new();
    submit().encode(&mut frame);
    for _ in 0..n {
        let (payload, _) = split_frame(black_box(&frame)).unwrap().unwrap();
        black_box(Request::decode(payload).unwrap());
    }
}

fn reply_encode(n: u64) {
    let reply = Reply::Submit(SubmitStatus::Accepted);
    let mut out = Vec::with_capacity(64);
    for _ in 0..n {
        out.clear();
        black_box(&reply).encode(&mut out);
        black_box(&out);
    }
}

fn reply_decode(n: u64) {
    let mut frame = Vec::new();
    Reply::Submit(SubmitStatus::Accepted).encode(&mut frame);
    for _ in 0..n {
        let (payload, _) = split_frame(black_box(&frame)).unwrap().unwrap();
        black_box(Reply::decode(payload).unwrap());
    }
}

/// A benchmark: its name, and the function that makes that many calls.
type Bench = (&'static str, fn(u64));

const BENCHES: &[Bench] = &[
    ("head_parse", head_parse),
    ("payment_parse", payment_parse),
    ("response_encode", response_encode),
    ("submit_encode", submit_encode),
    ("submit_decode", submit_decode),
    ("reply_encode", reply_encode),
    ("reply_decode", reply_decode),
];

fn main() {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [name, n] => {
            let (_, f) = BENCHES
                .iter()
                .find(|(b, _)| b == name)
                .unwrap_or_else(|| panic!("no benchmark {name}"));
            f(n.parse().expect("a number of calls"));
        }
        [] => {
            for (name, f) in BENCHES {
                let n = 1_000_000;
                let started = Instant::now();
                f(n);
                let ns = started.elapsed().as_nanos() as f64 / n as f64;
                println!("{name:>16}: {ns:8.1} ns per call");
            }
        }
        _ => panic!("usage: hot [NAME CALLS]"),
    }
}
