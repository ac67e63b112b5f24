//! The endpoint driven with synthetic time: every timer of RFC 3261
//! 13.3.1.4 and 17, without sockets or sleeps.

use super::*;
use crate::sip::parse;
use std::net::Ipv4Addr;

const SDP_OFFER: &str = "v=0\r\no=pbx 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

struct Harness {
    ep: Endpoint,
    now: Instant,
    flow: Flow,
    sent: Vec<(Flow, String)>,
    events: Vec<Event>,
    auto_accept: bool,
}

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: "198.51.100.1:5060"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
        remote: "192.0.2.9:5062".parse().unwrap_or_else(|e| panic!("{e}")),
    }
}

impl Harness {
    fn new(cfg: EndpointConfig) -> Self {
        let now = Instant::now();
        Harness {
            ep: Endpoint::new(cfg, now, SystemTime::UNIX_EPOCH, [1; 32]),
            now,
            flow: flow(),
            sent: Vec::new(),
            events: Vec::new(),
            auto_accept: true,
        }
    }

    fn pump(&mut self) {
        while let Some(out) = self.ep.poll_output() {
            match out {
                Output::Transmit { flow, bytes } => self
                    .sent
                    .push((flow, String::from_utf8_lossy(&bytes).to_string())),
                Output::Event(e) => match *e {
                    Event::Incoming { id, local_ip, .. } if self.auto_accept => {
                        let media = LocalMedia::new(local_ip, 40000, 1, 1);
                        self.ep.accept(&id, media, self.now);
                        self.events.push(Event::Incoming {
                            id,
                            local_ip,
                            offer: None,
                        });
                    }
                    e => self.events.push(e),
                },
            }
        }
    }

    fn recv(&mut self, text: &str) {
        self.ep
            .handle_datagram(self.flow, text.as_bytes(), self.now);
        self.pump();
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.ep.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.ep.handle_timeout(self.now);
            self.pump();
        }
        self.now = until;
    }

    fn take(&mut self) -> Vec<String> {
        self.sent.drain(..).map(|(_, s)| s).collect()
    }

    fn statuses(&mut self) -> Vec<u16> {
        self.take()
            .iter()
            .filter_map(|s| s.strip_prefix("SIP/2.0 "))
            .filter_map(|s| s.get(..3)?.parse().ok())
            .collect()
    }

    fn ended(&self) -> Vec<EndReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Call(CallEvent::Ended { reason, .. }) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

fn invite(call_id: &str, branch: &str, extra: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:12345@198.51.100.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: \"13800138000\" <sip:13800138000@192.0.2.9>;tag=caller\r\n\
To: <sip:12345@198.51.100.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:13800138000@192.0.2.9:5062>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An in-dialog request using the To tag from our 200.
fn in_dialog(
    method: &str,
    call_id: &str,
    to_tag: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} sip:hotline@198.51.100.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bK{method}{cseq}{call_id};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:13800138000@192.0.2.9>;tag=caller\r\n\
To: <sip:12345@198.51.100.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn ack(call_id: &str, to_tag: &str, cseq: u32, body: &str) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "ACK sip:hotline@198.51.100.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKack{cseq}{call_id};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:13800138000@192.0.2.9>;tag=caller\r\n\
To: <sip:12345@198.51.100.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn to_tag(resp: &str) -> String {
    let Ok(Message::Response(r)) = parse(resp.as_bytes()) else {
        panic!("not a response: {resp}");
    };
    r.headers
        .to()
        .ok()
        .flatten()
        .and_then(|t| t.tag().map(str::to_string))
        .unwrap_or_else(|| panic!("no To tag: {resp}"))
}

fn body_of(resp: &str) -> &str {
    resp.split("\r\n\r\n").nth(1).unwrap_or("")
}

