//! RFC 4475 torture messages, random and mutated datagrams, and stream framing,
//! against a real `hotline serve`. Each message goes out as one UDP datagram;
//! the test checks the status a UAS owes for it (the table below, with the
//! reason for each verdict) and that the gateway still answers OPTIONS after
//! every one.
//!
//! Replies to a UDP request go to the source address and the port of the top
//! Via (RFC 3261 18.2.2; RFC 3581 with rport). The torture messages name hosts
//! like 192.0.2.1 with port 5060 (one 5050, one 5070), so each message is sent
//! from a socket bound to that port on an address of its own in 127.0.0.0/8:
//! the reply reaches that socket whichever rule the gateway follows, and a
//! late retransmission can never be mistaken for the next message's reply.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------
// What a UAS owes each message of RFC 4475 section 3.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Owed {
    /// A final response with one of these codes (the first is what RFC 4475
    /// or RFC 3261 prefers).
    Final(&'static [u16]),
    /// Nothing: responses are never answered.
    Silent,
}
use Owed::*;

struct Case {
    name: &'static str,
    section: &'static str,
    owed: Owed,
    why: &'static str,
}

const fn case(name: &'static str, section: &'static str, owed: Owed, why: &'static str) -> Case {
    Case {
        name,
        section,
        owed,
        why,
    }
}

