//! Feeds arbitrary bytes to every entry point of the SIP parser.
//!
//! Beyond "no panic", it checks the properties a transport and UAS rely on:
//! `parse` and `parse_for_reply` agree; stream framing never claims more
//! bytes than it was given; and every message that parses serializes with
//! `to_bytes` into bytes that parse back to the same message (the serializer
//! rewrites only Content-Length, which is compared separately).
#![no_main]

use hotline_fuzz::message::{request_check, unsupported_requires, Message};
use hotline_fuzz::parse::{parse, parse_for_reply, parse_stream};
use libfuzzer_sys::fuzz_target;

fn without_content_length(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers_mut().remove("Content-Length");
    m
}

fn check(m: &Message) {
    let h = m.headers();
    let _ = (h.via(), h.from(), h.to(), h.cseq(), h.contacts());
    let _ = (h.max_forwards(), h.expires(), h.require(), h.supported());
    let _ = (
        h.routes("Route"),
        h.routes("Record-Route"),
        h.values("Accept"),
    );
    if let Message::Request(r) = m {
        let _ = (request_check(r), unsupported_requires(r), r.uri.headers());
    }

    let bytes = m.to_bytes();
    let back = match parse(&bytes) {
        Ok(back) => back,
        Err(e) => panic!(
            "to_bytes output does not parse: {e}\n{:?}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(without_content_length(&back), without_content_length(m));
    assert_eq!(back.headers().content_length(), Ok(Some(m.body().len())));
    match parse_stream(&bytes) {
        Ok(Some((s, used))) => {
            assert_eq!(used, bytes.len());
            assert_eq!(s, back);
        }
        other => panic!("to_bytes output does not frame on a stream: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let dgram = parse(data);
    let with_reply = parse_for_reply(data);
    assert_eq!(
        dgram.as_ref().err(),
        with_reply.as_ref().err().map(|f| &f.error)
    );
    match &with_reply {
        Ok(m) => check(m),
        Err(f) => {
            let _ = f.response();
            if let Some(h) = &f.headers {
                let _ = (h.via(), h.from(), h.to(), h.cseq(), h.contacts());
            }
        }
    }

    let mut rest = data;
    while let Ok(Some((m, used))) = parse_stream(rest) {
        assert!(used > 0 && used <= rest.len(), "{used} of {}", rest.len());
        check(&m);
        rest = rest.get(used..).unwrap_or_default();
    }
});
