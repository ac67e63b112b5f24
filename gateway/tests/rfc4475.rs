//! RFC 4475 (SIP torture test messages): all 49 messages of section 3,
//! byte for byte (gateway/tests/data/rfc4475, see the README there), each
//! checked against the RFC's verdict for a UAS.
//!
//! The verdict table (`CASES`) says, per message, which layer decides and
//! what the UAS answers:
//!
//! | message | RFC section | UAS answer | decided by |
//! |---|---|---|---|
//! | wsinv, esc01, longreq | 3.1.1.1/3/7 | processed (INVITE) | - |
//! | intmeth, esc02 | 3.1.1.2/5 | 501 (unknown method) | caller's method check |
//! | escnull, dblreq | 3.1.1.4/8 | processed (REGISTER) | - |
//! | lwsdisp, semiuri, transports | 3.1.1.6/9/10 | 200 (OPTIONS) | - |
//! | mpart01 | 3.1.1.11 | processed (MESSAGE, multipart/mixed) | - |
//! | unreason, noreason | 3.1.1.12/13 | response: no answer | - |
//! | badinv01, clerr, ncl, scalar02, quotbal, ltgtruri, lwsruri, lwsstart, trws, regbadct, badaspec, baddn, mismatch01, mcl01 | 3.1.2.x, 3.3.9 | 400 | parser |
//! | mismatch02 | 3.1.2.18 | 400 (RFC prefers 501, allows 400) | parser |
//! | badvers | 3.1.2.16 | 505 | parser |
//! | scalarlg, bigcode | 3.1.2.5/19 | response: dropped | parser |
//! | escruri | 3.1.2.11 | 400 | request_check |
//! | baddate | 3.1.2.12 | processed (Date unused) | - |
//! | badbranch | 3.2.1 | 400 | request_check |
//! | insuf | 3.3.1 | dropped (no From/To/Call-ID to answer with) | parser |
//! | unkscm, novelsc | 3.3.2/3 | 416 | request_check |
//! | unksm2 | 3.3.4 | 400 (REGISTER To not SIP) | request_check |
//! | bext01 | 3.3.5 | 420 + Unsupported | request_check |
//! | invut | 3.3.6 | 415 + Accept | request_check |
//! | regaut01 | 3.3.7 | processed (401 if authenticating) | - |
//! | multi01 | 3.3.8 | 400 | request_check |
//! | bcast | 3.3.10 | response: processed | - |
//! | zeromf | 3.3.11 | 200 (483 is for proxies) | - |
//! | cparam01, cparam02, regescrt | 3.3.12-14 | processed (REGISTER) | - |
//! | sdp01 | 3.3.15 | 406 if no acceptable body type | session (accepts_body_type) |
//! | inv2543 | 3.4.1 | processed (RFC 2543 compatibility) | - |

mod common;

use common::{assert_round_trip, req, resp};
use hotline_gateway::sip::message::{
    accepts_body_type, request_check, unescape, unsupported_requires, ACCEPTED_BODY_TYPES,
    SUPPORTED_EXTENSIONS,
};
use hotline_gateway::sip::{
    parse, parse_for_reply, parse_stream, Contacts, Message, Method, ParseError,
};

/// How far a message gets through the UAS's message layer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Uas {
    /// Parses and passes `request_check`: on to method/session logic.
    Process,
    /// `parse` fails; the reply headers are recovered and the UAS answers
    /// with `ParseError::response()`, this code.
    ParseReject(u16),
    /// Parses; `request_check` answers this code.
    CheckReject(u16),
    /// `parse` fails and nothing can be addressed: dropped silently.
    Drop,
    /// A response that parses (handed to the transaction layer).
    Response,
    /// A response the parser rejects; responses are never answered.
    DropResponse,
}
use Uas::*;

macro_rules! case {
    ($name:literal, $section:literal, $uas:expr) => {
        (
            $name,
            $section,
            include_bytes!(concat!("data/rfc4475/", $name, ".dat")).as_slice(),
            $uas,
        )
    };
}

