//! Framing, limits, the serializer, and property tests for the SIP parser.
//! The RFC 4475 / 5118 torture messages live in rfc4475.rs and rfc5118.rs.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::assert_round_trip;
use hotline_gateway::sip::message::{request_check, unsupported_requires};
use hotline_gateway::sip::{
    parse, parse_for_reply, parse_stream, Contacts, Headers, Message, Method, ParseError, Request,
    Response, Uri, MAX_MESSAGE,
};
use proptest::prelude::*;

const BASIC: &str = concat!(
    "INVITE sip:12345@gw.example.cn SIP/2.0\r\n",
    "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa, SIP/2.0/TCP [::1]:5060;branch=z9hG4bKb;rport\r\n",
    "f: \"Caller, Inc\" <sip:a@example.cn>;tag=x1\r\n",
    "t: <tel:12345>\r\n",
    "i: cid-1\r\n",
    "CSeq: 7 INVITE\r\n",
    "m: <sip:a@10.0.0.1>;expires=60, \"x,y\" <sip:b@10.0.0.2;p=a,b>\r\n",
    "k: timer,\r\n",
    "  100rel\r\n",
    "Require: replaces , timer\r\n",
    "Max-Forwards: 70\r\n",
    "c: application/sdp\r\n",
    "l: 5\r\n",
    "\r\n",
    "hello",
);

#[test]
fn compact_forms_and_multi_values() {
    let m = parse(BASIC.as_bytes()).unwrap();
    let h = m.headers();
    assert_eq!(h.call_id(), Some("cid-1"));
    assert_eq!(h.get("CALL-id"), Some("cid-1"));
    assert_eq!(h.content_type(), Some("application/sdp"));
    assert_eq!(h.content_length().unwrap(), Some(5));
    let via = h.via().unwrap();
    assert_eq!(via.len(), 2);
    assert_eq!(via[1].host, "[::1]");
    assert_eq!(via[1].rport(), Some(None));
    let from = h.from().unwrap().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("Caller, Inc"));
    assert_eq!(h.to().unwrap().unwrap().uri.scheme, "tel");
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 2);
    assert_eq!(c[1].display_name.as_deref(), Some("x,y"));
    assert_eq!(c[1].uri.param("p"), Some(Some("a,b")));
    assert_eq!(h.supported().unwrap(), ["timer", "100rel"]);
    assert_eq!(h.require().unwrap(), ["replaces", "timer"]);
    assert_eq!(m.body(), b"hello");
}

#[test]
fn contact_star() {
    let msg = concat!(
        "REGISTER sip:example.com SIP/2.0\r\n",
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
        "From: <sip:a@example.com>;tag=1\r\n",
        "To: <sip:a@example.com>\r\n",
        "Call-ID: c\r\n",
        "CSeq: 2 REGISTER\r\n",
        "Contact: *\r\n",
        "Expires: 0\r\n",
        "\r\n",
    );
    let m = parse(msg.as_bytes()).unwrap();
    assert_eq!(m.headers().contacts().unwrap(), Some(Contacts::Wildcard));
    let bad = msg.replace("Contact: *", "Contact: *, <sip:b@c>");
    assert_eq!(
        parse(bad.as_bytes()).unwrap_err(),
        ParseError::BadHeader {
            name: "Contact".into()
        }
    );
}

#[test]
fn missing_content_length_means_rest_on_datagram_only() {
    let msg = BASIC.replace("l: 5\r\n", "");
    let m = parse(msg.as_bytes()).unwrap();
    assert_eq!(m.body(), b"hello");
    assert_eq!(
        parse_stream(msg.as_bytes()),
        Err(ParseError::MissingHeader {
            name: "Content-Length".into()
        })
    );
    // Surplus bytes beyond Content-Length are dropped on datagrams.
    let extra = format!("{BASIC}garbage");
    assert_eq!(parse(extra.as_bytes()).unwrap().body(), b"hello");
}

