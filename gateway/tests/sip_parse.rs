//! RFC 4475 torture messages plus framing, limits and round-trip tests.

use hotline_gateway::sip::{
    parse, parse_for_reply, parse_stream, Contacts, Headers, Message, Method, ParseError, Request,
    Response, Uri, MAX_MESSAGE,
};
use proptest::prelude::*;

const SDP150: &str = concat!(
    "v=0\r\n",
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n",
    "s=-\r\n",
    "c=IN IP4 192.0.2.4\r\n",
    "t=0 0\r\n",
    "m=audio 49217 RTP/AVP 0 12\r\n",
    "m=video 3227 RTP/AVP 31\r\n",
    "a=rtpmap:31 LPC\r\n",
);

fn req(m: &Message) -> &Request {
    match m {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected request"),
    }
}

fn resp(m: &Message) -> &Response {
    match m {
        Message::Response(r) => r,
        Message::Request(_) => panic!("expected response"),
    }
}

// 3.1.1.1 wsinv
#[test]
fn rfc4475_wsinv() {
    let head = concat!(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n",
        "TO :\r\n",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n",
        "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n",
        "  ;\r\n",
        "  tag = 98asjd8\r\n",
        "MaX-fOrWaRdS: 0068\r\n",
        "Call-ID: wsinv.ndaksdj@192.0.2.1\r\n",
        "Content-Length   : 150\r\n",
        "cseq: 0009\r\n",
        "  INVITE\r\n",
        "Via  : SIP  /   2.0\r\n",
        " /UDP\r\n",
        "    192.0.2.2;branch=390skdjuw\r\n",
        "s :\r\n",
        "NewFangledHeader:   newfangled value\r\n",
        " continued newfangled value\r\n",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n",
        "Content-Type: application/sdp\r\n",
        "Route:\r\n",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n",
        "  branch  =   z9hG4bK9ikj8  ,\r\n",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n",
        " z9hG4bK30239\r\n",
        "m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n",
        "      newvalue ;\r\n",
        "  secondparam ; q = 0.33\r\n",
        "\r\n",
    );
    let msg = format!("{head}{SDP150}");
    let m = parse(msg.as_bytes()).unwrap();
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
    assert_eq!(via[0].transport, "UDP");
    assert_eq!(via[0].host, "192.0.2.2");
    assert_eq!(via[1].transport, "TCP");
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
    assert_eq!(c[0].display_name.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c[0].param("q"), Some(Some("0.33")));
    assert_eq!(c[0].param("secondparam"), Some(None));
    assert_eq!(h.routes("Route").unwrap()[0].uri.param("lr"), Some(None));
    assert_eq!(h.content_length().unwrap(), Some(150));
    assert_eq!(r.body.len(), 150);
    assert_eq!(h.content_type(), Some("application/sdp"));
}

// 3.1.1.2 intmeth
#[test]
fn rfc4475_intmeth() {
    let msg: &[u8] = concat!(
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n",
        "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n",
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.\r\n",
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n",
        "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n",
        "Max-Forwards: 255\r\n",
        "extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}\r\n",
        "Content-Length: 0\r\n",
        "\r\n",
    )
    .as_bytes();
    let m = parse(msg).unwrap();
    let r = req(&m);
    assert_eq!(
        r.method,
        Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(r.uri.host, "example.com");
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
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
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(r.headers.max_forwards().unwrap(), Some(255));
    assert_eq!(
        r.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}\u{5927}\u{505c}\u{96fb}")
    );
    assert!(r.body.is_empty());
}