const CASES: &[Case] = &[
    // 3.1.1 Valid messages: parsed, then handled like any request.
    case("wsinv", "3.1.1.1", Final(&[481]),
        "valid INVITE (odd whitespace is legal) whose To has a tag: no such dialog, 481 (RFC 3261 12.2.2)"),
    case("intmeth", "3.1.1.2", Final(&[501]),
        "valid request, unknown method: 501 (RFC 3261 8.2.1, 21.5.2)"),
    case("esc01", "3.1.1.3", Final(&[200]),
        "valid INVITE with escaped URIs; the offer has PCMU: answered"),
    case("escnull", "3.1.1.4", Final(&[405]),
        "valid REGISTER (%00 is legal in URIs); the gateway is no registrar: 405 + Allow"),
    case("esc02", "3.1.1.5", Final(&[501]),
        "RE%47IST%45R is not REGISTER (escapes mean nothing in a method token): unknown method, 501"),
    case("lwsdisp", "3.1.1.6", Final(&[200]), "valid OPTIONS"),
    case("longreq", "3.1.1.7", Final(&[200]),
        "valid INVITE with very long values and 30-odd Vias: answered"),
    case("dblreq", "3.1.1.8", Final(&[405]),
        "REGISTER with Content-Length 0; the INVITE after it in the datagram is junk (RFC 3261 18.3): one answer, for the REGISTER"),
    case("semiuri", "3.1.1.9", Final(&[200]), "valid OPTIONS (; in the user part)"),
    case("transports", "3.1.1.10", Final(&[200]), "valid OPTIONS, unknown transports in lower Vias"),
    case("mpart01", "3.1.1.11", Final(&[405]),
        "valid MESSAGE with a multipart body; MESSAGE is not served: 405 + Allow"),
    case("unreason", "3.1.1.12", Silent, "a response (UTF-8 reason): no transaction, never answered"),
    case("noreason", "3.1.1.13", Silent, "a response (empty reason): never answered"),
    // 3.1.2 Invalid messages.
    case("badinv01", "3.1.2.1", Final(&[400]), "extraneous ;,  separators in Via and Contact: 400"),
    case("clerr", "3.1.2.2", Final(&[400]),
        "Content-Length beyond the datagram: 400 (RFC 3261 18.3)"),
    case("ncl", "3.1.2.3", Final(&[400]), "negative Content-Length: 400"),
    case("scalar02", "3.1.2.4", Final(&[400]), "CSeq above 2^31 and an absurd Expires: 400"),
    case("scalarlg", "3.1.2.5", Silent, "a response with overlarge scalars: dropped"),
    case("quotbal", "3.1.2.6", Final(&[400]), "unterminated quoted string in To: 400"),
    case("ltgtruri", "3.1.2.7", Final(&[400]), "Request-URI enclosed in <>: 400"),
    case("lwsruri", "3.1.2.8", Final(&[400]), "whitespace inside the Request-URI: 400"),
    case("lwsstart", "3.1.2.9", Final(&[400]), "several SPs in the request line: 400"),
    case("trws", "3.1.2.10", Final(&[400]), "trailing whitespace after SIP/2.0: 400"),
    case("escruri", "3.1.2.11", Final(&[400]), "escaped headers in the Request-URI: 400"),
    case("baddate", "3.1.2.12", Final(&[200]),
        "Date in EST, not GMT: RFC 4475 says accept it (Date is not used); valid INVITE, answered"),
    case("regbadct", "3.1.2.13", Final(&[400]), "Contact URI with ? but without <>: 400"),
    case("badaspec", "3.1.2.14", Final(&[400]), "whitespace inside the <> of To: 400"),
    case("baddn", "3.1.2.15", Final(&[400]), "unquoted display name with a comma: 400"),
    case("badvers", "3.1.2.16", Final(&[505]), "SIP/7.0: 505 Version Not Supported"),
    case("mismatch01", "3.1.2.17", Final(&[400]), "OPTIONS with CSeq method INVITE: 400"),
    case("mismatch02", "3.1.2.18", Final(&[501, 400]),
        "unknown NEWMETHOD with CSeq INVITE: 501 fits best, 400 is allowed"),
    case("bigcode", "3.1.2.19", Silent, "a response with a 10-digit status: dropped"),
    // 3.2 Transaction layer.
    case("badbranch", "3.2.1", Final(&[400, 200]),
        "branch is the bare magic cookie: reject with 400, or fall back to RFC 2543 matching and answer"),
    // 3.3 Application layer.
    case("insuf", "3.3.1", Final(&[400]),
        "no Call-ID, From or To: 'Ideally, it will respond with a 400' (Via and CSeq are there to route it)"),
    case("unkscm", "3.3.2", Final(&[416]), "unknown Request-URI scheme: 416"),
    case("novelsc", "3.3.3", Final(&[416]), "soap.beep Request-URI: 416"),
    case("unksm2", "3.3.4", Final(&[405, 400]),
        "REGISTER with non-SIP To/From/Contact is parsable; method inspection comes first (RFC 3261 8.2.1): 405 (a registrar: 400)"),
    case("bext01", "3.3.5", Final(&[420]),
        "unknown Require tokens: 420 listing them in Unsupported (a UAS lists the Require ones)"),
    case("invut", "3.3.6", Final(&[415]), "INVITE with body type application/unknownformat: 415 + Accept"),
    case("regaut01", "3.3.7", Final(&[405]),
        "REGISTER with an unknown Authorization scheme: REGISTER is not served, 405"),
    case("multi01", "3.3.8", Final(&[400]), "two values in single-value headers: 400"),
    case("mcl01", "3.3.9", Final(&[400]), "two Content-Length values: 400"),
    case("bcast", "3.3.10", Silent,
        "a 200 with a broadcast Via: matches no transaction, must not be answered or sent on"),
    case("zeromf", "3.3.11", Final(&[200]),
        "Max-Forwards 0 reaching a UAS: answered normally (483 is a proxy's answer)"),
    case("cparam01", "3.3.12", Final(&[405]), "valid REGISTER: 405"),
    case("cparam02", "3.3.13", Final(&[405]), "valid REGISTER: 405"),
    case("regescrt", "3.3.14", Final(&[405]), "valid REGISTER: 405"),
    case("sdp01", "3.3.15", Final(&[406, 400]),
        "Accept: text/nobodyKnowsThis forbids an SDP answer: 406 (or 400, every INVITE UA must take SDP)"),
    // 3.4 Backward compatibility.
    case("inv2543", "3.4.1", Final(&[200, 400]),
        "RFC 2543 INVITE (no branch, no From tag, no Contact): accepted where 2543 compatibility is kept; answered either way"),
];