#[test]
fn stream_framing_and_keepalives() {
    let two = format!("\r\n\r\n{BASIC}{BASIC}");
    let (m1, n1) = parse_stream(two.as_bytes()).unwrap().unwrap();
    assert_eq!(n1, 4 + BASIC.len());
    let rest = &two.as_bytes()[n1..];
    let (m2, n2) = parse_stream(rest).unwrap().unwrap();
    assert_eq!(n2, BASIC.len());
    assert_eq!(m1, m2);
    assert_eq!(parse_stream(b"\r\n\r\n"), Ok(None));
    for cut in 0..BASIC.len() {
        assert_eq!(
            parse_stream(&BASIC.as_bytes()[..cut]),
            Ok(None),
            "cut {cut}"
        );
    }
}

#[test]
fn truncation_never_panics() {
    let b = BASIC.as_bytes();
    for cut in 0..=b.len() {
        let _ = parse(&b[..cut]);
        let _ = parse_for_reply(&b[..cut]);
        let _ = parse_stream(&b[..cut]);
        // Also flip a byte to a hostile value at every position.
        let mut v = b.to_vec();
        if let Some(x) = v.get_mut(cut) {
            *x = 0xff;
        }
        let _ = parse(&v);
        if let Some(x) = v.get_mut(cut) {
            *x = b'"';
        }
        if let Ok(m) = parse(&v) {
            let h = m.headers();
            let _ = (h.via(), h.from(), h.to(), h.cseq(), h.contacts());
        }
    }
}

#[test]
fn missing_required_header() {
    let msg = BASIC.replace("CSeq: 7 INVITE\r\n", "");
    let f = parse_for_reply(msg.as_bytes()).unwrap_err();
    assert_eq!(
        f.error,
        ParseError::MissingHeader {
            name: "CSeq".into()
        }
    );
    assert!(!f.can_reply());
}

#[test]
fn limits() {
    let big = vec![b'a'; MAX_MESSAGE + 1];
    assert_eq!(parse(&big), Err(ParseError::TooLarge));
    assert_eq!(parse_stream(&big), Err(ParseError::TooLarge));
    let long_line = BASIC.replace("i: cid-1", &format!("i: {}", "x".repeat(9000)));
    assert_eq!(parse(long_line.as_bytes()), Err(ParseError::TooLarge));
    let folded = BASIC.replace("i: cid-1", &format!("i: cid{}", "\r\n x".repeat(4100)));
    assert_eq!(parse(folded.as_bytes()), Err(ParseError::TooLarge));
    let many = BASIC.replace("i: cid-1\r\n", &"i: cid-1\r\nX-A: 1\r\n".repeat(300));
    assert_eq!(parse(many.as_bytes()), Err(ParseError::TooLarge));
    let huge_cl = BASIC.replace("l: 5", "l: 99999999999999999999999");
    assert_eq!(parse(huge_cl.as_bytes()), Err(ParseError::BadContentLength));
    let stream_big = BASIC.replace("l: 5", "l: 70000");
    assert_eq!(
        parse_stream(stream_big.as_bytes()),
        Err(ParseError::TooLarge)
    );
}

#[test]
fn folding_unfolds_to_single_space() {
    let msg = BASIC.replace(
        "Max-Forwards: 70",
        "Subject: a\r\n\t b\r\n   c\r\nMax-Forwards: 70",
    );
    let m = parse(msg.as_bytes()).unwrap();
    assert_eq!(m.headers().get("s"), Some("a b c"));
}

#[test]
fn serializer_is_canonical() {
    let m = parse(BASIC.as_bytes()).unwrap();
    let out = String::from_utf8(m.to_bytes()).unwrap();
    assert!(out.starts_with("INVITE sip:12345@gw.example.cn SIP/2.0\r\nv: "));
    assert!(out.ends_with("Content-Length: 5\r\n\r\nhello"));
    assert!(!out.contains("\nl:"));
    let back = parse(out.as_bytes()).unwrap();
    assert_eq!(back.headers().via().unwrap(), m.headers().via().unwrap());
    assert_eq!(back.body(), m.body());
}