// 3.1.1.3 esc01
#[test]
fn rfc4475_esc01() {
    let head = concat!(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n",
        "To: sip:%75se%72@example.com\r\n",
        "From: <sip:I%20have%20spaces@example.net>;tag=938\r\n",
        "Max-Forwards: 87\r\n",
        "i: esc01.239409asdfakjkn23onasd0-3234\r\n",
        "CSeq: 234234 INVITE\r\n",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\r\n",
        "C: application/sdp\r\n",
        "Contact:\r\n",
        "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\r\n",
        "Content-Length: 150\r\n",
        "\r\n",
    );
    let msg = format!(
        "{head}{}",
        SDP150
            .replace("192.0.2.3", "192.0.2.1")
            .replace("192.0.2.4", "192.0.2.1")
    );
    let m = parse(msg.as_bytes()).unwrap();
    let r = req(&m);
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(r.uri.host, "example.net");
    assert_eq!(
        r.headers.call_id(),
        Some("esc01.239409asdfakjkn23onasd0-3234")
    );
    assert_eq!(r.headers.content_type(), Some("application/sdp"));
    let Some(Contacts::List(c)) = r.headers.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c[0].uri.param("n%61me"), Some(Some("v%61lue%25%34%31")));
}

// 3.1.1.4 escnull
#[test]
fn rfc4475_escnull() {
    let msg = concat!(
        "REGISTER sip:example.com SIP/2.0\r\n",
        "To: sip:null-%00-null@example.com\r\n",
        "From: sip:null-%00-null@example.com;tag=839923423\r\n",
        "Max-Forwards: 70\r\n",
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\n",
        "CSeq: 14398234 REGISTER\r\n",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n",
        "Contact: <sip:%00@host5.example.com>\r\n",
        "Contact: <sip:%00%00@host5.example.com>\r\n",
        "L:0\r\n",
        "\r\n",
    );
    let m = parse(msg.as_bytes()).unwrap();
    let h = m.headers();
    assert_eq!(h.from().unwrap().unwrap().tag(), Some("839923423"));
    let Some(Contacts::List(c)) = h.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 2);
    assert_eq!(c[1].uri.user.as_deref(), Some("%00%00"));
    assert_eq!(h.content_length().unwrap(), Some(0));
}

// 3.1.1.6 lwsdisp
#[test]
fn rfc4475_lwsdisp() {
    let msg = concat!(
        "OPTIONS sip:user@example.com SIP/2.0\r\n",
        "To: sip:user@example.com\r\n",
        "From: caller<sip:caller@example.com>;tag=323\r\n",
        "Max-Forwards: 70\r\n",
        "Call-ID: lwsdisp.1234abcd@funky.example.com\r\n",
        "CSeq: 60 OPTIONS\r\n",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\n",
        "l: 0\r\n",
        "\r\n",
    );
    let m = parse(msg.as_bytes()).unwrap();
    let from = m.headers().from().unwrap().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
}