fn torture(name: &str) -> Vec<u8> {
    let path = repo()
        .join("gateway/tests/data/rfc4475")
        .join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Sending and receiving.
// ---------------------------------------------------------------------------

/// A UDP socket on `port` at an address of 127.0.0.0/8 no other socket of this
/// test binary has used.
fn fresh_socket(port: u16) -> UdpSocket {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919);
    for _ in 0..10_000 {
        let n = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let ip = Ipv4Addr::new(
            127,
            64 + (n >> 16 & 0x7f) as u8,
            (n >> 8) as u8,
            2 + (n % 250) as u8,
        );
        if let Ok(s) = UdpSocket::bind((ip, port)) {
            return s;
        }
    }
    panic!("no free 127.x.y.z:{port}");
}

/// The port of the top Via's sent-by (5060 when absent or unreadable).
fn top_via_port(msg: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    // Unfold continuation lines.
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    for line in unfolded.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if !(name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")) {
            continue;
        }
        // "SIP / 2.0 / UDP host:port;params"
        let Some(rest) = value.splitn(3, '/').nth(2) else {
            return 5060;
        };
        let sent_by = rest.split_whitespace().nth(1).unwrap_or("");
        let sent_by = sent_by.split([';', ',']).next().unwrap_or("");
        return sent_by
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(5060);
    }
    5060
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    text: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Option<Reply> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Reply { status, text })
    }

    /// Values of header `name` (full name, case-insensitive).
    fn header(&self, name: &str) -> Vec<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    fn is_final(&self) -> bool {
        self.status >= 200
    }
}