/// INVITE answered and ACKed; returns the To tag.
fn established(h: &mut Harness, call_id: &str) -> String {
    h.recv(&invite(call_id, call_id, "", SDP_OFFER));
    let sent = h.take();
    let ok = sent
        .iter()
        .find(|s| s.starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("no 200: {sent:?}"));
    let tag = to_tag(ok);
    h.recv(&ack(call_id, &tag, 1, ""));
    tag
}

#[test]
fn invite_is_answered_with_sdp_and_bye_ends_the_call() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite("c1", "a1", "", SDP_OFFER));
    let sent = h.take();
    assert!(sent[0].starts_with("SIP/2.0 100 Trying\r\n"), "{sent:?}");
    let ok = &sent[1];
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    // RFC 3581: rport filled and received added on the top Via.
    assert!(
        ok.contains(
            "Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKa1;rport=5062;received=192.0.2.9\r\n"
        ),
        "{ok}"
    );
    assert!(
        ok.contains("Contact: <sip:hotline@198.51.100.1:5060>"),
        "{ok}"
    );
    assert!(ok.contains("Content-Type: application/sdp"));
    let sdp = body_of(ok);
    assert!(
        sdp.contains("m=audio 40000 RTP/AVP 8 101\r\n"),
        "offerer's first codec (PCMA) wins: {sdp}"
    );
    let tag = to_tag(ok);
    h.recv(&ack("c1", &tag, 1, ""));
    h.recv(&in_dialog("BYE", "c1", &tag, 2, "", ""));
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(h.ended(), vec![EndReason::CallerBye]);
    assert_eq!(h.ep.active_calls(), 0);
    // Started, Incoming, Media, Answered, Ended in that order.
    let kinds: Vec<&str> = h
        .events
        .iter()
        .map(|e| match e {
            Event::Call(CallEvent::Started { .. }) => "started",
            Event::Call(CallEvent::Answered { .. }) => "answered",
            Event::Call(CallEvent::Ended { .. }) => "ended",
            Event::Call(_) => "media-plane",
            Event::Incoming { .. } => "incoming",
            Event::Media { .. } => "media",
            Event::Dtmf { .. } => "dtmf",
        })
        .collect();
    assert_eq!(kinds, ["started", "incoming", "media", "answered", "ended"]);
}

#[test]
fn unacked_2xx_is_retransmitted_with_doubling_then_call_is_hung_up() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite("c2", "a2", "", SDP_OFFER));
    let start = h.now;
    h.take();
    let mut at = Vec::new();
    while h.now < start + Duration::from_secs(33) {
        h.advance(Duration::from_millis(100));
        for s in h.take() {
            if s.starts_with("SIP/2.0 200") {
                at.push((h.now - start).as_millis() / 100 * 100);
            } else if s.starts_with("BYE ") {
                at.push(99_999);
            }
        }
    }
    assert_eq!(&at[..5], &[500, 1500, 3500, 7500, 11500], "{at:?}");
    assert_eq!(at.last(), Some(&99_999), "BYE after 64*T1: {at:?}");
    assert_eq!(h.ended(), vec![EndReason::Timeout]);
}

#[test]
fn ack_stops_2xx_retransmission_and_retransmitted_invite_is_absorbed() {
    let mut h = Harness::new(EndpointConfig::default());
    let tag = established(&mut h, "c3");
    h.take();
    h.recv(&invite("c3", "c3", "", SDP_OFFER));
    assert!(
        h.take().is_empty(),
        "retransmitted INVITE after 2xx is absorbed"
    );
    h.advance(Duration::from_secs(10));
    assert!(h.take().is_empty(), "no 2xx retransmission after ACK");
    assert_eq!(h.ep.active_calls(), 1);
    let _ = tag;
}