// 3.1.1.7 longreq (repeated runs shortened via `repeat`).
#[test]
fn rfc4475_longreq() {
    let long = "long".repeat(20);
    let mut msg = String::new();
    msg += "INVITE sip:user@example.com SIP/2.0\r\n";
    msg += &format!(
        "To: \"I have a user name of {} proportion\"<sip:user@example.com:6000;unknownparam1=very{long}value;longparam{}=shortvalue;very{long}ParameterNameWithNoValue>\r\n",
        "extreme".repeat(10),
        "name".repeat(25),
    );
    msg += &format!(
        "F: sip:{}@example.net;tag=12{}424;unknownheaderparam{}=unknowheaderparam{};unknownValuelessparam{}\r\n",
        "amazinglylongcallername".repeat(5),
        "982".repeat(50),
        "name".repeat(20),
        "value".repeat(15),
        "paramname".repeat(10),
    );
    msg += &format!("Call-ID: longreq.one{}longcallid\r\n", "really".repeat(20));
    msg += "CSeq: 3882340 INVITE\r\n";
    msg += &format!(
        "Unknown-{}-Name: unknown-{}-value; unknown-{}-parameter-name = unknown-{}-parameter-value\r\n",
        "Long".repeat(20),
        long,
        long,
        long
    );
    for (i, name) in [
        "Via", "v", "V", "Via", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ", "v ", "V  ",
        "v  ", "Via ", "Via  ",
    ]
    .iter()
    .enumerate()
    {
        let sep = if name.ends_with(' ') { ":  " } else { ": " };
        msg += &format!("{name}{sep}SIP/2.0/TCP sip{}.example.com\r\n", 33 - i);
    }
    for i in (1..=16).rev() {
        msg += &format!("Via: SIP/2.0/TCP sip{i}.example.com\r\n");
    }
    msg += &format!(
        "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very{}{long}branchvalue\r\n",
        long
    );
    msg += "Max-Forwards: 70\r\n";
    msg += &format!(
        "Contact: <sip:{}@host5.example.net>\r\n",
        "amazinglylongcallername".repeat(5)
    );
    msg += "Content-Type: application/sdp\r\n";
    msg += "l: 150\r\n\r\n";
    msg += &SDP150
        .replace("192.0.2.3", "192.0.2.1")
        .replace("192.0.2.4", "192.0.2.1");
    let m = parse(msg.as_bytes()).unwrap();
    let vias = m.headers().via().unwrap();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, "sip33.example.com");
    assert_eq!(vias[33].received(), Some("192.0.2.5"));
    let to = m.headers().to().unwrap().unwrap();
    assert_eq!(to.uri.port, Some(6000));
    assert_eq!(m.body().len(), 150);
}

// 3.1.1.10 semiuri
#[test]
fn rfc4475_semiuri() {
    let msg = concat!(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\r\n",
        "To: sip:j_user@example.com\r\n",
        "From: sip:caller@example.org;tag=33242\r\n",
        "Max-Forwards: 3\r\n",
        "Call-ID: semiuri.0ha0isndaksdj\r\n",
        "CSeq: 8 OPTIONS\r\n",
        "Accept: application/sdp, application/pkcs7-mime,\r\n",
        "        multipart/mixed, multipart/signed,\r\n",
        "        message/sip, message/sipfrag\r\n",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\n",
        "l: 0\r\n",
        "\r\n",
    );
    let m = parse(msg.as_bytes()).unwrap();
    let r = req(&m);
    assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(r.uri.host, "example.com");
    assert!(r.uri.params.is_empty());
    let accept = r.headers.values("Accept").unwrap();
    assert_eq!(accept.len(), 6);
    assert_eq!(accept[2], "multipart/mixed");
}

// 3.1.1.11 transports
#[test]
fn rfc4475_transports() {
    let msg = concat!(
        "OPTIONS sip:user@example.com SIP/2.0\r\n",
        "To: sip:user@example.com\r\n",
        "From: <sip:caller@example.com>;tag=323\r\n",
        "Max-Forwards: 70\r\n",
        "Call-ID:  transports.kijh4akdnaqjkwendsasfdj\r\n",
        "Accept: application/sdp\r\n",
        "CSeq: 60 OPTIONS\r\n",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\r\n",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\r\n",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\r\n",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\r\n",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\r\n",
        "l: 0\r\n",
        "\r\n",
    );
    let m = parse(msg.as_bytes()).unwrap();
    let t: Vec<String> = m
        .headers()
        .via()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

// 3.1.1.13 unreason
#[test]
fn rfc4475_unreason() {
    let reason = "= 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}";
    let head = format!(
        concat!(
            "SIP/2.0 200 {}\r\n",
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n",
            "Call-ID: unreason.1234ksdfak3j2erwedfsASdf\r\n",
            "CSeq: 35 INVITE\r\n",
            "From: sip:user@example.com;tag=11141343\r\n",
            "To: sip:user@example.edu;tag=2229\r\n",
            "Content-Length: 154\r\n",
            "Content-Type: application/sdp\r\n",
            "Contact: <sip:user@host198.example.com>\r\n",
            "\r\n",
        ),
        reason
    );
    let body = SDP150
        .replace("192.0.2.3", "192.0.2.198")
        .replace("192.0.2.4", "192.0.2.198");
    let msg = format!("{head}{body}");
    let m = parse(msg.as_bytes()).unwrap();
    let r = resp(&m);
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, reason);
    assert_eq!(r.body.len(), 154);
}