/// Everything that arrives on `sock` until `wait` has passed, or `settle`
/// after the first final response (long enough to catch a stray second one).
fn replies(sock: &UdpSocket, wait: Duration, settle: Duration) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 70_000];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return out;
        }
        sock.set_read_timeout(Some(deadline - now)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let Some(r) = Reply::parse(&buf[..n]) else {
                    panic!(
                        "not a SIP response: {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                };
                if r.is_final() {
                    deadline = deadline.min(Instant::now() + settle);
                }
                out.push(r);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return out
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// Sends one datagram the way the module comment explains; returns the replies.
fn exchange(gw: &Gateway, msg: &[u8]) -> Vec<Reply> {
    let sock = fresh_socket(top_via_port(msg));
    sock.send_to(msg, gw.udp).expect("datagram sent");
    replies(&sock, Duration::from_millis(500), Duration::from_millis(50))
}

static PROBE: AtomicU32 = AtomicU32::new(0);

/// The gateway answers a fresh OPTIONS with 200 (retransmitted like Timer E,
/// in case the gateway's socket buffer overflowed).
fn assert_answers_options(gw: &mut Gateway, after: &str) {
    let n = PROBE.fetch_add(1, Ordering::Relaxed);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:12345@{gw} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{pid}-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=probe{n}\r\n\
         To: <sip:12345@{gw}>\r\n\
         Call-ID: probe-{pid}-{n}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        gw = gw.udp,
        pid = std::process::id(),
    );
    for _ in 0..4 {
        sock.send_to(msg.as_bytes(), gw.udp).unwrap();
        let got = replies(&sock, Duration::from_millis(500), Duration::ZERO);
        if let Some(r) = got.iter().find(|r| r.is_final()) {
            assert_eq!(r.status, 200, "OPTIONS after {after}: {}", r.text);
            return;
        }
    }
    let alive = gw.alive();
    panic!(
        "no answer to OPTIONS after {after} (process alive: {alive}); log:\n{}",
        gw.log()
    );
}

/// Checks one torture message's replies against the table; Err says why not.
fn judge(c: &Case, got: &[Reply]) -> Result<(), String> {
    let finals: Vec<&Reply> = got.iter().filter(|r| r.is_final()).collect();
    match c.owed {
        Silent => {
            if got.is_empty() {
                Ok(())
            } else {
                Err(format!("expected silence, got {}", got[0].text))
            }
        }
        Final(codes) => {
            let Some(first) = finals.first() else {
                return Err(format!(
                    "expected {codes:?}, got no final response ({} provisional)",
                    got.len()
                ));
            };
            if !codes.contains(&first.status) {
                return Err(format!("expected {codes:?}, got:\n{}", first.text));
            }
            if finals.len() > 1 {
                return Err(format!(
                    "more than one final response: {:?}",
                    finals.iter().map(|r| r.status).collect::<Vec<_>>()
                ));
            }
            extra_checks(c.name, first)
        }
    }
}

/// What RFC 3261 requires in particular responses.
fn extra_checks(name: &str, r: &Reply) -> Result<(), String> {
    let has = |h: &str, token: &str| {
        r.header(h)
            .iter()
            .flat_map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .any(|t| t.eq_ignore_ascii_case(token))
    };
    match r.status {
        // 21.4.6: a 405 MUST carry Allow.
        405 if !has("Allow", "INVITE") => return Err(format!("405 without Allow: {}", r.text)),
        // 8.2.3: a 415 lists what is accepted.
        415 if !has("Accept", "application/sdp") => {
            return Err(format!("415 without Accept: application/sdp: {}", r.text))
        }
        _ => {}
    }
    match name {
        "bext01" => {
            // 8.2.2.3: Unsupported lists the Require tokens not understood.
            for t in ["nothingSupportsThis", "nothingSupportsThisEither"] {
                if !has("Unsupported", t) {
                    return Err(format!("Unsupported lacks {t}: {}", r.text));
                }
            }
            // Proxy-Require is for proxies (20.29); a UAS does not act on it.
            for t in ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"] {
                if has("Unsupported", t) {
                    return Err(format!(
                        "a UAS listed the Proxy-Require token {t} in Unsupported: {}",
                        r.text
                    ));
                }
            }
        }
        "dblreq" if r.header("CSeq").iter().any(|c| c.contains("INVITE")) => {
            return Err(format!(
                "answered the INVITE after Content-Length: {}",
                r.text
            ))
        }
        _ => {}
    }
    Ok(())
}

fn find(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
}

/// One message to a gateway of its own: the owed answer, then OPTIONS works.
fn one(name: &str) {
    let c = find(name);
    let mut gw = Gateway::start();
    let got = exchange(&gw, &torture(name));
    if let Err(e) = judge(c, &got) {
        panic!("{} (RFC 4475 {}): {}\n{e}", c.name, c.section, c.why);
    }
    assert_answers_options(&mut gw, name);
    gw.stop();
}

macro_rules! torture_tests {
    ($($(#[$attr:meta])* $name:ident)*) => {
        #[test]
        fn table_lists_every_message_once() {
            let names = [$(stringify!($name)),*];
            assert_eq!(names.len(), CASES.len());
            for n in names {
                assert_eq!(CASES.iter().filter(|c| c.name == n).count(), 1, "{n}");
            }
            let mut files: Vec<String> = std::fs::read_dir(repo().join("gateway/tests/data/rfc4475"))
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|f| f.strip_suffix(".dat").map(str::to_string))
                .collect();
            files.sort();
            let mut listed: Vec<&str> = CASES.iter().map(|c| c.name).collect();
            listed.sort_unstable();
            assert_eq!(files, listed, "a verdict for every data file");
        }

        mod rfc4475 {
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    super::one(stringify!($name));
                }
            )*
        }
    };
}