#[test]
fn cancel_before_answer_gives_200_and_487() {
    let cfg = EndpointConfig {
        answer_delay: Duration::from_secs(5),
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.recv(&invite("c4", "a4", "", SDP_OFFER));
    assert_eq!(h.statuses(), vec![100, 180]);
    let cancel = "CANCEL sip:12345@198.51.100.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKa4;rport\r\nMax-Forwards: 70\r\n\
From: \"13800138000\" <sip:13800138000@192.0.2.9>;tag=caller\r\nTo: <sip:12345@198.51.100.1>\r\n\
Call-ID: c4\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    h.recv(cancel);
    let sent = h.take();
    assert!(sent[0].starts_with("SIP/2.0 200") && sent[0].contains("CSeq: 1 CANCEL"));
    assert!(sent[1].starts_with("SIP/2.0 487") && sent[1].contains("CSeq: 1 INVITE"));
    assert_eq!(h.ended(), vec![EndReason::Cancel]);
    // The 487 is retransmitted until its ACK (timer G), then absorbed.
    h.advance(Duration::from_millis(600));
    assert_eq!(h.statuses(), vec![487]);
    let tag = to_tag(&sent[1]);
    let ack487 = format!(
        "ACK sip:12345@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKa4;rport\r\n\
Max-Forwards: 70\r\nFrom: \"13800138000\" <sip:13800138000@192.0.2.9>;tag=caller\r\n\
To: <sip:12345@198.51.100.1>;tag={tag}\r\nCall-ID: c4\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    h.recv(&ack487);
    h.advance(Duration::from_secs(40));
    assert!(h.take().is_empty());
    assert_eq!(h.ep.transactions(), 0);
    // The answer timer never fires for a cancelled call.
    assert_eq!(h.stats().calls_answered, 0);
}

impl Harness {
    fn stats(&self) -> &Stats {
        self.ep.stats()
    }
}

#[test]
fn cancel_for_unknown_transaction_is_481() {
    let mut h = Harness::new(EndpointConfig::default());
    let cancel = "CANCEL sip:12345@198.51.100.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKnone\r\nMax-Forwards: 70\r\n\
From: <sip:a@192.0.2.9>;tag=x\r\nTo: <sip:12345@198.51.100.1>\r\n\
Call-ID: nope\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    h.recv(cancel);
    assert_eq!(h.statuses(), vec![481]);
}

#[test]
fn busy_gateway_answers_503_with_retry_after() {
    let cfg = EndpointConfig {
        max_calls: 1,
        retry_after_s: 7,
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    established(&mut h, "c5");
    h.recv(&invite("c6", "a6", "", SDP_OFFER));
    let sent = h.take();
    assert!(sent[1].starts_with("SIP/2.0 503"), "{sent:?}");
    assert!(sent[1].contains("Retry-After: 7\r\n"));
    assert_eq!(h.ended(), vec![EndReason::Rejected(503)]);
}

#[test]
fn allow_list_rejects_other_sources_with_403() {
    let cfg = EndpointConfig {
        allow: vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8)],
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.recv(&invite("c7", "a7", "", SDP_OFFER));
    assert_eq!(h.statuses(), vec![403]);
    let options = invite("c7b", "a7b", "", "").replace("INVITE", "OPTIONS");
    h.recv(&options);
    assert_eq!(
        h.statuses(),
        vec![403],
        "the allow-list covers every method"
    );
    assert!(h.events.is_empty(), "scanners leave no call records");
    h.flow.remote = "10.1.2.3:5062".parse().unwrap_or_else(|e| panic!("{e}"));
    h.recv(&invite("c8", "a8", "", SDP_OFFER));
    assert_eq!(h.statuses(), vec![100, 200]);
}

#[test]
fn digest_auth_challenges_then_accepts_md5_and_sha256() {
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let cfg = EndpointConfig {
            auth: Some(AuthSettings {
                realm: "hotline".into(),
                algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
                users: [("pbx".to_string(), "secret".to_string())].into(),
            }),
            ..EndpointConfig::default()
        };
        let mut h = Harness::new(cfg);
        h.recv(&invite("c9", "a9", "", SDP_OFFER));
        let sent = h.take();
        assert!(sent[1].starts_with("SIP/2.0 401"), "{sent:?}");
        let challenge = sent[1]
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:") && l.contains(algorithm.name()))
            .unwrap_or_else(|| panic!("no {} challenge", algorithm.name()));
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        let mut c = super::super::auth::Credentials {
            username: "pbx".into(),
            realm: "hotline".into(),
            nonce,
            uri: "sip:12345@198.51.100.1".into(),
            response: String::new(),
            algorithm,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("xyz".into()),
        };
        c.response = super::super::auth::response_for(&c, "INVITE", "secret");
        let auth = format!(
            "Authorization: Digest username=\"pbx\", realm=\"hotline\", nonce=\"{}\", \
uri=\"sip:12345@198.51.100.1\", response=\"{}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"xyz\"\r\n",
            c.nonce,
            c.response,
            algorithm.name()
        );
        h.recv(&invite("c9", "b9", &auth, SDP_OFFER));
        assert_eq!(h.statuses(), vec![100, 200], "{}", algorithm.name());
        let wrong = auth.replace(&c.response, "00000000000000000000000000000000");
        h.recv(&invite("c10", "b10", &wrong, SDP_OFFER));
        assert_eq!(h.statuses(), vec![100, 403]);
    }
}

#[test]
fn invite_that_cannot_accept_sdp_gets_406() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite(
        "c28",
        "a28",
        "Accept: text/nonsense\r\n",
        SDP_OFFER,
    ));
    let sent = h.take();
    assert!(sent[1].starts_with("SIP/2.0 406"), "{sent:?}");
    assert_eq!(h.ended(), vec![EndReason::Rejected(406)]);
}

