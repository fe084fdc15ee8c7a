//! Fuzzes the worker's IPC decoders with arbitrary bytes: never a panic, and whatever
//! decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ipc::{split_frame, Message, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some((payload, n))) = split_frame(&data[at..]) {
        if let Ok(r) = Request::decode(payload) {
            let mut out = Vec::new();
            r.encode(&mut out);
            assert_eq!(&out[4..], payload);
        }
        let _ = Reply::decode(payload);
        at += n;
    }
});