torture_tests! {
    wsinv intmeth
    esc01
    escnull esc02 lwsdisp
    longreq
    dblreq semiuri transports mpart01
    unreason noreason badinv01 clerr ncl scalar02 scalarlg quotbal ltgtruri lwsruri lwsstart
    trws escruri
    baddate
    regbadct badaspec baddn badvers mismatch01 mismatch02 bigcode
    badbranch
    insuf
    unkscm novelsc unksm2 bext01 invut regaut01 multi01 mcl01 bcast zeromf
    cparam01 cparam02 regescrt sdp01 inv2543
}

/// Messages that, sent after an earlier one to the same gateway, belong to its
/// server transaction: same branch, sent-by and method (RFC 3261 17.2.3; the
/// RFC 4475 authors reused z9hG4bKkdjuw and friends). The gateway rightly
/// treats them as retransmissions and re-sends the first one's response to
/// where that one came from, so the second sender hears nothing.
const SAME_TRANSACTION_AS: &[(&str, &str)] = &[
    ("novelsc", "unkscm"),
    ("cparam02", "cparam01"),
    ("regescrt", "escnull"),
];

/// What sending all 49 in a row to one gateway gave.
struct Sequence {
    table: Vec<String>,
    silent: Vec<&'static str>,
    wrong: Vec<String>,
    gw: Gateway,
}

/// All 49 to one gateway in a row, checking OPTIONS after each one.
fn send_all_in_a_row() -> Sequence {
    let mut gw = Gateway::start();
    let mut table = Vec::new();
    let mut silent = Vec::new();
    let mut wrong = Vec::new();
    for c in CASES {
        let got = exchange(&gw, &torture(c.name));
        if let Some((_, first)) = SAME_TRANSACTION_AS.iter().find(|(n, _)| *n == c.name) {
            table.push(format!(
                "{:<11} {:<9} {:<6} retransmission of {first} (same branch, sent-by, method): absorbed",
                c.name, c.section, "-"
            ));
            if !got.is_empty() {
                wrong.push(format!(
                    "{}: a retransmission of {first}, answered {}",
                    c.name, got[0].text
                ));
            }
            silent.push(c.name);
            assert_answers_options(&mut gw, c.name);
            continue;
        }
        let answer = got
            .iter()
            .find(|r| r.is_final())
            .map(|r| r.status.to_string())
            .unwrap_or_else(|| "-".into());
        if got.is_empty() {
            silent.push(c.name);
        }
        let verdict = judge(c, &got);
        table.push(format!(
            "{:<11} {:<9} {:<6} {}{}",
            c.name,
            c.section,
            answer,
            if verdict.is_ok() { "" } else { "MISMATCH: " },
            c.why
        ));
        if let Err(e) = verdict {
            wrong.push(format!("{}: {e}", c.name));
        }
        assert_answers_options(&mut gw, c.name);
    }
    eprintln!("message     section   answer why\n{}", table.join("\n"));
    Sequence {
        table,
        silent,
        wrong,
        gw,
    }
}

/// The messages that must get no answer: responses, and the three that are
/// retransmissions of an earlier message when sent in a row.
fn owed_silence() -> Vec<&'static str> {
    CASES
        .iter()
        .filter(|c| {
            matches!(c.owed, Silent) || SAME_TRANSACTION_AS.iter().any(|(n, _)| *n == c.name)
        })
        .map(|c| c.name)
        .collect()
}

/// The gateway survives the whole set in a row (OPTIONS answered after every
/// message) and answers none of the messages that must go unanswered.
#[test]
fn all_messages_in_a_row_gateway_stays_up() {
    let Sequence { silent, mut gw, .. } = send_all_in_a_row();
    assert!(gw.alive());
    let owed = owed_silence();
    let answered: Vec<&&str> = owed.iter().filter(|n| !silent.contains(n)).collect();
    assert!(
        answered.is_empty(),
        "answered what it must not: {answered:?}"
    );
    // The malformed-but-answerable requests (400/505 from the parser) counted.
    let malformed = gw.wait_metric(
        "hotline_sip_rx_malformed_answered_total",
        Duration::from_secs(2),
        |v| v >= 15.0,
    );
    assert!(
        malformed.unwrap_or(0.0) >= 15.0,
        "malformed answered: {malformed:?}"
    );
    gw.stop();
}