// ---- property tests ------------------------------------------------------

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

/// Hosts as they appear in URIs and Via: names, IPv4, and IPv6 references
/// (plain, compressed by `Display`, and IPv4-mapped).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,4}){0,2}",
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|g| format!("[{}]", Ipv6Addr::from(g))),
        // Mostly zeros, so `Display` compresses with "::" in varying places.
        (any::<[u16; 2]>(), 1usize..8).prop_map(|(g, at)| {
            let mut a = [0u16; 8];
            a[0] = g[0];
            a[at] = g[1];
            format!("[{}]", Ipv6Addr::from(a))
        }),
        any::<[u8; 4]>().prop_map(|o| format!("[{}]", Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

/// Generic header parameters. Never `tag`: the test appends the one tag it expects
/// back, and a second `tag` (";tag;tag=A" was generated once) is not a tag-param.
fn params() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-z]{1,6}", prop::option::of("[a-z0-9.]{1,6}")), 0..3).prop_map(|ps| {
        ps.into_iter()
            .filter(|(n, _)| n != "tag")
            .map(|(n, v)| match v {
                Some(v) => format!(";{n}={v}"),
                None => format!(";{n}"),
            })
            .collect()
    })
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("sip"), Just("sips")],
        prop::option::of("[a-z0-9_.+-]{1,10}(%[0-9A-F]{2})?"),
        host(),
        prop::option::of(1u16..),
        params(),
    )
        .prop_map(|(scheme, user, host, port, params)| {
            let user = user.map(|u| format!("{u}@")).unwrap_or_default();
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}:{user}{host}{port}{params}")
        })
}

fn any_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => sip_uri(),
        1 => "\\+?[0-9]{3,12}".prop_map(|n| format!("tel:{n}")),
    ]
}

/// A display name, and how it is written: quoted (any text, `"` and `\`
/// escaped) or as bare tokens.
fn display() -> impl Strategy<Value = Option<(String, String)>> {
    prop::option::of(prop_oneof![
        "[ -~é中\t]{0,12}".prop_map(|d| {
            let esc = d.replace('\\', "\\\\").replace('"', "\\\"");
            (d, format!("\"{esc}\""))
        }),
        prop::collection::vec(token(), 1..3).prop_map(|t| {
            let d = t.join(" ");
            (d.clone(), d)
        }),
    ])
}

fn name_addr() -> impl Strategy<Value = (Option<String>, String)> {
    (display(), any_uri(), params()).prop_map(|(d, uri, ps)| match d {
        Some((plain, wire)) => (Some(plain), format!("{wire} <{uri}>{ps}")),
        None => (None, format!("<{uri}>{ps}")),
    })
}

/// One via-parm and the (host, port, received) it must read back as.
fn via() -> impl Strategy<Value = (String, (String, Option<u16>, Option<String>))> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS"), Just("SCTP")],
        host(),
        prop::option::of(1u16..),
        token(),
        prop::option::of(host()),
        prop::option::of(prop::option::of(1u16..)),
    )
        .prop_map(|(t, host, port, branch, received, rport)| {
            let mut s = format!("SIP/2.0/{t} {host}");
            if let Some(p) = port {
                s += &format!(":{p}");
            }
            s += &format!(";branch=z9hG4bK{branch}");
            if let Some(r) = &received {
                s += &format!(";received={r}");
            }
            match rport {
                Some(Some(p)) => s += &format!(";rport={p}"),
                Some(None) => s += ";rport",
                None => {}
            }
            (s, (host, port, received))
        })
}

/// Header name as written: canonical or compact (RFC 3261 7.3.3).
fn spelled(full: &'static str, compact: &'static str) -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(full), Just(compact)]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Options),
        Just(Method::Register),
        Just(Method::Info),
        Just(Method::Update),
        Just(Method::Refer),
        Just(Method::Prack),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Message),
        Just(Method::Publish),
        "[A-Za-z!%*_+`'~.-]{1,10}".prop_map(|s| Method::from_token(&s)),
    ]
}