fn invalid(msg: &str) -> ParseError {
    parse(msg.as_bytes()).unwrap_err()
}

// 3.1.2.1 badinv01
#[test]
fn rfc4475_badinv01() {
    let msg = format!(
        concat!(
            "INVITE sip:user@example.com SIP/2.0\r\n",
            "To: sip:j.user@example.com\r\n",
            "From: sip:caller@example.net;tag=134161461246\r\n",
            "Max-Forwards: 7\r\n",
            "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\r\n",
            "CSeq: 8 INVITE\r\n",
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n",
            "Contact: \"Joe\" <sip:joe@example.org>;;;;\r\n",
            "Content-Length: 152\r\n",
            "Content-Type: application/sdp\r\n",
            "\r\n{}",
        ),
        SDP150
            .replace("192.0.2.3", "192.0.2.15")
            .replace("192.0.2.4", "192.0.2.15")
    );
    assert_eq!(invalid(&msg), ParseError::BadHeader { name: "Via".into() });
    let f = parse_for_reply(msg.as_bytes()).unwrap_err();
    assert!(f.can_reply());
}

// 3.1.2.2 clerr
#[test]
fn rfc4475_clerr() {
    let msg = format!(
        concat!(
            "INVITE sip:user@example.com SIP/2.0\r\n",
            "Max-Forwards: 80\r\n",
            "To: sip:j.user@example.com\r\n",
            "From: sip:caller@example.net;tag=93942939o2\r\n",
            "Contact: <sip:caller@hungry.example.net>\r\n",
            "Call-ID: clerr.0ha0isndaksdjweiafasdk3\r\n",
            "CSeq: 8 INVITE\r\n",
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\r\n",
            "Content-Type: application/sdp\r\n",
            "Content-Length: 9999\r\n",
            "\r\n{}",
        ),
        SDP150
            .replace("192.0.2.3", "192.0.2.155")
            .replace("192.0.2.4", "192.0.2.155")
    );
    assert!(matches!(
        invalid(&msg),
        ParseError::BodyTruncated { expected: 9999, .. }
    ));
    assert!(parse_for_reply(msg.as_bytes()).unwrap_err().can_reply());
    // On a stream the same bytes just mean "wait for more".
    assert_eq!(parse_stream(msg.as_bytes()), Ok(None));
}

// 3.1.2.4 ncl
#[test]
fn rfc4475_ncl() {
    let msg = format!(
        concat!(
            "INVITE sip:user@example.com SIP/2.0\r\n",
            "Max-Forwards: 254\r\n",
            "To: sip:j.user@example.com\r\n",
            "From: sip:caller@example.net;tag=32394234\r\n",
            "Call-ID: ncl.0ha0isndaksdj2193423r542w35\r\n",
            "CSeq: 0 INVITE\r\n",
            "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n",
            "Contact: <sip:caller@example53.example.net>\r\n",
            "Content-Type: application/sdp\r\n",
            "Content-Length: -999\r\n",
            "\r\n{}",
        ),
        SDP150
    );
    assert_eq!(invalid(&msg), ParseError::BadContentLength);
    assert_eq!(
        parse_stream(msg.as_bytes()),
        Err(ParseError::BadContentLength)
    );
}