/// All 49 in a row: exactly the messages that must go unanswered are
/// silent, and every answer matches the table.
#[test]
fn all_messages_in_a_row_to_one_gateway() {
    let Sequence {
        table,
        silent,
        wrong,
        mut gw,
    } = send_all_in_a_row();
    assert_eq!(
        silent,
        owed_silence(),
        "unanswered messages\n{}",
        table.join("\n")
    );
    gw.stop();
    assert!(
        wrong.is_empty(),
        "answers that differ from the table:\n{}",
        wrong.join("\n")
    );
}

/// A UAS acts on Require, not on Proxy-Require (RFC 3261 8.2.2.3, 20.29):
/// an OPTIONS whose only unknown extension is for proxies gets 200.
#[test]
fn proxy_require_is_for_proxies() {
    let mut gw = Gateway::start();
    let sock = fresh_socket(5060);
    let msg = "OPTIONS sip:12345@example.com SIP/2.0\r\n\
               Via: SIP/2.0/UDP pbx.example.com;branch=z9hG4bK-proxyreq-1\r\n\
               Max-Forwards: 70\r\n\
               From: <sip:pbx@example.com>;tag=pr1\r\n\
               To: <sip:12345@example.com>\r\n\
               Call-ID: proxy-require-1@example.com\r\n\
               CSeq: 1 OPTIONS\r\n\
               Proxy-Require: noProxiesSupportThis\r\n\
               Content-Length: 0\r\n\r\n";
    sock.send_to(msg.as_bytes(), gw.udp).unwrap();
    let got = replies(&sock, Duration::from_millis(500), Duration::from_millis(50));
    let r = got.iter().find(|r| r.is_final()).expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text);
    gw.stop();
}

// ---------------------------------------------------------------------------
// Random and mutated datagrams.
// ---------------------------------------------------------------------------

/// xorshift64*: small, seeded, the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPECIAL: &[u8] = b"\0\r\n \t:;,<>\"%=@/\\?";

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.below(6) {
        let len = m.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                m[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                m[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(40);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                m.splice(i..i, junk);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(60)).min(len);
                m.drain(i..j);
            }
            4 if len > 0 => {
                m.truncate(rng.below(len));
            }
            5 => {
                // Duplicate a line (a second Via, CSeq, Content-Length...).
                let lines: Vec<&[u8]> = base.split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())].to_vec();
                let i = rng.below(m.len() + 1);
                m.splice(i..i, line.into_iter().chain([b'\n']));
            }
            6 => {
                // A numeric field blown up.
                let digits = b"99999999999999999999";
                let i = rng.below(len + 1);
                m.splice(
                    i..i,
                    digits[..1 + rng.below(digits.len() - 1)].iter().copied(),
                );
            }
            _ => {
                let i = rng.below(len + 1);
                m.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
            }
        }
    }
    m
}

const VALID_OPTIONS: &str = "OPTIONS sip:12345@127.0.0.1 SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-fuzz-1\r\n\
    Max-Forwards: 70\r\n\
    From: \"PBX\" <sip:pbx@192.0.2.9>;tag=f1\r\n\
    To: <sip:12345@127.0.0.1>\r\n\
    Call-ID: fuzz-1@192.0.2.9\r\n\
    CSeq: 1 OPTIONS\r\n\
    Accept: application/sdp\r\n\
    Content-Length: 0\r\n\r\n";