/// What the typed accessors must read back from a generated message.
#[derive(Debug, Clone)]
struct Expect {
    vias: Vec<(String, Option<u16>, Option<String>)>,
    from_display: Option<String>,
    contacts: Vec<Option<String>>,
    tag: String,
    seq: u32,
    method: Method,
    max_forwards: u32,
}

prop_compose! {
    fn message()(
        is_req in any::<bool>(),
        m in method(),
        ruri in any_uri(),
        from in name_addr(),
        to in name_addr(),
        tag in token(),
        vias in prop::collection::vec(via(), 1..4),
        vias_one_line in any::<bool>(),
        contacts in prop::collection::vec(name_addr(), 0..3),
        names in (spelled("Via", "v"), spelled("From", "f"), spelled("To", "t"),
                  spelled("Call-ID", "i"), spelled("Contact", "m"), spelled("Content-Type", "c"),
                  spelled("Supported", "k")),
        cid in "[!-~]{1,30}",
        seq in any::<u32>(),
        max_forwards in 0u32..=255,
        supported in prop::collection::vec(token(), 0..3),
        status in 100u16..700,
        reason in "[ -~é中\t]{0,20}",
        extra in prop::collection::vec((token(), "[!-~]([ -~é]{0,30}[!-~])?"), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) -> (Message, Expect) {
        let (via_n, from_n, to_n, cid_n, contact_n, ct_n, supported_n) = names;
        let mut h = Headers::new();
        let via_values: Vec<String> = vias.iter().map(|v| v.0.clone()).collect();
        if vias_one_line {
            h.push(via_n, via_values.join(", "));
        } else {
            for v in &via_values {
                h.push(via_n, v.clone());
            }
        }
        h.push(from_n, format!("{};tag={tag}", from.1));
        h.push(to_n, to.1);
        h.push(cid_n, cid);
        h.push("CSeq", format!("{seq} {m}"));
        h.push("Max-Forwards", max_forwards.to_string());
        for c in &contacts {
            h.push(contact_n, c.1.clone());
        }
        if !supported.is_empty() {
            h.push(supported_n, supported.join(","));
        }
        for (n, v) in extra {
            h.push(format!("X-{n}"), v);
        }
        if !body.is_empty() {
            h.push(ct_n, "application/sdp");
        }
        h.push("Content-Length", body.len().to_string());
        let expect = Expect {
            vias: vias.into_iter().map(|v| v.1).collect(),
            from_display: from.0,
            contacts: contacts.into_iter().map(|c| c.0).collect(),
            tag,
            seq,
            method: m.clone(),
            max_forwards,
        };
        let msg = if is_req {
            Message::Request(Request {
                method: m,
                uri: Uri::parse(&ruri).unwrap(),
                version: "SIP/2.0".into(),
                headers: h,
                body,
            })
        } else {
            Message::Response(Response {
                version: "SIP/2.0".into(),
                status,
                reason,
                headers: h,
                body,
            })
        };
        (msg, expect)
    }
}

/// The RFC torture messages, as seeds for mutation.
fn torture_corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["rfc4475", "rfc5118"] {
        let path = format!("{}/tests/data/{dir}", env!("CARGO_MANIFEST_DIR"));
        for e in std::fs::read_dir(path).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "dat") {
                out.push(std::fs::read(p).unwrap());
            }
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        (at(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (
            at(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                prop::sample::select(vec![
                    b"\r\n".to_vec(),
                    b"\r\n ".to_vec(),
                    b"\r\n\r\n".to_vec(),
                    b"\"".to_vec(),
                    b"<".to_vec(),
                    b">".to_vec(),
                    b",".to_vec(),
                    b";".to_vec(),
                    b"[".to_vec(),
                    b"]".to_vec(),
                    b":".to_vec(),
                    b"%".to_vec(),
                    b"\\".to_vec(),
                    b"?".to_vec(),
                    b"@".to_vec(),
                    b"99999999999999999999".to_vec(),
                    b"l: 0\r\n".to_vec(),
                    "\u{feff}".as_bytes().to_vec(),
                    vec![0xff],
                    vec![0],
                ]),
            ]
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (at(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        (at(), 1usize..64).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        at().prop_map(Edit::Truncate),
    ]
}

fn apply(b: &mut Vec<u8>, e: &Edit) {
    if b.is_empty() {
        return;
    }
    match e {
        Edit::Set(i, v) => {
            let i = i.index(b.len());
            b[i] = *v;
        }
        Edit::Insert(i, v) => {
            let i = i.index(b.len() + 1);
            b.splice(i..i, v.iter().copied());
        }
        Edit::Delete(i, n) => {
            let i = i.index(b.len());
            b.drain(i..(i + n).min(b.len()));
        }
        Edit::Duplicate(i, n) => {
            let i = i.index(b.len());
            let piece = b[i..(i + n).min(b.len())].to_vec();
            b.splice(i..i, piece);
        }
        Edit::Truncate(i) => b.truncate(i.index(b.len() + 1)),
    }
}

/// Everything a receiver might do with untrusted bytes; none of it may
/// panic, and whatever parses must survive a serialize/parse round trip.
fn exercise(b: &[u8]) {
    let dgram = parse(b);
    let with_reply = parse_for_reply(b);
    assert_eq!(
        dgram.as_ref().err(),
        with_reply.as_ref().err().map(|f| &f.error)
    );
    if let Err(f) = &with_reply {
        let _ = f.response();
    }
    if let Ok(m) = &dgram {
        let h = m.headers();
        let _ = (
            h.via(),
            h.from(),
            h.to(),
            h.cseq(),
            h.contacts(),
            h.max_forwards(),
        );
        let _ = (h.expires(), h.require(), h.supported(), h.routes("Route"));
        if let Message::Request(r) = m {
            let _ = (request_check(r), unsupported_requires(r));
        }
        assert_round_trip(m);
    }
    let mut rest = b;
    while let Ok(Some((m, used))) = parse_stream(rest) {
        assert!(used > 0 && used <= rest.len());
        assert_round_trip(&m);
        rest = &rest[used..];
    }
}

proptest! {
    #[test]
    fn round_trip((m, want) in message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(parse(&bytes), Ok(m.clone()));
        prop_assert_eq!(parse_stream(&bytes), Ok(Some((m.clone(), bytes.len()))));
        // The typed view of the re-parsed message is the generated one.
        let h = m.headers();
        let vias: Vec<_> = h.via().unwrap().into_iter()
            .map(|v| (v.host.clone(), v.port, v.received().map(str::to_string)))
            .collect();
        prop_assert_eq!(vias, want.vias);
        let from = h.from().unwrap().unwrap();
        prop_assert_eq!(&from.display_name, &want.from_display);
        prop_assert_eq!(from.tag(), Some(want.tag.as_str()));
        let contacts = match h.contacts().unwrap() {
            None => vec![],
            Some(Contacts::List(c)) => c.into_iter().map(|c| c.display_name).collect(),
            Some(Contacts::Wildcard) => unreachable!(),
        };
        prop_assert_eq!(contacts, want.contacts);
        let cseq = h.cseq().unwrap().unwrap();
        prop_assert_eq!((cseq.seq, cseq.method), (want.seq, want.method));
        prop_assert_eq!(h.max_forwards(), Ok(Some(want.max_forwards)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&b);
    }

    #[test]
    fn mutated_message_never_panics((m, _) in message(), edits in prop::collection::vec(edit(), 1..4)) {
        let mut b = m.to_bytes();
        for e in &edits {
            apply(&mut b, e);
        }
        exercise(&b);
    }

    #[test]
    fn mutated_torture_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 0..6),
    ) {
        thread_local!(static CORPUS: Vec<Vec<u8>> = torture_corpus());
        let mut b = CORPUS.with(|c| c[pick.index(c.len())].clone());
        for e in &edits {
            apply(&mut b, e);
        }
        exercise(&b);
    }
}