#[test]
fn no_common_codec_is_488_with_warning() {
    let mut h = Harness::new(EndpointConfig::default());
    let g729 = SDP_OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 18");
    h.recv(&invite("c11", "a11", "", &g729));
    let sent = h.take();
    assert!(sent[1].starts_with("SIP/2.0 488"), "{sent:?}");
    assert!(sent[1].contains("Warning: 305 "));
    assert_eq!(h.ended(), vec![EndReason::Rejected(488)]);
}

#[test]
fn reinvite_hold_and_resume_mirror_direction_and_bump_version() {
    let mut h = Harness::new(EndpointConfig::default());
    let tag = established(&mut h, "c12");
    h.take();
    let hold = SDP_OFFER
        .replace("a=sendrecv", "a=sendonly")
        .replace("o=pbx 1 1", "o=pbx 1 2");
    h.recv(&in_dialog(
        "INVITE",
        "c12",
        &tag,
        2,
        "Contact: <sip:13800138000@192.0.2.9:5062>\r\nContent-Type: application/sdp\r\n",
        &hold,
    ));
    let sent = h.take();
    assert!(sent[0].starts_with("SIP/2.0 200"), "{sent:?}");
    let sdp = body_of(&sent[0]);
    assert!(sdp.contains("a=recvonly"), "{sdp}");
    assert!(
        sdp.contains("o=- 1 2 IN IP4"),
        "changed answer gets a new version: {sdp}"
    );
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Media { answer, .. } if answer.hold)));
    h.recv(&ack("c12", &tag, 2, ""));
    let resume = SDP_OFFER.replace("o=pbx 1 1", "o=pbx 1 3");
    h.recv(&in_dialog(
        "INVITE",
        "c12",
        &tag,
        3,
        "Content-Type: application/sdp\r\n",
        &resume,
    ));
    let sent = h.take();
    let sdp = body_of(&sent[0]);
    assert!(
        sdp.contains("a=sendrecv") && sdp.contains("o=- 1 3 "),
        "{sdp}"
    );
    h.recv(&ack("c12", &tag, 3, ""));
    // An older CSeq is out of order: 500 (12.2.2).
    h.recv(&in_dialog("UPDATE", "c12", &tag, 2, "", ""));
    assert_eq!(h.statuses(), vec![500]);
}