const CASES: &[(&str, &str, &[u8], Uas)] = &[
    case!("wsinv", "3.1.1.1", Process),
    case!("intmeth", "3.1.1.2", Process),
    case!("esc01", "3.1.1.3", Process),
    case!("escnull", "3.1.1.4", Process),
    case!("esc02", "3.1.1.5", Process),
    case!("lwsdisp", "3.1.1.6", Process),
    case!("longreq", "3.1.1.7", Process),
    case!("dblreq", "3.1.1.8", Process),
    case!("semiuri", "3.1.1.9", Process),
    case!("transports", "3.1.1.10", Process),
    case!("mpart01", "3.1.1.11", Process),
    case!("unreason", "3.1.1.12", Response),
    case!("noreason", "3.1.1.13", Response),
    case!("badinv01", "3.1.2.1", ParseReject(400)),
    case!("clerr", "3.1.2.2", ParseReject(400)),
    case!("ncl", "3.1.2.3", ParseReject(400)),
    case!("scalar02", "3.1.2.4", ParseReject(400)),
    case!("scalarlg", "3.1.2.5", DropResponse),
    case!("quotbal", "3.1.2.6", ParseReject(400)),
    case!("ltgtruri", "3.1.2.7", ParseReject(400)),
    case!("lwsruri", "3.1.2.8", ParseReject(400)),
    case!("lwsstart", "3.1.2.9", ParseReject(400)),
    case!("trws", "3.1.2.10", ParseReject(400)),
    case!("escruri", "3.1.2.11", CheckReject(400)),
    case!("baddate", "3.1.2.12", Process),
    case!("regbadct", "3.1.2.13", ParseReject(400)),
    case!("badaspec", "3.1.2.14", ParseReject(400)),
    case!("baddn", "3.1.2.15", ParseReject(400)),
    case!("badvers", "3.1.2.16", ParseReject(505)),
    case!("mismatch01", "3.1.2.17", ParseReject(400)),
    case!("mismatch02", "3.1.2.18", ParseReject(400)),
    case!("bigcode", "3.1.2.19", DropResponse),
    case!("badbranch", "3.2.1", CheckReject(400)),
    case!("insuf", "3.3.1", Drop),
    case!("unkscm", "3.3.2", CheckReject(416)),
    case!("novelsc", "3.3.3", CheckReject(416)),
    case!("unksm2", "3.3.4", CheckReject(400)),
    case!("bext01", "3.3.5", CheckReject(420)),
    case!("invut", "3.3.6", CheckReject(415)),
    case!("regaut01", "3.3.7", Process),
    case!("multi01", "3.3.8", CheckReject(400)),
    case!("mcl01", "3.3.9", ParseReject(400)),
    case!("bcast", "3.3.10", Response),
    case!("zeromf", "3.3.11", Process),
    case!("cparam01", "3.3.12", Process),
    case!("cparam02", "3.3.13", Process),
    case!("regescrt", "3.3.14", Process),
    case!("sdp01", "3.3.15", Process),
    case!("inv2543", "3.4.1", Process),
];