// 3.1.2.5 quotbal
#[test]
fn rfc4475_quotbal() {
    let msg = format!(
        concat!(
            "INVITE sip:user@example.com SIP/2.0\r\n",
            "To: \"Mr. J. User <sip:j.user@example.com>\r\n",
            "From: sip:caller@example.net;tag=93334\r\n",
            "Max-Forwards: 10\r\n",
            "Call-ID: quotbal.aksdj\r\n",
            "Contact: <sip:caller@host59.example.net>\r\n",
            "CSeq: 8 INVITE\r\n",
            "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n",
            "Content-Type: application/sdp\r\n",
            "Content-Length: 152\r\n",
            "\r\n{}",
        ),
        SDP150
            .replace("192.0.2.3", "192.0.2.15")
            .replace("192.0.2.4", "192.0.2.15")
    );
    assert_eq!(invalid(&msg), ParseError::BadHeader { name: "To".into() });
}

// 3.1.2.6 ltgtruri
#[test]
fn rfc4475_ltgtruri() {
    let msg = concat!(
        "INVITE <sip:user@example.com> SIP/2.0\r\n",
        "To: sip:user@example.com\r\n",
        "From: sip:caller@example.net;tag=39291\r\n",
        "Max-Forwards: 23\r\n",
        "Call-ID: ltgtruri.1@192.0.2.5\r\n",
        "CSeq: 1 INVITE\r\n",
        "Via: SIP/2.0/UDP 192.0.2.5\r\n",
        "Contact: <sip:caller@host5.example.net>\r\n",
        "Content-Type: application/sdp\r\n",
        "Content-Length: 0\r\n",
        "\r\n",
    );
    assert_eq!(invalid(msg), ParseError::BadUri);
    assert!(parse_for_reply(msg.as_bytes()).unwrap_err().can_reply());
}

// 3.1.2.9 lwsruri
#[test]
fn rfc4475_lwsruri() {
    let msg = concat!(
        "INVITE sip:user@example.com; lr SIP/2.0\r\n",
        "To: sip:user@example.com;tag=3xfe-9921883-z9f\r\n",
        "From: sip:caller@example.net;tag=231413434\r\n",
        "Max-Forwards: 5\r\n",
        "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\r\n",
        "CSeq: 2130706432 INVITE\r\n",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\r\n",
        "Contact: <sip:caller@host1.example.net>\r\n",
        "Content-Type: application/sdp\r\n",
        "Content-Length: 0\r\n",
        "\r\n",
    );
    assert_eq!(invalid(msg), ParseError::BadUri);
}

// 3.1.2.12 mismatch01
#[test]
fn rfc4475_mismatch01() {
    let msg = concat!(
        "OPTIONS sip:user@example.com SIP/2.0\r\n",
        "To: sip:j.user@example.com\r\n",
        "From: sip:caller@example.net;tag=34525\r\n",
        "Max-Forwards: 6\r\n",
        "Call-ID: mismatch01.dj0234sxdfl3\r\n",
        "CSeq: 8 INVITE\r\n",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n",
        "l: 0\r\n",
        "\r\n",
    );
    assert_eq!(invalid(msg), ParseError::CSeqMismatch);
}

// 3.1.2.14 bigcode
#[test]
fn rfc4475_bigcode() {
    let msg = concat!(
        "SIP/2.0 4294967301 better not break the receiver\r\n",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n",
        "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\r\n",
        "CSeq: 353494 INVITE\r\n",
        "From: <sip:user@example.com>;tag=39ansfi3\r\n",
        "To: <sip:user@example.edu>;tag=902jndnke3\r\n",
        "Content-Length: 0\r\n",
        "Contact: <sip:user@host105.example.com>\r\n",
        "\r\n",
    );
    assert_eq!(invalid(msg), ParseError::BadStatusLine);
}

// 3.1.2.16 badvers
#[test]
fn rfc4475_badvers() {
    let msg = concat!(
        "OPTIONS sip:t.watson@example.org SIP/7.0\r\n",
        "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n",
        "Max-Forwards:     70\r\n",
        "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\n",
        "To:      T. Watson <sip:t.watson@example.org>\r\n",
        "Call-ID: badvers.31417@c.example.com\r\n",
        "CSeq:    1 OPTIONS\r\n",
        "l: 0\r\n",
        "\r\n",
    );
    assert_eq!(invalid(msg), ParseError::BadVersion);
    let f = parse_for_reply(msg.as_bytes()).unwrap_err();
    assert!(f.can_reply(), "505 must be answerable");
}