#[test]
fn late_offer_takes_the_answer_from_the_ack() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite("c13", "a13", "", ""));
    let sent = h.take();
    let ok = &sent[1];
    let offer = body_of(ok);
    assert!(offer.contains("m=audio 40000 RTP/AVP 0 8 101"), "{offer}");
    let tag = to_tag(ok);
    let answer = SDP_OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 0 101");
    h.recv(&ack("c13", &tag, 1, &answer));
    assert!(h.events.iter().any(
        |e| matches!(e, Event::Media { answer, .. } if answer.codec.name == crate::sdp::G711::Pcmu)
    ));
    assert!(h.ended().is_empty());

    // An ACK without the answer leaves a call with no media: hang up.
    h.recv(&invite("c14", "a14", "", ""));
    let tag = to_tag(&h.take()[1]);
    h.recv(&ack("c14", &tag, 1, ""));
    assert!(h.take().iter().any(|s| s.starts_with("BYE ")));
    assert_eq!(h.ended(), vec![EndReason::GatewayBye]);
}

#[test]
fn gateway_bye_is_retransmitted_until_answered() {
    let cfg = EndpointConfig {
        max_call: Some(Duration::from_secs(3)),
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    established(&mut h, "c15");
    h.take();
    h.advance(Duration::from_secs(3));
    let sent = h.take();
    let bye = sent
        .iter()
        .find(|s| s.starts_with("BYE sip:13800138000@192.0.2.9:5062 SIP/2.0"))
        .unwrap_or_else(|| panic!("{sent:?}"))
        .clone();
    assert!(bye.contains("CSeq: 1 BYE"));
    assert!(bye.contains("To: <sip:13800138000@192.0.2.9>;tag=caller"));
    assert_eq!(h.ended(), vec![EndReason::GatewayBye]);
    h.advance(Duration::from_millis(600));
    assert!(h.take().iter().any(|s| s.starts_with("BYE ")), "timer E");
    let Ok(Message::Request(req)) = parse(bye.as_bytes()) else {
        panic!("our BYE does not parse");
    };
    let via = req.headers.get("Via").unwrap_or_default();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: c15\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        req.headers.get("From").unwrap_or_default(),
        req.headers.get("To").unwrap_or_default()
    );
    h.recv(&ok);
    h.advance(Duration::from_secs(10));
    assert!(h.take().is_empty());
    assert_eq!(h.stats().rx_unmatched_response, 0);
}

