//! Helpers shared by the RFC torture-test files.
#![allow(dead_code)] // each test binary uses a different subset

use hotline_gateway::sip::{parse, parse_stream, Message, Request, Response};

pub fn req(m: &Message) -> &Request {
    match m {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

pub fn resp(m: &Message) -> &Response {
    match m {
        Message::Response(r) => r,
        Message::Request(_) => panic!("expected a response"),
    }
}

/// The message with its Content-Length lines removed: `to_bytes` always
/// writes exactly one, last, matching the body, so that is the one part
/// of a parsed message a round trip may legitimately change.
pub fn without_content_length(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers_mut().remove("Content-Length");
    m
}

/// Serializing a parsed message and parsing it again, as a datagram and
/// as a stream, must give the same message back.
pub fn assert_round_trip(m: &Message) {
    let bytes = m.to_bytes();
    let back = parse(&bytes).unwrap_or_else(|e| {
        panic!(
            "serialized message does not re-parse ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(without_content_length(&back), without_content_length(m));
    assert_eq!(back.headers().content_length(), Ok(Some(m.body().len())));
    assert_eq!(parse_stream(&bytes), Ok(Some((back, bytes.len()))));
}

/// Replaces the first Content-Length value (for RFC messages whose stated
/// length is known to be wrong).
pub fn with_content_length(msg: &[u8], len: usize) -> Vec<u8> {
    let text = String::from_utf8(msg.to_vec()).expect("utf-8 test message");
    let start = text.find("Content-Length: ").expect("has Content-Length") + 16;
    let end = start + text[start..].find("\r\n").expect("line end");
    format!("{}{len}{}", &text[..start], &text[end..]).into_bytes()
}