// 3.1.1.8-like: unknown scheme parses; the UAS decides on 416.
#[test]
fn unknown_scheme_parses_for_416() {
    let msg = concat!(
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\n",
        "To: sip:user@example.com\r\n",
        "From: sip:caller@example.net;tag=384\r\n",
        "Max-Forwards: 3\r\n",
        "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\r\n",
        "CSeq: 3923423 OPTIONS\r\n",
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\n",
        "Content-Length: 0\r\n",
        "\r\n",
    );
    let m = parse(msg.as_bytes()).unwrap();
    let r = req(&m);
    assert_eq!(r.uri.scheme, "nobodyKnowsThisScheme");
    assert!(matches!(
        r.check_uri_scheme(),
        Err(ParseError::UnsupportedUriScheme { .. })
    ));
}

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

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop::option::of("[a-z0-9_.+-]{1,10}"),
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,4}){0,2}",
            "(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}",
            Just("[::1]".to_string()),
        ],
        prop::option::of(1u16..),
        prop::collection::vec(("[a-z]{1,6}", prop::option::of("[a-z0-9]{1,6}")), 0..3),
        prop_oneof![Just("sip"), Just("sips")],
    )
        .prop_map(|(user, host, port, params, scheme)| {
            let mut s = format!("{scheme}:");
            if let Some(u) = user {
                s += &u;
                s.push('@');
            }
            s += &host;
            if let Some(p) = port {
                s += &format!(":{p}");
            }
            for (n, v) in params {
                s += &format!(";{n}");
                if let Some(v) = v {
                    s += &format!("={v}");
                }
            }
            s
        })
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
        "[A-Z]{3,10}".prop_map(|s| Method::from_token(&s)),
    ]
}

prop_compose! {
    fn message()(
        is_req in any::<bool>(),
        m in method(),
        ruri in sip_uri(),
        from_uri in sip_uri(),
        to_uri in sip_uri(),
        display in prop::option::of("[ -~&&[^\"\\\\]]{0,12}"),
        tag in token(),
        branch in token(),
        cid in "[!-~]{1,30}",
        seq in any::<u32>(),
        status in 100u16..700,
        reason in "[ -~]{0,20}",
        extra in prop::collection::vec((token(), "[!-~]([ -~]{0,30}[!-~])?"), 0..5),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) -> Message {
        let mut h = Headers::new();
        h.push("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch};rport"));
        let from = match &display {
            Some(d) => format!("\"{d}\" <{from_uri}>;tag={tag}"),
            None => format!("<{from_uri}>;tag={tag}"),
        };
        h.push("From", from);
        h.push("To", format!("<{to_uri}>"));
        h.push("Call-ID", cid);
        h.push("CSeq", format!("{seq} {m}"));
        h.push("Max-Forwards", "70");
        for (n, v) in extra {
            h.push(format!("X-{n}"), v);
        }
        h.push("Content-Length", body.len().to_string());
        if is_req {
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
                reason: reason.trim().to_string(),
                headers: h,
                body,
            })
        }
    }
}