#[test]
fn requests_we_do_not_serve_get_the_right_status() {
    let mut h = Harness::new(EndpointConfig::default());
    let n = std::cell::Cell::new(0);
    let req = |method: &str, uri: &str, extra: &str| {
        n.set(n.get() + 1);
        let n = n.get();
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bK{method}{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.9>;tag=1\r\nTo: <sip:12345@198.51.100.1>\r\n\
Call-ID: x{method}{n}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    h.recv(&req("REGISTER", "sip:198.51.100.1", ""));
    let r = h.take();
    assert!(
        r[0].starts_with("SIP/2.0 405") && r[0].contains("Allow: INVITE"),
        "{r:?}"
    );
    h.recv(&req("FOO", "sip:198.51.100.1", ""));
    assert_eq!(h.statuses(), vec![501]);
    h.recv(&req(
        "OPTIONS",
        "sip:198.51.100.1",
        "Require: foo, timer\r\n",
    ));
    let r = h.take();
    assert!(
        r[0].starts_with("SIP/2.0 420") && r[0].contains("Unsupported: foo\r\n"),
        "{r:?}"
    );
    h.recv(&req("OPTIONS", "mailto:a@b.example", ""));
    assert_eq!(h.statuses(), vec![416]);
    h.recv(&req("OPTIONS", "sip:198.51.100.1", ""));
    let r = h.take();
    assert!(
        r[0].starts_with("SIP/2.0 200") && r[0].contains("Allow: ") && r[0].contains("Accept: ")
    );
    h.recv(&req("BYE", "sip:198.51.100.1", ""));
    assert_eq!(h.statuses(), vec![481]);
    let html = invite("c16", "a16", "", "<html/>").replace("application/sdp", "text/html");
    h.recv(&html);
    let r = h.take();
    assert!(
        r[0].starts_with("SIP/2.0 415") && r[0].contains("Accept: application/sdp"),
        "{r:?}"
    );
}

#[test]
fn malformed_input_is_answered_400_or_505_when_possible_and_dropped_otherwise() {
    let mut h = Harness::new(EndpointConfig::default());
    let bad_cl = invite("c17", "a17", "", "").replace("Content-Length: 0", "Content-Length: x");
    h.recv(&bad_cl);
    assert_eq!(h.statuses(), vec![400]);
    let v3 = invite("c18", "a18", "", "").replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    h.recv(&v3);
    assert_eq!(h.statuses(), vec![505]);
    h.recv("\u{0}\u{1}garbage that is not SIP\r\n\r\n");
    h.recv("INVITE sip:x SIP/2.0\r\nTo: <sip:x>\r\n\r\n");
    assert!(h.take().is_empty());
    assert_eq!(h.stats().rx_malformed_dropped, 2);
    // RFC 4475 insuf: no Call-ID, From or To, but a Via to answer along.
    h.recv("OPTIONS sip:x@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKinsuf\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.statuses(), vec![400]);
    assert_eq!(h.stats().rx_malformed_answered, 3);
}

#[test]
fn info_dtmf_relay_yields_a_digit() {
    let mut h = Harness::new(EndpointConfig::default());
    let tag = established(&mut h, "c19");
    h.take();
    h.recv(&in_dialog(
        "INFO",
        "c19",
        &tag,
        2,
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    ));
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Dtmf {
            digit: '5',
            duration_ms: Some(160),
            ..
        }
    )));
    assert_eq!(
        parse_dtmf_body("application/dtmf-relay", b"Signal=11\r\n"),
        Some(('#', None))
    );
    assert_eq!(parse_dtmf_body("application/dtmf", b"*"), Some(('*', None)));
    assert_eq!(
        parse_dtmf_body("application/dtmf-relay", b"Signal=x\r\n"),
        None
    );
}

#[test]
fn session_timer_uac_refresher_without_refresh_ends_the_call() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite(
        "c20",
        "a20",
        "Session-Expires: 120;refresher=uac\r\nSupported: timer\r\n",
        SDP_OFFER,
    ));
    let sent = h.take();
    assert!(
        sent[1].contains("Session-Expires: 120;refresher=uac\r\n"),
        "{sent:?}"
    );
    assert!(sent[1].contains("Require: timer\r\n"));
    let tag = to_tag(&sent[1]);
    h.recv(&ack("c20", &tag, 1, ""));
    // A refresh at 60 s restarts the interval.
    h.advance(Duration::from_secs(60));
    h.recv(&in_dialog(
        "UPDATE",
        "c20",
        &tag,
        2,
        "Session-Expires: 120;refresher=uac\r\n",
        "",
    ));
    assert_eq!(h.statuses(), vec![200]);
    h.advance(Duration::from_secs(87));
    assert!(
        h.ended().is_empty(),
        "still inside 120 - 32 s after the refresh"
    );
    h.advance(Duration::from_secs(2));
    assert_eq!(h.ended(), vec![EndReason::Timeout]);
    assert!(h.take().iter().any(|s| s.starts_with("BYE ")));
}

#[test]
fn session_timer_too_small_is_422() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite("c21", "a21", "Session-Expires: 30\r\n", SDP_OFFER));
    let sent = h.take();
    assert!(
        sent[1].starts_with("SIP/2.0 422") && sent[1].contains("Min-SE: 90\r\n"),
        "{sent:?}"
    );
}