/// A plain INVITE with a G.711 offer, its Content-Length computed.
fn valid_invite(transport: &str) -> Vec<u8> {
    let body = "v=0\r\n\
        o=- 1 1 IN IP4 192.0.2.9\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.9\r\n\
        t=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\n";
    format!(
        "INVITE sip:12345@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 192.0.2.9:5060;branch=z9hG4bK-fuzz-2;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:13800138000@192.0.2.9>;tag=f2\r\n\
         To: <sip:12345@127.0.0.1>\r\n\
         Call-ID: fuzz-2@192.0.2.9\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:13800138000@192.0.2.9:5060>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn random_and_mutated_datagrams_then_oversized() {
    let mut gw = Gateway::start();
    let mut corpus: Vec<Vec<u8>> = CASES.iter().map(|c| torture(c.name)).collect();
    corpus.push(VALID_OPTIONS.as_bytes().to_vec());
    corpus.push(valid_invite("UDP"));
    let mut rng = Rng(0x5EED_4475_C0FF_EE01);
    // Replies go to 127.x.y.z addresses only this socket uses; it is never
    // read, and the kernel drops what does not fit its buffer.
    let sink = fresh_socket(5060);
    const N: usize = 4000;
    for i in 0..N {
        let msg = if rng.below(10) == 0 {
            let n = rng.below(1500);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let base = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &base)
        };
        sink.send_to(&msg, gw.udp).unwrap();
        if i % 50 == 49 {
            assert_answers_options(&mut gw, &format!("mutated datagram {i}"));
        }
    }
    let received = gw
        .wait_metric(
            "hotline_sip_rx_messages_total",
            Duration::from_secs(2),
            |v| v >= N as f64 * 0.9,
        )
        .unwrap_or(0.0);
    assert!(
        received >= N as f64 * 0.9,
        "the gateway saw {received} of {N}"
    );

    // The largest datagram IPv4 carries (65,507 bytes; a 70 KB one cannot be
    // sent over UDP): a well-formed OPTIONS padded with a long header. It is
    // over the gateway's 64 KiB message limit, so dropped or answered 513;
    // either way the gateway keeps serving.
    let sock = fresh_socket(5060);
    let head = VALID_OPTIONS.replace("Content-Length: 0\r\n\r\n", "");
    let pad = 65_507 - head.len() - "X-Pad: \r\nContent-Length: 0\r\n\r\n".len();
    let big = format!(
        "{head}X-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(pad)
    );
    assert_eq!(big.len(), 65_507);
    sock.send_to(big.as_bytes(), gw.udp)
        .expect("65507-byte datagram");
    let got = replies(&sock, Duration::from_millis(500), Duration::from_millis(50));
    assert!(
        got.iter().all(|r| r.status == 513),
        "oversized OPTIONS: {:?}",
        got.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_answers_options(&mut gw, "a 65,507-byte datagram");

    // 70 KB over TCP: the stream is closed or answered 513, nothing else.
    let mut tcp = TcpStream::connect(gw.tcp).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let big = format!(
        "{}X-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        head.replace("UDP", "TCP"),
        "b".repeat(70_000)
    );
    let _ = tcp.write_all(big.as_bytes());
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("SIP/2.0 513"),
        "70 KB over TCP answered: {answer:.200}"
    );
    assert_answers_options(&mut gw, "a 70 KB message over TCP");
    assert!(gw.alive());
    gw.stop();
}

// ---------------------------------------------------------------------------
// TCP framing.
// ---------------------------------------------------------------------------

/// Reads whole SIP messages off a stream (Content-Length framing) until `n`
/// final responses have come, or 5 s pass.
fn read_finals(s: &mut TcpStream, n: usize) -> Vec<Reply> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<Reply> = Vec::new();
    let mut chunk = [0u8; 8192];
    while out.iter().filter(|r| r.is_final()).count() < n {
        // Cut complete messages off the front.
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let cl: usize = head
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length") || k.trim() == "l")
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + cl {
                break;
            }
            let msg: Vec<u8> = buf.drain(..end + 4 + cl).collect();
            out.push(Reply::parse(&msg).expect("a SIP response on the stream"));
        }
        if out.iter().filter(|r| r.is_final()).count() >= n {
            break;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "only {:?} within 5 s",
            out.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        s.set_read_timeout(Some(deadline - now)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "stream closed after {:?}",
                out.iter().map(|r| r.status).collect::<Vec<_>>()
            ),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => panic!(
                "read: {e} after {:?}",
                out.iter().map(|r| r.status).collect::<Vec<_>>()
            ),
        }
    }
    out
}