fn data(name: &str) -> &'static [u8] {
    CASES
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.2)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn parsed(name: &str) -> Message {
    parse(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn failure(name: &str) -> hotline_gateway::sip::ParseFailure {
    parse_for_reply(data(name)).expect_err(name)
}

#[test]
fn all_49_messages_of_section_3_are_here_once() {
    assert_eq!(CASES.len(), 49);
    let mut names: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 49);
}

#[test]
fn verdict_table() {
    for &(name, section, bytes, uas) in CASES {
        let ctx = format!("{name} ({section})");
        let dgram = parse_for_reply(bytes);
        assert_eq!(
            dgram.as_ref().map_err(|f| &f.error),
            parse(bytes).as_ref(),
            "{ctx}: parse and parse_for_reply disagree"
        );
        match (uas, &dgram) {
            (Process | CheckReject(_), Ok(m @ Message::Request(r))) => {
                assert_round_trip(m);
                let got = request_check(r).map_err(|(code, _)| code);
                let want = match uas {
                    CheckReject(code) => Err(code),
                    _ => Ok(()),
                };
                assert_eq!(got, want, "{ctx}: request_check {:?}", request_check(r));
            }
            (Response, Ok(m @ Message::Response(_))) => assert_round_trip(m),
            (ParseReject(code), Err(f)) => {
                assert!(f.is_request, "{ctx}");
                assert!(f.can_reply(), "{ctx}: reply headers lost ({:?})", f.error);
                assert_eq!(
                    f.response().map(|r| r.0),
                    Some(code),
                    "{ctx}: {:?}",
                    f.error
                );
            }
            (Drop, Err(f)) => {
                assert!(f.is_request && !f.can_reply(), "{ctx}");
                assert_eq!(f.response(), None, "{ctx}");
            }
            (DropResponse, Err(f)) => {
                assert!(!f.is_request, "{ctx}");
                assert_eq!(f.response(), None, "{ctx}");
            }
            (_, got) => panic!("{ctx}: expected {uas:?}, got {got:?}"),
        }
    }
}

#[test]
fn stream_framing_agrees_with_datagrams() {
    for &(name, _, bytes, _) in CASES {
        match (name, parse_stream(bytes)) {
            // On a stream, a short body only means "wait for more".
            ("clerr", got) => assert_eq!(got, Ok(None)),
            // Streams have no "rest of the datagram" (RFC 3261 18.3).
            ("inv2543", got) => assert_eq!(
                got,
                Err(ParseError::MissingHeader {
                    name: "Content-Length".into()
                })
            ),
            (_, Ok(Some((m, used)))) => {
                assert_eq!(Ok(&m), parse(bytes).as_ref(), "{name}");
                if name != "dblreq" {
                    assert_eq!(used, bytes.len(), "{name}");
                }
            }
            (_, got) => {
                let dgram = parse(bytes);
                assert!(dgram.is_err(), "{name}: stream {got:?} but datagram ok");
                assert!(got.is_err(), "{name}: {got:?}");
            }
        }
    }
}

// ---- 3.1.1 valid messages -------------------------------------------

#[test]
fn wsinv() {
    let m = parsed("wsinv");
    let r = req(&m);
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.host, "chair-dnrc.example.com");
    assert_eq!(r.uri.param("unknownparam"), Some(None));
    let h = &r.headers;
    let to = h.to().unwrap().unwrap();
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(to.uri.user.as_deref(), Some("vivekg"));
    let from = h.from().unwrap().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards().unwrap(), Some(68));
    assert_eq!(h.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    let cseq = h.cseq().unwrap().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let via = h.via().unwrap();
    assert_eq!(via.len(), 3);
    assert_eq!(
        (via[0].transport.as_str(), via[0].host.as_str()),
        ("UDP", "192.0.2.2")
    );
    assert_eq!(via[0].branch(), Some("390skdjuw"));
    assert_eq!(via[1].transport, "TCP");
    assert_eq!(via[1].host, "spindle.example.com");
    assert_eq!(via[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(via[2].host, "192.168.255.111");
    assert_eq!(via[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(h.get("Subject"), Some(""));
    assert_eq!(
        h.get("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(h.get("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!("contact list expected")
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].display_name.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c[0].param("newparam"), Some(Some("newvalue")));
    assert_eq!(c[0].param("secondparam"), Some(None));
    assert_eq!(c[0].param("q"), Some(Some("0.33")));
    let route = h.routes("Route").unwrap();
    assert_eq!(route[0].uri.param("lr"), Some(None));
    assert_eq!(route[0].uri.param("unknownwith"), Some(Some("value")));
    assert_eq!(h.content_length().unwrap(), Some(150));
    assert_eq!(r.body.len(), 150);
    assert_eq!(h.content_type(), Some("application/sdp"));
}

#[test]
fn intmeth() {
    let m = parsed("intmeth");
    let r = req(&m);
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method, Method::Other(method.into()));
    // '%' is not an escape in a method: this is not INVITE or anything else.
    assert_eq!(r.method.as_str(), method);
    assert_eq!(r.uri.host, "example.com");
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let via = r.headers.via().unwrap();
    assert_eq!(via[0].branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = r.headers.to().unwrap().unwrap();
    assert_eq!(
        to.display_name.as_deref(),
        Some("BEL:\x07 NUL:\x00 DEL:\x7F")
    );
    let from = r.headers.from().unwrap().unwrap();
    assert_eq!(
        from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        r.headers.call_id(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(r.headers.cseq().unwrap().unwrap().seq, 139122385);
    assert_eq!(r.headers.max_forwards().unwrap(), Some(255));
    assert_eq!(
        r.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
    assert!(r.body.is_empty());
}

#[test]
fn esc01() {
    let m = parsed("esc01");
    let r = req(&m);
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        unescape("sips%3Auser%40example.com"),
        b"sips:user@example.com"
    );
    assert_eq!(r.uri.host, "example.net");
    let h = &r.headers;
    let to = h.to().unwrap().unwrap();
    assert_eq!(unescape(to.uri.user.as_deref().unwrap()), b"user");
    let from = h.from().unwrap().unwrap();
    assert_eq!(
        unescape(from.uri.user.as_deref().unwrap()),
        b"I have spaces"
    );
    assert_eq!(h.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(h.content_type(), Some("application/sdp"));
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(unescape(c[0].uri.user.as_deref().unwrap()), b"caller");
    assert_eq!(c[0].uri.param("%6C%72"), Some(None));
    // Unescaping is never recursive: "value%41" stays "value%41".
    let v = c[0].uri.param("n%61me").unwrap().unwrap();
    assert_eq!(v, "v%61lue%25%34%31");
    assert_eq!(unescape(v), b"value%41");
}

#[test]
fn escnull() {
    let m = parsed("escnull");
    let h = m.headers();
    let from = h.from().unwrap().unwrap();
    assert_eq!(from.tag(), Some("839923423"));
    assert_eq!(unescape(from.uri.user.as_deref().unwrap()), b"null-\0-null");
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 2);
    // Two distinct bindings: the NULs must not shorten either user.
    assert_eq!(unescape(c[0].uri.user.as_deref().unwrap()), b"\0");
    assert_eq!(unescape(c[1].uri.user.as_deref().unwrap()), b"\0\0");
    assert_eq!(h.content_length().unwrap(), Some(0));
}

#[test]
fn esc02() {
    let m = parsed("esc02");
    let r = req(&m);
    // Not REGISTER: '%' is not an escape in a method, so a UAS answers 501.
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_ne!(r.method, Method::Register);
    let h = &r.headers;
    assert_eq!(
        h.to().unwrap().unwrap().display_name.as_deref(),
        Some("%Z%45")
    );
    assert_eq!(
        h.from().unwrap().unwrap().display_name.as_deref(),
        Some("%Z%45")
    );
    assert_eq!(h.via().unwrap()[0].branch(), Some("z9hG4bK209%fzsnel234"));
    assert_eq!(
        h.cseq().unwrap().unwrap().method,
        Method::Other("RE%47IST%45R".into())
    );
    // Two Contact values, not three: C%6Fntact is an unknown header.
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!()
    };
    let users: Vec<_> = c.iter().map(|n| n.uri.user.as_deref().unwrap()).collect();
    assert_eq!(users, ["alias1", "alias3"]);
    assert_eq!(h.get("C%6Fntact"), Some("<sip:alias2@host2.example.com>"));
    assert_eq!(request_check(r), Ok(()));
}

#[test]
fn lwsdisp() {
    let m = parsed("lwsdisp");
    let from = m.headers().from().unwrap().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("caller"));
    assert_eq!(from.uri.user.as_deref(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
}

#[test]
fn longreq() {
    let m = parsed("longreq");
    let h = m.headers();
    let vias = h.via().unwrap();
    assert_eq!(vias.len(), 34);
    for (i, v) in vias.iter().take(33).enumerate() {
        assert_eq!(v.host, format!("sip{}.example.com", 33 - i));
    }
    let last = &vias[33];
    assert_eq!(last.received(), Some("192.0.2.5"));
    assert_eq!(
        last.branch(),
        Some(format!("very{}branchvalue", "long".repeat(50)).as_str())
    );
    let to = h.to().unwrap().unwrap();
    assert_eq!(
        to.display_name.as_deref(),
        Some(format!("I have a user name of {} proportion", "extreme".repeat(10)).as_str())
    );
    assert_eq!(to.uri.port, Some(6000));
    assert_eq!(
        to.uri.param("unknownparam1"),
        Some(Some(format!("very{}value", "long".repeat(20)).as_str()))
    );
    let from = h.from().unwrap().unwrap();
    let tag = from.tag().unwrap();
    assert_eq!(tag, format!("12{}424", "982".repeat(50)));
    assert_eq!(
        h.call_id(),
        Some(format!("longreq.one{}longcallid", "really".repeat(20)).as_str())
    );
    assert_eq!(m.body().len(), 150);
}

#[test]
fn dblreq() {
    let bytes = data("dblreq");
    let m = parsed("dblreq");
    let r = req(&m);
    // The trailing INVITE is noise after Content-Length: 0 (RFC 3261 18.3).
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    assert_eq!(
        r.headers.call_id(),
        Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    );
    let Some(Contacts::List(c)) = r.headers.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c[0].uri.host, "host.example.com");
    // On a stream the same bytes are two messages back to back.
    let (first, used) = parse_stream(bytes).unwrap().unwrap();
    assert_eq!(first, m);
    let (second, _) = parse_stream(&bytes[used..]).unwrap().unwrap();
    assert_eq!(req(&second).method, Method::Invite);
}

#[test]
fn semiuri() {
    let m = parsed("semiuri");
    let r = req(&m);
    assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(
        unescape("user;par=u%40example.net"),
        b"user;par=u@example.net"
    );
    assert_eq!(r.uri.host, "example.com");
    assert!(r.uri.params.is_empty());
    let accept = r.headers.values("Accept").unwrap();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
}

#[test]
fn transports() {
    let m = parsed("transports");
    let t: Vec<String> = m
        .headers()
        .via()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        m.headers().call_id(),
        Some("transports.kijh4akdnaqjkwendsasfdj")
    );
}

#[test]
fn mpart01() {
    let m = parsed("mpart01");
    let r = req(&m);
    assert_eq!(r.method, Method::Message);
    let via = &r.headers.via().unwrap()[0];
    assert_eq!((via.host.as_str(), via.port), ("127.0.0.1", Some(5070)));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(
        r.headers.content_type(),
        Some("multipart/mixed;boundary=7a9cbec02ceef655")
    );
    assert_eq!(r.headers.get("Date"), Some("Sat, 15 Oct 2005 04:44:56 GMT"));
    // Framed by Content-Length alone: the binary part holds NULs and CRLFs.
    assert_eq!(r.body.len(), 553);
    assert!(r.body.starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(r.body.ends_with(b"\r\n--7a9cbec02ceef655--\r\n"));
    assert!(r.body.contains(&0));
    assert_eq!(request_check(r), Ok(()));
}

#[test]
fn unreason() {
    let m = parsed("unreason");
    let r = resp(&m);
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert_eq!(r.body.len(), 154);
}

#[test]
fn noreason() {
    let m = parsed("noreason");
    let r = resp(&m);
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
}

// ---- 3.1.2 invalid messages -------------------------------------------

#[test]
fn badinv01() {
    let f = failure("badinv01");
    assert_eq!(f.error, ParseError::BadHeader { name: "Via".into() });
    assert_eq!(f.response(), Some((400, "Bad Request")));
}

#[test]
fn clerr() {
    let f = failure("clerr");
    assert!(matches!(
        f.error,
        ParseError::BodyTruncated {
            expected: 9999,
            actual: 154
        }
    ));
    assert!(f.can_reply());
}

#[test]
fn ncl() {
    let f = failure("ncl");
    assert_eq!(f.error, ParseError::BadContentLength);
    assert!(f.can_reply());
    // On a stream the framing is unrecoverable: an error, not "wait".
    assert_eq!(parse_stream(data("ncl")), Err(ParseError::BadContentLength));
}

#[test]
fn scalar02() {
    let f = failure("scalar02");
    // The CSeq error decides the 400 (the RFC's stated reason).
    assert_eq!(
        f.error,
        ParseError::BadHeader {
            name: "CSeq".into()
        }
    );
    assert_eq!(f.response(), Some((400, "Bad Request")));
    let h = f.headers.as_ref().unwrap();
    // Alone, the others would be survivable: Max-Forwards above 255 reads
    // as what it says (a UAS ignores it); Contact expires out of range
    // reads as the 3600 default (RFC 3261 20.10).
    assert_eq!(h.max_forwards(), Ok(Some(300)));
    let Ok(Some(Contacts::List(c))) = h.contacts() else {
        panic!()
    };
    assert_eq!(c[0].param("expires"), Some(Some("280297596632815")));
    assert_eq!(c[0].expires(), Some(3600));
    // The Expires header is > 2**32-1: request_check's 400 "Bad Expires".
    assert!(h.expires().is_err());
}

#[test]
fn scalarlg() {
    let f = failure("scalarlg");
    assert!(!f.is_request);
    assert_eq!(
        f.error,
        ParseError::BadHeader {
            name: "CSeq".into()
        }
    );
    let h = f.headers.as_ref().unwrap();
    assert_eq!(h.get("Retry-After"), Some("949302838503028349304023988"));
    assert_eq!(
        h.values("Warning").unwrap(),
        ["1812 overture \"In Progress\""]
    );
}

#[test]
fn quotbal() {
    assert_eq!(
        failure("quotbal").error,
        ParseError::BadHeader { name: "To".into() }
    );
}

#[test]
fn ltgtruri_and_lwsruri() {
    for name in ["ltgtruri", "lwsruri"] {
        let f = failure(name);
        assert_eq!(f.error, ParseError::BadUri, "{name}");
        assert!(f.can_reply(), "{name}");
    }
}

#[test]
fn lwsstart_and_trws() {
    for name in ["lwsstart", "trws"] {
        let f = failure(name);
        assert_eq!(f.error, ParseError::BadRequestLine, "{name}");
        assert!(f.can_reply(), "{name}");
    }
}

#[test]
fn escruri() {
    let m = parsed("escruri");
    let r = req(&m);
    assert_eq!(r.uri.host, "example.com");
    assert_eq!(r.uri.headers(), Some("Route=%3Csip:example.com%3E"));
    assert_eq!(request_check(r), Err((400, "Headers in Request-URI")));
}

#[test]
fn baddate() {
    let m = parsed("baddate");
    let r = req(&m);
    // Not GMT, but nothing here reads Date, so the request is processed.
    assert_eq!(r.headers.get("Date"), Some("Fri, 01 Jan 2010 16:00:00 EST"));
    assert_eq!(request_check(r), Ok(()));
}

#[test]
fn regbadct() {
    let f = failure("regbadct");
    assert_eq!(
        f.error,
        ParseError::BadHeader {
            name: "Contact".into()
        }
    );
    assert!(f.can_reply());
    // The same URI in <> is legal (that is regescrt).
    assert!(parse(data("regescrt")).is_ok());
}

#[test]
fn badaspec_and_baddn() {
    assert_eq!(
        failure("badaspec").error,
        ParseError::BadHeader { name: "To".into() }
    );
    assert_eq!(
        failure("baddn").error,
        ParseError::BadHeader {
            name: "From".into()
        }
    );
}

#[test]
fn badvers() {
    let f = failure("badvers");
    assert_eq!(f.error, ParseError::BadVersion);
    assert_eq!(f.response(), Some((505, "Version Not Supported")));
}

#[test]
fn mismatch01_and_02() {
    for name in ["mismatch01", "mismatch02"] {
        let f = failure(name);
        assert_eq!(f.error, ParseError::CSeqMismatch, "{name}");
        assert_eq!(f.response(), Some((400, "Bad Request")), "{name}");
    }
}

#[test]
fn bigcode() {
    let f = failure("bigcode");
    assert_eq!(f.error, ParseError::BadStatusLine);
    assert!(!f.is_request);
}

// ---- 3.2 transaction layer ---------------------------------------------

#[test]
fn badbranch() {
    let m = parsed("badbranch");
    let r = req(&m);
    assert_eq!(r.headers.via().unwrap()[0].branch(), Some("z9hG4bK"));
    assert_eq!(
        request_check(r),
        Err((400, "Missing Transaction Identifier"))
    );
}

// ---- 3.3 application layer ---------------------------------------------

#[test]
fn insuf() {
    let f = failure("insuf");
    assert_eq!(
        f.error,
        ParseError::MissingHeader {
            name: "From".into()
        }
    );
    assert!(f.is_request);
    assert_eq!(f.response(), None);
}

#[test]
fn unkscm_and_novelsc() {
    for (name, scheme) in [
        ("unkscm", "nobodyKnowsThisScheme"),
        ("novelsc", "soap.beep"),
    ] {
        let m = parsed(name);
        let r = req(&m);
        assert_eq!(r.uri.scheme, scheme);
        assert!(r.check_uri_scheme().is_err());
        assert_eq!(request_check(r), Err((416, "Unsupported URI Scheme")));
    }
}

#[test]
fn unksm2() {
    let m = parsed("unksm2");
    let r = req(&m);
    let h = &r.headers;
    assert_eq!(h.to().unwrap().unwrap().uri.scheme, "isbn");
    assert_eq!(h.from().unwrap().unwrap().uri.scheme, "http");
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c[0].uri.scheme, "name");
    assert_eq!(request_check(r), Err((400, "To Not a SIP URI")));
}

#[test]
fn bext01() {
    let m = parsed("bext01");
    let r = req(&m);
    assert_eq!(
        r.headers.require().unwrap(),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    assert_eq!(request_check(r), Err((420, "Bad Extension")));
    // A UAS lists the Require tags; Proxy-Require is for proxies.
    assert_eq!(
        unsupported_requires(r),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
}

#[test]
fn invut() {
    let m = parsed("invut");
    let r = req(&m);
    assert_eq!(r.headers.content_type(), Some("application/unknownformat"));
    assert_eq!(r.body, b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n");
    assert_eq!(request_check(r), Err((415, "Unsupported Media Type")));
}

#[test]
fn regaut01() {
    let m = parsed("regaut01");
    let r = req(&m);
    assert_eq!(
        r.headers.get("Authorization"),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );
    assert_eq!(r.headers.content_length(), Ok(Some(0)));
    assert_eq!(request_check(r), Ok(()));
}

#[test]
fn multi01() {
    let m = parsed("multi01");
    let r = req(&m);
    let h = &r.headers;
    assert_eq!(h.get_all("CSeq").count(), 2);
    assert_eq!(h.get_all("Call-ID").count(), 2);
    assert_eq!(h.get_all("To").count(), 2);
    assert_eq!(h.get_all("From").count(), 2);
    assert_eq!(h.get_all("Max-Forwards").count(), 2);
    let (code, reason) = request_check(r).unwrap_err();
    assert_eq!((code, reason), (400, "Conflicting Call-ID"));
    // Identical copies are harmless.
    let mut same = r.clone();
    for name in ["Call-ID", "CSeq", "To", "From", "Max-Forwards"] {
        let first = same.headers.get(name).unwrap().to_string();
        same.headers.remove(name);
        same.headers.push(name, first.clone());
        same.headers.push(name, first);
    }
    assert_eq!(request_check(&same), Ok(()));
}

#[test]
fn mcl01() {
    let f = failure("mcl01");
    assert_eq!(f.error, ParseError::BadContentLength);
    assert!(f.can_reply());
    assert_eq!(
        parse_stream(data("mcl01")),
        Err(ParseError::BadContentLength)
    );
}

#[test]
fn bcast() {
    let m = parsed("bcast");
    let r = resp(&m);
    let vias = r.headers.via().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].host, "255.255.255.255");
    assert_eq!(vias[1].host_ip(), Some([255, 255, 255, 255].into()));
}

#[test]
fn zeromf() {
    let m = parsed("zeromf");
    let r = req(&m);
    assert_eq!(r.headers.max_forwards(), Ok(Some(0)));
    // 483 is a proxy's answer; a UAS processes the request.
    assert_eq!(request_check(r), Ok(()));
}

#[test]
fn cparam01_and_02() {
    // Addr-spec form: ;unknownparam belongs to the Contact, not the URI.
    let m = parsed("cparam01");
    let Some(Contacts::List(c)) = m.headers().contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c[0].param("unknownparam"), Some(None));
    assert!(c[0].uri.params.is_empty());
    assert_eq!(c[0].uri.user.as_deref(), Some("+19725552222"));
    // Name-addr form: inside <> it is a URI parameter.
    let m = parsed("cparam02");
    let Some(Contacts::List(c)) = m.headers().contacts().unwrap() else {
        panic!()
    };
    assert!(c[0].params.is_empty());
    assert_eq!(c[0].uri.param("unknownparam"), Some(None));
}

#[test]
fn regescrt() {
    let m = parsed("regescrt");
    let Some(Contacts::List(c)) = m.headers().contacts().unwrap() else {
        panic!()
    };
    let hdrs = c[0].uri.headers().unwrap();
    assert_eq!(hdrs, "Route=%3Csip:sip.example.com%3E");
    assert_eq!(unescape(hdrs), b"Route=<sip:sip.example.com>");
    assert_eq!(c[0].uri.host, "example.com");
    assert_eq!(request_check(req(&m)), Ok(()));
}

#[test]
fn sdp01() {
    let m = parsed("sdp01");
    let r = req(&m);
    assert_eq!(
        r.headers.values("Accept").unwrap(),
        ["text/nobodyKnowsThis"]
    );
    // The offer is fine; the answer cannot be SDP, so session logic says 406.
    assert_eq!(request_check(r), Ok(()));
    assert!(!accepts_body_type(r, "application/sdp"));
    assert!(accepts_body_type(r, "text/nobodyknowsthis"));
}

// ---- 3.4 backward compatibility ----------------------------------------

#[test]
fn inv2543() {
    let m = parsed("inv2543");
    let r = req(&m);
    let h = &r.headers;
    assert_eq!(h.via().unwrap()[0].branch(), None);
    assert_eq!(h.from().unwrap().unwrap().tag(), None);
    assert_eq!(
        h.from().unwrap().unwrap().uri.param("user"),
        Some(Some("phone"))
    );
    assert_eq!(h.max_forwards(), Ok(None));
    assert_eq!(h.content_length(), Ok(None));
    assert_eq!(h.routes("Record-Route").unwrap().len(), 1);
    // No Content-Length on a datagram: the body is the rest of it.
    assert_eq!(
        r.body,
        b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0\r\n"
    );
    assert_eq!(request_check(r), Ok(()));
}

// ---- request_check beyond the RFC messages --------------------------------

fn options() -> Message {
    parsed("lwsdisp")
}

fn with(m: &Message, edit: impl FnOnce(&mut hotline_gateway::sip::Request)) -> Message {
    let mut m = m.clone();
    if let Message::Request(r) = &mut m {
        edit(r);
    }
    m
}

fn set_body(r: &mut hotline_gateway::sip::Request, body: &[u8]) {
    r.body = body.to_vec();
    r.headers.remove("Content-Length");
    r.headers.push("Content-Length", body.len().to_string());
}

#[test]
fn request_check_body_types() {
    assert!(ACCEPTED_BODY_TYPES.contains(&"application/sdp"));
    for ty in ACCEPTED_BODY_TYPES.iter().map(|t| t.to_string()).chain([
        "Application/SDP".into(),
        "multipart/mixed;boundary=x".into(),
    ]) {
        let m = with(&options(), |r| {
            r.headers.push("Content-Type", ty.clone());
            set_body(r, b"x");
        });
        assert_eq!(request_check(req(&m)), Ok(()), "{ty}");
    }
    for ty in ["text/plain", "application/sdpx", "application/isup"] {
        let m = with(&options(), |r| {
            r.headers.push("Content-Type", ty);
            set_body(r, b"x");
        });
        assert_eq!(request_check(req(&m)).unwrap_err().0, 415, "{ty}");
    }
    // A type on an empty body is never processed, so never refused.
    let m = with(&options(), |r| r.headers.push("Content-Type", "text/plain"));
    assert_eq!(request_check(req(&m)), Ok(()));
    let m = with(&options(), |r| {
        r.headers.push("Content-Type", "application/sdp");
        r.headers.push("Content-Encoding", "gzip");
        set_body(r, b"x");
    });
    assert_eq!(request_check(req(&m)).unwrap_err().0, 415);
    let m = with(&options(), |r| set_body(r, b"x"));
    assert_eq!(request_check(req(&m)), Err((400, "Missing Content-Type")));
    let m = with(&options(), |r| {
        r.headers.push("Content-Type", "sdp");
        set_body(r, b"x");
    });
    assert_eq!(request_check(req(&m)), Err((400, "Bad Content-Type")));
}

#[test]
fn request_check_extensions() {
    assert_eq!(SUPPORTED_EXTENSIONS, ["timer"]);
    let m = with(&options(), |r| r.headers.push("Require", "timer"));
    assert_eq!(request_check(req(&m)), Ok(()));
    let m = with(&options(), |r| {
        r.headers.push("Require", "timer, 100rel");
        r.headers.push("Require", "100rel,foo");
    });
    assert_eq!(request_check(req(&m)), Err((420, "Bad Extension")));
    assert_eq!(unsupported_requires(req(&m)), ["100rel", "foo"]);
    // Proxy-Require is not the UAS's business.
    let m = with(&options(), |r| r.headers.push("Proxy-Require", "foo"));
    assert_eq!(request_check(req(&m)), Ok(()));
    // Require is ignored on ACK and CANCEL (RFC 3261 8.2.2.3).
    for method in [Method::Ack, Method::Cancel] {
        let m = with(&options(), |r| {
            r.headers.push("Require", "foo");
            r.headers.remove("CSeq");
            r.headers.push("CSeq", format!("60 {method}"));
            r.method = method.clone();
        });
        assert_eq!(request_check(req(&m)), Ok(()), "{method}");
        assert!(unsupported_requires(req(&m)).is_empty());
    }
    let m = with(&options(), |r| r.headers.push("Require", "a,,b"));
    assert_eq!(request_check(req(&m)), Err((400, "Bad Require")));
}

#[test]
fn request_check_scalars_and_missing_headers() {
    for (edit, want) in [
        (("Expires", "4294967295"), Ok(())),
        (("Expires", "4294967296"), Err((400, "Bad Expires"))),
        (("Expires", "-1"), Err((400, "Bad Expires"))),
        (
            ("Max-Forwards", "many"),
            Err((400, "Conflicting Max-Forwards")),
        ),
    ] {
        let m = with(&options(), |r| r.headers.push(edit.0, edit.1));
        assert_eq!(request_check(req(&m)), want, "{edit:?}");
    }
    let m = with(&options(), |r| {
        r.headers.remove("Max-Forwards");
        r.headers.push("Max-Forwards", "many");
    });
    assert_eq!(request_check(req(&m)), Err((400, "Bad Max-Forwards")));
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let m = with(&options(), |r| {
            r.headers.remove(name);
        });
        let (code, reason) = request_check(req(&m)).unwrap_err();
        assert_eq!((code, reason.strip_prefix("Missing ")), (400, Some(name)));
    }
    let m = with(&options(), |r| {
        r.headers.remove("CSeq");
        r.headers.push("CSeq", "60 INVITE");
    });
    assert_eq!(request_check(req(&m)), Err((400, "CSeq Method Mismatch")));
    let m = with(&options(), |r| r.body = b"xyz".to_vec());
    assert_eq!(request_check(req(&m)), Err((400, "Bad Content-Length")));
    // 400 outranks 416: a broken request is not judged further.
    let m = with(&parsed("unkscm"), |r| {
        r.headers.remove("Call-ID");
    });
    assert_eq!(request_check(req(&m)), Err((400, "Missing Call-ID")));
}

#[test]
fn accept_header_matching() {
    let accept = |v: Option<&str>, mime: &str| {
        let m = with(&options(), |r| {
            if let Some(v) = v {
                r.headers.push("Accept", v);
            }
        });
        accepts_body_type(req(&m), mime)
    };
    assert!(accept(None, "application/sdp"));
    assert!(!accept(None, "text/plain"));
    assert!(!accept(Some(""), "application/sdp"));
    assert!(accept(Some("application/*"), "application/sdp"));
    assert!(accept(Some("*/*"), "text/plain"));
    assert!(accept(
        Some("text/plain, APPLICATION/SDP;level=1"),
        "application/sdp"
    ));
    assert!(!accept(Some("application/sdp;q=0"), "application/sdp"));
    assert!(!accept(Some("application/sdpx"), "application/sdp"));
}