#[test]
fn session_timer_uas_refresher_sends_update_at_half_interval() {
    let mut h = Harness::new(EndpointConfig::default());
    h.recv(&invite(
        "c22",
        "a22",
        "Session-Expires: 100;refresher=uas\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
        SDP_OFFER,
    ));
    let tag = to_tag(&h.take()[1]);
    h.recv(&ack("c22", &tag, 1, ""));
    h.advance(Duration::from_secs(49));
    assert!(h.take().is_empty());
    h.advance(Duration::from_secs(2));
    let sent = h.take();
    let update = sent
        .iter()
        .find(|s| s.starts_with("UPDATE "))
        .unwrap_or_else(|| panic!("{sent:?}"));
    assert!(update.contains("Session-Expires: 100;refresher=uas"));
    assert!(h.ended().is_empty());
}

#[test]
fn responses_follow_via_port_without_rport_and_source_port_with_it() {
    let mut h = Harness::new(EndpointConfig::default());
    let no_rport = invite("c23", "a23", "", SDP_OFFER)
        .replace(";rport", "")
        .replace("192.0.2.9:5062;branch", "192.0.2.9:5099;branch");
    h.recv(&no_rport);
    let (f, s) = h.sent.remove(0);
    assert!(s.starts_with("SIP/2.0 100"));
    assert_eq!(f.remote.port(), 5099);
    h.sent.clear();
    h.recv(&invite("c24", "a24", "", SDP_OFFER));
    let (f, _) = h.sent.remove(0);
    assert_eq!(f.remote.port(), 5062);
}

#[test]
fn shutdown_hangs_up_answered_and_refuses_new_calls() {
    let mut h = Harness::new(EndpointConfig::default());
    established(&mut h, "c25");
    h.take();
    h.ep.shutdown(h.now);
    h.pump();
    assert!(h.take().iter().any(|s| s.starts_with("BYE ")));
    assert_eq!(h.ended(), vec![EndReason::Shutdown]);
    h.recv(&invite("c26", "a26", "", SDP_OFFER));
    assert_eq!(h.statuses(), vec![100, 503]);
}

#[test]
fn tables_stay_bounded_after_many_calls() {
    let mut h = Harness::new(EndpointConfig::default());
    for i in 0..200 {
        let id = format!("bulk{i}");
        let tag = established(&mut h, &id);
        h.recv(&in_dialog("BYE", &id, &tag, 2, "", ""));
        let sent = h.take();
        assert_eq!(sent.len(), 1, "{i}: {sent:?}");
    }
    h.take();
    assert_eq!(h.ep.active_calls(), 0);
    h.advance(Duration::from_secs(40));
    assert_eq!(
        (
            h.ep.servers.len(),
            h.ep.clients.len(),
            h.ep.server_keys.len()
        ),
        (0, 0, 0),
        "all transactions reaped by their timers"
    );
    assert!(
        h.ep.timers.len() < 10,
        "timer heap drained: {}",
        h.ep.timers.len()
    );
}

#[test]
fn sip_i_multipart_invite_takes_the_sdp_part() {
    let mut h = Harness::new(EndpointConfig::default());
    let body = format!(
        "--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP_OFFER}\r\n--b1\r\n\
Content-Type: application/isup;version=itu-t92+\r\n\r\nxx\r\n--b1--\r\n"
    );
    let inv = invite("c27", "a27", "", &body).replace(
        "application/sdp\r\nContent-Length",
        "multipart/mixed;boundary=b1\r\nContent-Length",
    );
    h.recv(&inv);
    let sent = h.take();
    assert!(sent[1].starts_with("SIP/2.0 200"), "{sent:?}");
    assert!(body_of(&sent[1]).contains("m=audio 40000 RTP/AVP 8 101"));
}