fn finals(replies: &[Reply]) -> Vec<(u16, String)> {
    replies
        .iter()
        .filter(|r| r.is_final())
        .map(|r| (r.status, r.header("CSeq").join(",")))
        .collect()
}

fn cseq_of(name: &str) -> String {
    let text = String::from_utf8_lossy(&torture(name)).into_owned();
    text.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("cseq"))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap()
}

#[test]
fn tcp_two_messages_in_one_write() {
    let mut gw = Gateway::start();
    for (a, b, codes) in [
        ("lwsdisp", "escnull", (200, 405)),
        ("intmeth", "bext01", (501, 420)),
        ("semiuri", "invut", (200, 415)),
    ] {
        let mut s = TcpStream::connect(gw.tcp).unwrap();
        s.set_nodelay(true).unwrap();
        let mut both = torture(a);
        both.extend_from_slice(&torture(b));
        s.write_all(&both).unwrap();
        let got = finals(&read_finals(&mut s, 2));
        assert_eq!(
            got,
            vec![(codes.0, cseq_of(a)), (codes.1, cseq_of(b))],
            "{a} + {b} in one write"
        );
    }
    assert_answers_options(&mut gw, "pipelined TCP messages");
    gw.stop();
}

#[test]
fn tcp_message_split_in_three_writes() {
    let mut gw = Gateway::start();
    let invite = valid_invite("TCP");
    for (name, code) in [
        ("invite", 200),
        ("invut", 415),
        ("bext01", 420),
        ("lwsdisp", 200),
    ] {
        let msg = if name == "invite" {
            invite.clone()
        } else {
            torture(name)
        };
        // Cut inside the request line, inside the blank line that ends the
        // head (or just before it), and in the body when there is one.
        let blank = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let cuts = [7, blank + 2, (blank + 4 + msg.len()) / 2];
        let mut s = TcpStream::connect(gw.tcp).unwrap();
        s.set_nodelay(true).unwrap();
        let mut at = 0;
        for cut in cuts.into_iter().chain([msg.len()]) {
            let cut = cut.clamp(at, msg.len());
            s.write_all(&msg[at..cut]).unwrap();
            at = cut;
            // Apart in time, so the gateway reads them as separate segments.
            std::thread::sleep(Duration::from_millis(30));
        }
        let got = finals(&read_finals(&mut s, 1));
        let cseq = if name == "invite" {
            "1 INVITE".to_string()
        } else {
            cseq_of(name)
        };
        assert_eq!(got, vec![(code, cseq)], "{name} in three writes");
    }
    assert_answers_options(&mut gw, "split TCP messages");
    gw.stop();
}

/// RFC 4475 3.3.15 (sdp01) with an SDP body the gateway can parse: the UAC's
/// Accept leaves out application/sdp, so a 2xx carrying the SDP answer would
/// break it. RFC 3261 21.4.7: 406 Not Acceptable; RFC 4475 also allows 400.
#[test]
fn invite_whose_accept_excludes_sdp() {
    let mut gw = Gateway::start();
    let invite = String::from_utf8(valid_invite("UDP")).unwrap().replace(
        "CSeq: 1 INVITE\r\n",
        "CSeq: 1 INVITE\r\nAccept: text/nobodyKnowsThis\r\n",
    );
    let sock = fresh_socket(5060);
    sock.send_to(invite.as_bytes(), gw.udp).unwrap();
    let got = replies(&sock, Duration::from_millis(500), Duration::from_millis(50));
    let r = got.iter().find(|r| r.is_final()).expect("a final response");
    assert!([406, 400].contains(&r.status), "{}", r.text);
    gw.stop();
}