proptest! {
    #[test]
    fn round_trip(m in message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(parse(&bytes), Ok(m.clone()));
        prop_assert_eq!(parse_stream(&bytes), Ok(Some((m, bytes.len()))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&b);
        let _ = parse_stream(&b);
    }

    #[test]
    fn mutated_message_never_panics(m in message(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut b = m.to_bytes();
        let i = pos.index(b.len());
        b[i] = byte;
        if let Ok(m) = parse(&b) {
            let h = m.headers();
            let _ = (h.via(), h.from(), h.to(), h.cseq(), h.contacts(), h.max_forwards());
        }
        let _ = parse_stream(&b);
    }
}

// Further RFC 4475 cases (named by their short names).
fn opts(start: &str, extra: &str) -> String {
    format!(
        concat!(
            "{}\r\n",
            "To: sip:user@example.com\r\n",
            "From: sip:caller@example.net;tag=8814\r\n",
            "Max-Forwards: 8\r\n",
            "Call-ID: extra.dfknq234oi243099adsdfnawe3@example.com\r\n",
            "CSeq: 1893884 OPTIONS\r\n",
            "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\r\n",
            "{}",
            "\r\n",
        ),
        start, extra
    )
}

#[test]
fn rfc4475_lwsstart_and_trws() {
    let lwsstart = opts("OPTIONS  sip:user@example.com  SIP/2.0", "l: 0\r\n");
    assert_eq!(invalid(&lwsstart), ParseError::BadRequestLine);
    let trws = opts(
        "OPTIONS sip:remote-target@example.com SIP/2.0  ",
        "l: 0\r\n",
    );
    assert_eq!(invalid(&trws), ParseError::BadRequestLine);
    let lower = opts("OPTIONS sip:user@example.com sip/2.0", "l: 0\r\n");
    assert!(parse(lower.as_bytes()).is_ok());
}

#[test]
fn rfc4475_mcl01() {
    let msg = opts(
        "OPTIONS sip:user@example.com SIP/2.0",
        "Content-Length: 13\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n",
    ) + "There's no way to know how many octets are supposed to be here.\r\n";
    assert_eq!(invalid(&msg), ParseError::BadContentLength);
}

#[test]
fn rfc4475_insuf() {
    let msg = concat!(
        "INVITE sip:user@example.com SIP/2.0\r\n",
        "CSeq: 193942 INVITE\r\n",
        "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n",
        "Content-Type: application/sdp\r\n",
        "l: 0\r\n",
        "\r\n",
    );
    let f = parse_for_reply(msg.as_bytes()).unwrap_err();
    assert_eq!(
        f.error,
        ParseError::MissingHeader {
            name: "From".into()
        }
    );
    assert!(!f.can_reply());
}

#[test]
fn rfc4475_baddn_and_badaspec() {
    let baddn = opts("OPTIONS sip:user@example.com SIP/2.0", "l: 0\r\n").replace(
        "From: sip:caller@example.net;tag=8814",
        "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
    );
    assert_eq!(
        invalid(&baddn),
        ParseError::BadHeader {
            name: "From".into()
        }
    );
    let badaspec = opts("OPTIONS sip:user@example.com SIP/2.0", "l: 0\r\n").replace(
        "To: sip:user@example.com",
        "To: \"Watson, Thomas\" < sip:t.watson@example.org >",
    );
    assert_eq!(
        invalid(&badaspec),
        ParseError::BadHeader { name: "To".into() }
    );
}

#[test]
fn rfc4475_noreason_and_novelsc() {
    let noreason = concat!(
        "SIP/2.0 100 \r\n",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n",
        "Call-ID: noreason.asndj203insdf99223ndf\r\n",
        "CSeq: 35 INVITE\r\n",
        "From: <sip:user@example.com>;tag=39ansfi3\r\n",
        "To: <sip:user@example.edu>;tag=902jndnke3\r\n",
        "Content-Length: 0\r\n",
        "Contact: <sip:user@host105.example.com>\r\n",
        "\r\n",
    );
    let m = parse(noreason.as_bytes()).unwrap();
    assert_eq!((resp(&m).status, resp(&m).reason.as_str()), (100, ""));
    let novelsc = opts("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0", "l: 0\r\n");
    let m = parse(novelsc.as_bytes()).unwrap();
    assert_eq!(req(&m).uri.scheme, "soap.beep");
    assert!(req(&m).check_uri_scheme().is_err());
}
