//! The UAS core: routes messages to transactions, dialogs and calls, and
//! decides every response the gateway owes. Sans-IO: input is bytes with
//! the flow they came on and the time; output is bytes for a flow, events
//! for the call bus, and the next instant it wants to be woken.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use crate::call::{new_call_id, CallEvent, CallId, EndReason, Transport};
use crate::sdp::{self, Answer, LocalMedia, SessionDescription};

use super::auth::{Algorithm, Verdict, Verifier};
use super::dialog::{Dialog, DialogId};
use super::message::{
    accepts_body_type, request_check, unsupported_requires, Headers, Message, Method, Request,
    Response, SIP_VERSION,
};
use super::multipart;
use super::parse::{parse_for_reply, split_list, ParseError};
use super::transaction::{
    Action, InviteClient, InviteServer, NonInviteClient, NonInviteServer, ServerKey, Timers,
    MAGIC_COOKIE,
};

pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
pub const SUPPORTED: &str = "timer";
/// Option tags we implement; any other in Require/Proxy-Require earns 420.
pub use super::message::SUPPORTED_EXTENSIONS as EXTENSIONS;

/// Headers added to an error response.
type Extra = Vec<(&'static str, String)>;
/// Methods we understand but do not serve: 405 with Allow, not 501.
const KNOWN_UNSERVED: &[Method] = &[
    Method::Register,
    Method::Refer,
    Method::Prack,
    Method::Subscribe,
    Method::Notify,
    Method::Message,
    Method::Publish,
];

/// One transport association: for UDP the socket and the peer; for TCP
/// the connection (both ends identify it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Flow {
    fn reliable(&self) -> bool {
        self.transport == Transport::Tcp
    }
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub realm: String,
    pub algorithms: Vec<Algorithm>,
    pub users: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: Timers,
    pub max_calls: usize,
    pub retry_after_s: u32,
    /// (network, prefix length); empty = everyone may call.
    pub allow: Vec<(IpAddr, u8)>,
    pub auth: Option<AuthSettings>,
    pub answer_delay: Duration,
    /// Hang up answered calls after this long (until media lands).
    pub max_call: Option<Duration>,
    pub session_expires: u32,
    pub min_se: u32,
    pub user_agent: String,
    pub public_host: Option<String>,
    /// Bounds the transaction table: beyond it new requests are dropped.
    pub max_transactions: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: Timers::default(),
            max_calls: 1000,
            retry_after_s: 5,
            allow: Vec::new(),
            auth: None,
            answer_delay: Duration::ZERO,
            max_call: None,
            session_expires: 1800,
            min_se: 90,
            user_agent: format!("hotline/{}", env!("CARGO_PKG_VERSION")),
            public_host: None,
            max_transactions: 200_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// For the store and every other consumer of the call bus.
    Call(CallEvent),
    /// A new call passed admission: answer it with `accept` or `reject`.
    Incoming {
        id: CallId,
        /// The address our media should be offered on.
        local_ip: IpAddr,
        offer: Option<SessionDescription>,
    },
    /// Media negotiated or renegotiated (answer, re-INVITE, UPDATE, ACK).
    Media { id: CallId, answer: Answer },
    /// A digit from SIP INFO (application/dtmf-relay or application/dtmf).
    Dtmf {
        id: CallId,
        digit: char,
        duration_ms: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit { flow: Flow, bytes: Vec<u8> },
    Event(Box<Event>),
}

/// What was received and what became of it; the driver exports these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx_messages: u64,
    pub rx_malformed_answered: u64,
    pub rx_malformed_dropped: u64,
    pub rx_unmatched_ack: u64,
    pub rx_unmatched_response: u64,
    pub rx_retransmissions: u64,
    pub tx_retransmissions: u64,
    pub dropped_overload: u64,
    pub rejected_forbidden: u64,
    pub auth_challenges: u64,
    pub calls_started: u64,
    pub calls_answered: u64,
    pub calls_busy: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Waiting for the application's accept/reject.
    Incoming,
    /// 180 sent; 200 goes out at `answer_at`.
    Ringing,
    Answered,
}

/// A 2xx to an INVITE that we keep sending until its ACK (13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    cseq: u32,
    bytes: Vec<u8>,
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
    /// Late offer: the ACK must carry the answer to this offer.
    offer: Option<LocalMedia>,
}

#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    expires: u32,
    we_refresh: bool,
    deadline: Instant,
}

#[derive(Debug)]
struct Call {
    id: CallId,
    dialog: Dialog,
    flow: Flow,
    state: CallState,
    invite: Request,
    invite_key: ServerKey,
    host: String,
    local_media: Option<LocalMedia>,
    last_local_sdp: Option<String>,
    answer_at: Option<Instant>,
    hangup_at: Option<Instant>,
    pending_2xx: Option<Pending2xx>,
    session: Option<SessionTimer>,
    /// Peer's Allow, to pick UPDATE or re-INVITE for session refresh.
    peer_allows_update: bool,
    refresh_in_flight: bool,
}

impl Call {
    fn next_timeout(&self) -> Option<Instant> {
        let pending = self
            .pending_2xx
            .as_ref()
            .map(|p| p.next.map_or(p.give_up, |n| n.min(p.give_up)));
        [
            self.answer_at,
            self.hangup_at,
            pending,
            self.session.map(|s| s.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

struct ServerEntry {
    tx: ServerTx,
    flow: Flow,
    key: ServerKey,
}

enum ClientTx {
    Invite(Box<InviteClient>),
    NonInvite(NonInviteClient),
}

struct ClientEntry {
    tx: ClientTx,
    key: (String, Method),
    flow: Flow,
    call: Option<CallId>,
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerRef {
    Server(u64),
    Client(u64),
    Call(u64),
}

pub struct Endpoint {
    cfg: EndpointConfig,
    verifier: Option<Verifier>,
    epoch: Instant,
    epoch_wall: SystemTime,
    rng: u64,
    // Transactions and calls live in slabs keyed by a local serial so the
    // timer heap can refer to them without borrowing.
    serial: u64,
    server_keys: HashMap<ServerKey, u64>,
    servers: HashMap<u64, ServerEntry>,
    client_keys: HashMap<(String, Method), u64>,
    clients: HashMap<u64, ClientEntry>,
    calls: HashMap<u64, Call>,
    call_serials: HashMap<CallId, u64>,
    dialogs: HashMap<DialogId, u64>,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    outputs: VecDeque<Output>,
    stats: Stats,
    shutting_down: bool,
}

fn status_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// The response a parse failure earns; a 400 says what was wrong, since
/// the PBX operator reading a trace has nothing else to go on.
fn error_status(e: &ParseError) -> (u16, String) {
    match e.response() {
        (400, _) => (400, format!("Bad Request ({e})")),
        (code, reason) => (code, reason.to_string()),
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ip = match (ip, net) {
        (IpAddr::V6(v6), IpAddr::V4(_)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => return false,
        },
        _ => ip,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `host` for a Via/Contact, bracketing IPv6 literals.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses a SIP INFO dtmf body: `Signal=5\r\nDuration=160` (dtmf-relay)
/// or a bare digit (application/dtmf).
pub fn parse_dtmf_body(content_type: &str, body: &[u8]) -> Option<(char, Option<u32>)> {
    let text = std::str::from_utf8(body).ok()?;
    let valid = |c: char| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D');
    if content_type.eq_ignore_ascii_case("application/dtmf") {
        let c = text.trim().chars().next()?.to_ascii_uppercase();
        return valid(c).then_some((c, None));
    }
    let mut digit = None;
    let mut duration = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => {
                let v = v.trim();
                digit = match v {
                    "10" => Some('*'),
                    "11" => Some('#'),
                    _ => v.chars().next().map(|c| c.to_ascii_uppercase()),
                };
            }
            "duration" => duration = v.trim().parse().ok(),
            _ => {}
        }
    }
    digit.filter(|c| valid(*c)).map(|d| (d, duration))
}

/// The SDP a request carries: `Ok(None)` when there is none (late offer),
/// `Err` when there is one that does not parse (400).
fn sdp_of(req: &Request) -> Result<Option<SessionDescription>, ()> {
    let Some(body) = multipart::sdp_body(req.headers.content_type(), &req.body) else {
        return Ok(None);
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(body).map_err(|_| ())?;
    SessionDescription::parse(text).map(Some).map_err(|_| ())
}

/// Sends a timer produced: each is a retransmission.
fn sends(actions: &[Action]) -> u64 {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_)))
        .count() as u64
}

/// The media type of a Content-Type value, lower-cased, without params.
fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl Endpoint {
    /// `seed` feeds tags, branches and the digest secret; give it OS
    /// randomness in production and a constant in tests.
    pub fn new(cfg: EndpointConfig, now: Instant, wall: SystemTime, seed: [u8; 32]) -> Self {
        let verifier = cfg
            .auth
            .as_ref()
            .map(|a| Verifier::new(a.realm.clone(), a.algorithms.clone(), seed));
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for chunk in seed.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            rng ^= u64::from_le_bytes(b).rotate_left(17);
        }
        Endpoint {
            cfg,
            verifier,
            epoch: now,
            epoch_wall: wall,
            rng,
            serial: 0,
            server_keys: HashMap::new(),
            servers: HashMap::new(),
            client_keys: HashMap::new(),
            clients: HashMap::new(),
            calls: HashMap::new(),
            call_serials: HashMap::new(),
            dialogs: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            shutting_down: false,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transactions(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// Requests we sent that are still waiting for an answer (BYEs on
    /// shutdown): what a draining gateway waits for.
    pub fn client_transactions(&self) -> usize {
        use super::transaction::State;
        self.clients
            .values()
            .filter(|c| match &c.tx {
                ClientTx::Invite(t) => matches!(t.state(), State::Calling | State::Proceeding),
                ClientTx::NonInvite(t) => matches!(t.state(), State::Trying | State::Proceeding),
            })
            .count()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.epoch_wall + now.saturating_duration_since(self.epoch)
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64: tags and branches need uniqueness, not secrecy.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn new_tag(&mut self) -> String {
        format!("{:016x}", self.next_rand())
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn emit(&mut self, ev: Event) {
        self.outputs.push_back(Output::Event(Box::new(ev)));
    }

    fn send(&mut self, flow: Flow, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit { flow, bytes });
    }

    fn arm(&mut self, at: Option<Instant>, r: TimerRef) {
        if let Some(at) = at {
            self.timers.push(Reverse((at, r)));
        }
    }

    // ------------------------------------------------------------------
    // Input
    // ------------------------------------------------------------------

    /// A datagram, or one framed message from a stream.
    pub fn handle_datagram(&mut self, flow: Flow, bytes: &[u8], now: Instant) {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            // RFC 5626 keep-alive ping: a stream peer gets a pong.
            if flow.reliable() && bytes.windows(4).any(|w| w == b"\r\n\r\n") {
                self.send(flow, b"\r\n".to_vec());
            }
            return;
        }
        self.stats.rx_messages += 1;
        match parse_for_reply(bytes) {
            Ok(msg) => self.handle_message(flow, msg, now),
            Err(f) => {
                let is_ack = f
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("CSeq"))
                    .is_some_and(|c| c.to_ascii_uppercase().contains("ACK"));
                match f.headers {
                    // Via alone is enough to route a 400 back (RFC 4475 3.3.1
                    // insuf has no Call-ID, From or To and still deserves one).
                    Some(h)
                        if f.is_request
                            && !is_ack
                            && (super::can_reply(&h) || h.via().is_ok_and(|v| !v.is_empty())) =>
                    {
                        let (code, reason) = error_status(&f.error);
                        self.stats.rx_malformed_answered += 1;
                        let resp = self.reply_from_headers(&h, flow, code, &reason, None);
                        self.send(self.reply_flow(&h, flow), resp.to_bytes());
                    }
                    _ => self.stats.rx_malformed_dropped += 1,
                }
            }
        }
    }

    pub fn handle_message(&mut self, flow: Flow, msg: Message, now: Instant) {
        match msg {
            Message::Response(r) => self.on_response(r, now),
            Message::Request(r) => self.on_request(flow, r, now),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, r))) = self.timers.pop() else {
                break;
            };
            match r {
                TimerRef::Server(s) => self.server_timeout(s, now),
                TimerRef::Client(s) => self.client_timeout(s, now),
                TimerRef::Call(s) => self.call_timeout(s, now),
            }
        }
    }

    // ------------------------------------------------------------------
    // Responses we build
    // ------------------------------------------------------------------

    /// RFC 3261 18.2.1: note where the request really came from in the top
    /// Via, so responses (which copy Via) find their way back through NAT.
    fn fixed_top_via(h: &Headers, source: SocketAddr) -> Vec<String> {
        let mut lines: Vec<String> = h.get_all("Via").map(str::to_string).collect();
        let Some(first) = lines.first_mut() else {
            return lines;
        };
        let mut parts: Vec<String> = split_list(first)
            .unwrap_or_else(|| vec![first.as_str()])
            .into_iter()
            .map(str::to_string)
            .collect();
        if let Some(top) = parts.first_mut() {
            if let Some(via) = super::parse::parse_via(top) {
                let mut params: Vec<String> = Vec::new();
                let ip = source.ip().to_string();
                let mut has_received = false;
                for (k, v) in &via.params {
                    if k.eq_ignore_ascii_case("rport") {
                        params.push(format!("rport={}", source.port()));
                    } else if k.eq_ignore_ascii_case("received") {
                        has_received = true;
                        params.push(format!("received={ip}"));
                    } else {
                        params.push(match v {
                            Some(v) => format!("{k}={v}"),
                            None => k.clone(),
                        });
                    }
                }
                let host_differs = via.host.trim_matches(['[', ']']) != ip;
                let wants_rport = via.rport().is_some();
                if !has_received && (host_differs || wants_rport) {
                    params.push(format!("received={ip}"));
                }
                let sent_by = match via.port {
                    Some(p) => host_port(&via.host, p),
                    None => via.host.clone(),
                };
                let mut s = format!(
                    "{}/{}/{} {}",
                    via.protocol_name, via.protocol_version, via.transport, sent_by
                );
                for p in params {
                    s.push(';');
                    s.push_str(&p);
                }
                *top = s;
            }
        }
        *first = parts.join(", ");
        lines
    }

    /// Where a response goes (RFC 3261 18.2.2, RFC 3581 4).
    fn reply_flow(&self, h: &Headers, flow: Flow) -> Flow {
        if flow.reliable() {
            return flow;
        }
        let Some(via) = h.via().ok().and_then(|v| v.into_iter().next()) else {
            return flow;
        };
        if via.rport().is_some() {
            return flow;
        }
        let port = via.port.unwrap_or(5060);
        Flow {
            remote: SocketAddr::new(flow.remote.ip(), port),
            ..flow
        }
    }

    fn reply_from_headers(
        &self,
        h: &Headers,
        flow: Flow,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> Message {
        let mut out = Headers::new();
        for via in Self::fixed_top_via(h, flow.remote) {
            out.push("Via", via);
        }
        if let Some(v) = h.get("From") {
            out.push("From", v);
        }
        if let Some(v) = h.get("To") {
            let has_tag = h.to().ok().flatten().is_some_and(|t| t.tag().is_some());
            match to_tag {
                Some(tag) if !has_tag && status > 100 => out.push("To", format!("{v};tag={tag}")),
                _ => out.push("To", v),
            }
        }
        for name in ["Call-ID", "CSeq"] {
            if let Some(v) = h.get(name) {
                out.push(name, v);
            }
        }
        if status == 100 {
            if let Some(ts) = h.get("Timestamp") {
                out.push("Timestamp", ts);
            }
        }
        out.push("Server", self.cfg.user_agent.clone());
        Message::Response(Response {
            version: SIP_VERSION.to_string(),
            status,
            reason: reason.to_string(),
            headers: out,
            body: Vec::new(),
        })
    }

    fn reply(&self, req: &Request, flow: Flow, status: u16, to_tag: Option<&str>) -> Message {
        self.reply_from_headers(&req.headers, flow, status, status_reason(status), to_tag)
    }

    /// Sends `resp` through the server transaction `serial`.
    fn respond(&mut self, serial: u64, resp: Message, now: Instant) {
        let status = match &resp {
            Message::Response(r) => r.status,
            Message::Request(_) => return,
        };
        let bytes = resp.to_bytes();
        let Some(entry) = self.servers.get_mut(&serial) else {
            return;
        };
        let actions = match &mut entry.tx {
            ServerTx::Invite(t) => t.respond(status, bytes, now),
            ServerTx::NonInvite(t) => t.respond(status, bytes, now),
        };
        self.run_server_actions(serial, actions);
    }

    fn run_server_actions(&mut self, serial: u64, actions: Vec<Action>) {
        let Some(entry) = self.servers.get(&serial) else {
            return;
        };
        let flow = entry.flow;
        let next = match &entry.tx {
            ServerTx::Invite(t) => t.next_timeout(),
            ServerTx::NonInvite(t) => t.next_timeout(),
        };
        let mut terminated = false;
        let mut timed_out = false;
        for a in actions {
            match a {
                Action::Send(b) => self.send(flow, b),
                Action::Terminated => terminated = true,
                Action::Timeout => timed_out = true,
                Action::Response(_) => {}
            }
        }
        if terminated {
            if let Some(e) = self.servers.remove(&serial) {
                if self.server_keys.get(&e.key) == Some(&serial) {
                    self.server_keys.remove(&e.key);
                }
            }
        } else {
            self.arm(next, TimerRef::Server(serial));
        }
        if timed_out {
            // Timer H: a non-2xx final was never ACKed; the call is already
            // over from our side, nothing more to do than let it go.
            tracing::debug!(
                serial,
                "INVITE server transaction timed out waiting for ACK"
            );
        }
    }

    fn server_timeout(&mut self, serial: u64, now: Instant) {
        let Some(entry) = self.servers.get_mut(&serial) else {
            return;
        };
        let (due, actions) = match &mut entry.tx {
            ServerTx::Invite(t) => {
                let due = t.next_timeout().is_some_and(|at| at <= now);
                (due, if due { t.on_timeout(now) } else { Vec::new() })
            }
            ServerTx::NonInvite(t) => {
                let due = t.next_timeout().is_some_and(|at| at <= now);
                (due, if due { t.on_timeout(now) } else { Vec::new() })
            }
        };
        if !due {
            return;
        }
        self.stats.tx_retransmissions += sends(&actions);
        self.run_server_actions(serial, actions);
    }

    // ------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------

    fn on_request(&mut self, flow: Flow, req: Request, now: Instant) {
        let Some(key) = ServerKey::for_request(&req) else {
            if req.method != Method::Ack {
                self.stats.rx_malformed_answered += 1;
                let r = self.reply(&req, flow, 400, None);
                self.send(self.reply_flow(&req.headers, flow), r.to_bytes());
            }
            return;
        };
        let flow = self.reply_flow(&req.headers, flow);

        if req.method == Method::Ack {
            self.on_ack(key, req, now);
            return;
        }
        if let Some(&serial) = self.server_keys.get(&key) {
            self.stats.rx_retransmissions += 1;
            let actions = match self.servers.get_mut(&serial).map(|e| &mut e.tx) {
                Some(ServerTx::Invite(t)) => t.on_invite_retransmit(),
                Some(ServerTx::NonInvite(t)) => t.on_retransmit(),
                None => Vec::new(),
            };
            self.run_server_actions(serial, actions);
            return;
        }
        if self.servers.len() >= self.cfg.max_transactions {
            self.stats.dropped_overload += 1;
            return;
        }
        let serial = self.next_serial();
        let tx = if req.method == Method::Invite {
            ServerTx::Invite(InviteServer::new(flow.reliable(), self.cfg.timers))
        } else {
            ServerTx::NonInvite(NonInviteServer::new(flow.reliable(), self.cfg.timers))
        };
        self.servers.insert(
            serial,
            ServerEntry {
                tx,
                flow,
                key: key.clone(),
            },
        );
        self.server_keys.insert(key.clone(), serial);

        if !self.admitted(flow.remote.ip()) {
            // Only listed trunks may talk to us at all; scanners get a 403
            // (absorbing their retransmissions) and leave no call record.
            self.stats.rejected_forbidden += 1;
            let r = self.reply(&req, flow, 403, None);
            self.respond(serial, r, now);
            return;
        }
        if req.method == Method::Cancel {
            self.on_cancel(serial, &key, &req, flow, now);
            return;
        }
        if let Some((code, reason, extra)) = self.check_request(&req) {
            let mut resp = self.reply_from_headers(&req.headers, flow, code, reason, None);
            for (k, v) in extra {
                resp.headers_mut().push(k, v);
            }
            self.respond(serial, resp, now);
            return;
        }
        let to_tag = req
            .headers
            .to()
            .ok()
            .flatten()
            .and_then(|t| t.tag().map(str::to_string));
        match to_tag {
            Some(tag) => self.in_dialog(serial, key, req, flow, tag, now),
            None => self.out_of_dialog(serial, key, req, flow, now),
        }
    }

    /// RFC 3261 8.2.1-8.2.3 in order: method (405/501), then the
    /// message-level checks of `request_check` (400, 416, 420, 415), then
    /// what each method accepts as a body.
    fn check_request(&self, req: &Request) -> Option<(u16, &'static str, Extra)> {
        if let Method::Other(_) = req.method {
            return Some((501, "Not Implemented", vec![("Allow", ALLOW.into())]));
        }
        if KNOWN_UNSERVED.contains(&req.method) {
            return Some((405, "Method Not Allowed", vec![("Allow", ALLOW.into())]));
        }
        if let Err((code, reason)) = request_check(req) {
            let extra = match code {
                420 => vec![("Unsupported", unsupported_requires(req).join(", "))],
                415 => vec![
                    ("Accept", ACCEPT.into()),
                    ("Accept-Encoding", "identity".into()),
                ],
                _ => Vec::new(),
            };
            return Some((code, reason, extra));
        }
        if !req.body.is_empty() {
            let ct = req
                .headers
                .content_type()
                .map(media_type)
                .unwrap_or_default();
            let ok = match req.method {
                Method::Info => ct == "application/dtmf-relay" || ct == "application/dtmf",
                // SIP-I trunks put SDP next to ISUP in multipart/mixed.
                Method::Invite | Method::Update => {
                    ct == "application/sdp" || ct.starts_with("multipart/")
                }
                _ => true,
            };
            if !ok {
                return Some((
                    415,
                    "Unsupported Media Type",
                    vec![("Accept", ACCEPT.into())],
                ));
            }
        }
        None
    }

    fn out_of_dialog(
        &mut self,
        serial: u64,
        key: ServerKey,
        req: Request,
        flow: Flow,
        now: Instant,
    ) {
        match req.method {
            Method::Invite => self.on_invite(serial, key, req, flow, now),
            Method::Options => {
                // Load balancers probe with OPTIONS: a draining gateway says 503.
                let status = if self.shutting_down { 503 } else { 200 };
                let tag = self.new_tag();
                let mut r = self.reply(&req, flow, status, Some(&tag));
                let h = r.headers_mut();
                h.push("Allow", ALLOW);
                h.push("Accept", ACCEPT);
                h.push("Supported", SUPPORTED);
                self.respond(serial, r, now);
            }
            _ => {
                let r = self.reply(&req, flow, 481, None);
                self.respond(serial, r, now);
            }
        }
    }

    fn admitted(&self, ip: IpAddr) -> bool {
        self.cfg.allow.is_empty() || self.cfg.allow.iter().any(|(n, l)| in_prefix(ip, *n, *l))
    }

    fn now_ms(&self, now: Instant) -> u64 {
        self.wall(now)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn on_invite(&mut self, serial: u64, key: ServerKey, req: Request, flow: Flow, now: Instant) {
        // Answer 100 at once: the PBX stops retransmitting (17.2.1).
        let trying = self.reply(&req, flow, 100, None);
        self.respond(serial, trying, now);

        if let (Some(v), Some(auth)) = (&self.verifier, &self.cfg.auth) {
            let now_ms = self.now_ms(now);
            let creds: Vec<&str> = req
                .headers
                .get_all("Authorization")
                .chain(req.headers.get_all("Proxy-Authorization"))
                .collect();
            let verdict = v.verify(creds.into_iter(), req.method.as_str(), now_ms, |u| {
                auth.users.get(u).cloned()
            });
            match verdict {
                Verdict::Ok { .. } => {}
                Verdict::Challenge { stale } => {
                    self.stats.auth_challenges += 1;
                    let challenges = v.challenges(now_ms, stale);
                    let tag = self.new_tag();
                    let mut r = self.reply(&req, flow, 401, Some(&tag));
                    for c in challenges {
                        r.headers_mut().push("WWW-Authenticate", c);
                    }
                    self.respond(serial, r, now);
                    return;
                }
                Verdict::Forbidden => {
                    self.stats.rejected_forbidden += 1;
                    let r = self.reply(&req, flow, 403, None);
                    self.respond(serial, r, now);
                    return;
                }
            }
        }

        let id = new_call_id();
        let from = req.headers.get("From").unwrap_or("").to_string();
        let to = req
            .headers
            .to()
            .ok()
            .flatten()
            .map(|t| t.uri.user.clone().unwrap_or_else(|| t.uri.raw.clone()))
            .unwrap_or_default();
        self.stats.calls_started += 1;
        self.emit(Event::Call(CallEvent::Started {
            id: id.clone(),
            sip_call_id: req.headers.call_id().unwrap_or("").to_string(),
            from,
            to,
            source: flow.remote,
            transport: flow.transport,
            at: self.wall(now),
        }));
        let reject = |ep: &mut Self, code: u16, extra: Vec<(&'static str, String)>| {
            let tag = ep.new_tag();
            let mut r = ep.reply(&req, flow, code, Some(&tag));
            for (k, v) in extra {
                r.headers_mut().push(k, v);
            }
            ep.respond(serial, r, now);
            let at = ep.wall(now);
            ep.emit(Event::Call(CallEvent::Ended {
                id: id.clone(),
                at,
                reason: EndReason::Rejected(code),
            }));
        };
        if self.shutting_down {
            self.stats.calls_busy += 1;
            reject(
                self,
                503,
                vec![("Retry-After", self.cfg.retry_after_s.to_string())],
            );
            return;
        }
        if self.calls.len() >= self.cfg.max_calls {
            self.stats.calls_busy += 1;
            reject(
                self,
                503,
                vec![("Retry-After", self.cfg.retry_after_s.to_string())],
            );
            return;
        }
        if !accepts_body_type(&req, "application/sdp") {
            // Our answer (or late-offer offer) is SDP; a UAC that cannot take
            // it gets 406 (RFC 3261 21.4.7, RFC 4475 sdp01).
            reject(self, 406, vec![("Accept", "application/sdp".into())]);
            return;
        }
        let offer = match sdp_of(&req) {
            Ok(o) => o,
            Err(()) => {
                reject(self, 400, Vec::new());
                return;
            }
        };
        let session = match self.session_request(&req) {
            Ok(s) => s,
            Err(min_se) => {
                reject(self, 422, vec![("Min-SE", min_se.to_string())]);
                return;
            }
        };
        let host = self.local_host(&req, flow);
        let tag = self.new_tag();
        let contact = self.contact(&host, flow);
        let dialog = match Dialog::from_invite(&req, &tag, contact) {
            Ok(d) => d,
            Err(_) => {
                reject(self, 400, Vec::new());
                return;
            }
        };
        let local_ip = host
            .trim_matches(['[', ']'])
            .parse()
            .unwrap_or(flow.local.ip());
        let peer_allows_update = req
            .headers
            .values("Allow")
            .unwrap_or_default()
            .iter()
            .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"));
        let call_serial = self.next_serial();
        self.dialogs.insert(dialog.id.clone(), call_serial);
        self.call_serials.insert(id.clone(), call_serial);
        let expires_at = session.map(|(se, we_refresh)| SessionTimer {
            expires: se,
            we_refresh,
            deadline: now, // set on answer
        });
        self.calls.insert(
            call_serial,
            Call {
                id: id.clone(),
                dialog,
                flow,
                state: CallState::Incoming,
                invite: req,
                invite_key: key,
                host,
                local_media: None,
                last_local_sdp: None,
                answer_at: None,
                hangup_at: None,
                pending_2xx: None,
                session: expires_at,
                peer_allows_update,
                refresh_in_flight: false,
            },
        );
        self.emit(Event::Incoming {
            id,
            local_ip,
            offer,
        });
    }

    /// RFC 4028: `Ok(None)` no timer, `Ok(Some((interval, we_refresh)))`,
    /// `Err(min_se)` when the interval is too small (422).
    fn session_request(&self, req: &Request) -> Result<Option<(u32, bool)>, u32> {
        // `x` is Session-Expires' compact form (RFC 4028 4).
        let Some(se) = req
            .headers
            .get("Session-Expires")
            .or_else(|| req.headers.get("x"))
        else {
            return Ok(None);
        };
        let mut parts = se.split(';');
        let interval: u32 = match parts.next().and_then(|v| v.trim().parse().ok()) {
            Some(v) => v,
            None => return Ok(None),
        };
        if interval < self.cfg.min_se {
            return Err(self.cfg.min_se);
        }
        let interval = interval.min(self.cfg.session_expires.max(self.cfg.min_se));
        let refresher = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
            .map(|(_, v)| v.trim().to_ascii_lowercase());
        let uac_supports = req
            .headers
            .values("Supported")
            .unwrap_or_default()
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case("timer"));
        // The UAC refreshes when it asked to, or did not say and supports it
        // (RFC 4028 9); otherwise the duty is ours.
        let we_refresh = match refresher.as_deref() {
            Some("uas") => true,
            Some("uac") => false,
            _ => !uac_supports,
        };
        Ok(Some((interval, we_refresh)))
    }

    fn local_host(&self, req: &Request, flow: Flow) -> String {
        if let Some(h) = &self.cfg.public_host {
            return h.clone();
        }
        if !flow.local.ip().is_unspecified() {
            return flow.local.ip().to_string();
        }
        // Bound to a wildcard: the PBX addressed us by the Request-URI host.
        let host = req.uri.host.trim_matches(['[', ']']);
        if host.parse::<IpAddr>().is_ok() {
            return host.to_string();
        }
        match flow.remote.ip() {
            IpAddr::V4(_) => "127.0.0.1".into(),
            IpAddr::V6(_) => "::1".into(),
        }
    }

    fn contact(&self, host: &str, flow: Flow) -> String {
        let hp = host_port(host, flow.local.port());
        match flow.transport {
            Transport::Udp => format!("<sip:hotline@{hp}>"),
            Transport::Tcp => format!("<sip:hotline@{hp};transport=tcp>"),
        }
    }

    fn call_by_id(&self, id: &str) -> Option<u64> {
        self.call_serials.get(id).copied()
    }

    /// Answers an `Event::Incoming` call with our media.
    pub fn accept(&mut self, id: &str, mut media: LocalMedia, now: Instant) {
        let Some(cs) = self.call_by_id(id) else {
            return;
        };
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        if call.state != CallState::Incoming {
            return;
        }
        let offer = sdp_of(&call.invite).ok().flatten();
        let (body, late) = match offer {
            Some(offer) => match sdp::negotiate(&offer, &media) {
                Ok(answer) => {
                    let body = answer.sdp.to_string();
                    self.emit(Event::Media {
                        id: id.to_string(),
                        answer,
                    });
                    (body, false)
                }
                Err(e) => {
                    let warn = format!("305 {} \"{e}\"", self.cfg.user_agent);
                    self.reject_with(cs, 488, vec![("Warning", warn)], now);
                    return;
                }
            },
            None => {
                media.version = media.version.max(1);
                (sdp::offer(&media).to_string(), true)
            }
        };
        if let Some(call) = self.calls.get_mut(&cs) {
            call.local_media = Some(media);
            call.last_local_sdp = Some(body.clone());
            if late {
                call.pending_2xx = None;
            }
        }
        if self.cfg.answer_delay.is_zero() {
            self.send_invite_ok(cs, body, late, now);
        } else {
            self.send_ringing(cs, now);
            if let Some(call) = self.calls.get_mut(&cs) {
                call.state = CallState::Ringing;
                call.answer_at = Some(now + self.cfg.answer_delay);
            }
            self.arm(Some(now + self.cfg.answer_delay), TimerRef::Call(cs));
        }
    }

    /// Rejects an `Event::Incoming` call (e.g. no media port free).
    pub fn reject(&mut self, id: &str, status: u16, now: Instant) {
        if let Some(cs) = self.call_by_id(id) {
            self.reject_with(cs, status, Vec::new(), now);
        }
    }

    fn reject_with(
        &mut self,
        cs: u64,
        status: u16,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) {
        self.finish_unanswered(cs, status, EndReason::Rejected(status), extra, now);
    }

    /// Sends the final non-2xx to a call's INVITE and ends the call.
    fn finish_unanswered(
        &mut self,
        cs: u64,
        status: u16,
        reason: EndReason,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        if call.state == CallState::Answered {
            return;
        }
        let mut r = self.reply(
            &call.invite,
            call.flow,
            status,
            Some(&call.dialog.id.local_tag),
        );
        for (k, v) in extra {
            r.headers_mut().push(k, v);
        }
        if let Some(&serial) = self.server_keys.get(&call.invite_key) {
            self.respond(serial, r, now);
        }
        self.end_call(cs, reason, now);
    }

    fn send_ringing(&mut self, cs: u64, now: Instant) {
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        let mut r = self.reply(
            &call.invite,
            call.flow,
            180,
            Some(&call.dialog.id.local_tag),
        );
        r.headers_mut()
            .push("Contact", call.dialog.local_contact.clone());
        if let Some(&serial) = self.server_keys.get(&call.invite_key) {
            self.respond(serial, r, now);
        }
    }

    /// The 2xx headers shared by INVITE, re-INVITE and UPDATE answers.
    fn ok_headers(&self, call: &Call, r: &mut Message, with_body: bool) {
        let h = r.headers_mut();
        h.push("Contact", call.dialog.local_contact.clone());
        h.push("Allow", ALLOW);
        h.push("Supported", SUPPORTED);
        if let Some(s) = call.session {
            let who = if s.we_refresh { "uas" } else { "uac" };
            h.push("Session-Expires", format!("{};refresher={who}", s.expires));
            if !s.we_refresh {
                h.push("Require", "timer");
            }
        }
        if with_body {
            h.push("Content-Type", "application/sdp");
        }
    }

    fn send_invite_ok(&mut self, cs: u64, body: String, late: bool, now: Instant) {
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        let mut r = self.reply(
            &call.invite,
            call.flow,
            200,
            Some(&call.dialog.id.local_tag),
        );
        self.ok_headers(call, &mut r, true);
        if let Message::Response(resp) = &mut r {
            resp.body = body.into_bytes();
        }
        let bytes = r.to_bytes();
        let invite_key = call.invite_key.clone();
        let reliable = call.flow.reliable();
        let cseq = call.dialog.remote_seq;
        let id = call.id.clone();
        if let Some(&serial) = self.server_keys.get(&invite_key) {
            self.respond(serial, r, now);
        }
        let t = self.cfg.timers;
        let max_call = self.cfg.max_call;
        if let Some(call) = self.calls.get_mut(&cs) {
            call.state = CallState::Answered;
            call.answer_at = None;
            call.pending_2xx = Some(Pending2xx {
                cseq,
                bytes,
                next: (!reliable).then(|| now + t.t1),
                interval: t.t1,
                give_up: now + t.t64(),
                offer: if late { call.local_media.clone() } else { None },
            });
            call.hangup_at = max_call.map(|d| now + d);
            if let Some(s) = &mut call.session {
                s.deadline = session_deadline(s, now);
            }
        }
        self.stats.calls_answered += 1;
        let at = self.wall(now);
        self.emit(Event::Call(CallEvent::Answered { id, at }));
        self.rearm_call(cs);
    }

    fn rearm_call(&mut self, cs: u64) {
        let next = self.calls.get(&cs).and_then(Call::next_timeout);
        self.arm(next, TimerRef::Call(cs));
    }

    fn on_cancel(&mut self, serial: u64, key: &ServerKey, req: &Request, flow: Flow, now: Instant) {
        let invite_serial = self.server_keys.get(&key.as_invite()).copied();
        let pending = invite_serial.and_then(|s| match self.servers.get(&s).map(|e| &e.tx) {
            Some(ServerTx::Invite(t)) => Some(!t.is_final()),
            _ => None,
        });
        let Some(pending) = pending else {
            let r = self.reply(req, flow, 481, None);
            self.respond(serial, r, now);
            return;
        };
        let tag = self
            .calls
            .values()
            .find(|c| Some(&c.invite_key) == Some(&key.as_invite()))
            .map(|c| c.dialog.id.local_tag.clone());
        let ok = self.reply(req, flow, 200, tag.as_deref());
        self.respond(serial, ok, now);
        if !pending {
            return;
        }
        let cs = self
            .calls
            .iter()
            .find(|(_, c)| c.invite_key == key.as_invite())
            .map(|(s, _)| *s);
        if let Some(cs) = cs {
            self.finish_unanswered(cs, 487, EndReason::Cancel, Vec::new(), now);
        }
    }

    fn serial_call_id(&self, cs: u64) -> Option<CallId> {
        self.calls.get(&cs).map(|c| c.id.clone())
    }

    fn on_ack(&mut self, key: ServerKey, req: Request, now: Instant) {
        // ACK for a non-2xx final: absorbed by its INVITE transaction.
        if let Some(&serial) = self.server_keys.get(&key) {
            let is_non2xx = matches!(
                self.servers.get(&serial).map(|e| &e.tx),
                Some(ServerTx::Invite(t)) if t.state() == super::transaction::State::Completed
                    || t.state() == super::transaction::State::Confirmed
            );
            if is_non2xx {
                let actions = match self.servers.get_mut(&serial).map(|e| &mut e.tx) {
                    Some(ServerTx::Invite(t)) => t.on_ack(now),
                    _ => Vec::new(),
                };
                self.run_server_actions(serial, actions);
                return;
            }
        }
        // ACK for a 2xx: a request of the dialog.
        let Some(cs) = self.dialog_of(&req) else {
            self.stats.rx_unmatched_ack += 1;
            return;
        };
        let seq = req.headers.cseq().ok().flatten().map(|c| c.seq);
        let Some(call) = self.calls.get_mut(&cs) else {
            return;
        };
        let Some(p) = call.pending_2xx.as_ref() else {
            return; // retransmitted ACK
        };
        if Some(p.cseq) != seq {
            self.stats.rx_unmatched_ack += 1;
            return;
        }
        let offer = call.pending_2xx.take().and_then(|p| p.offer);
        let id = call.id.clone();
        if let Some(local) = offer {
            // Late offer: the ACK carries the answer (RFC 3261 13.2.1).
            let answer = sdp_of(&req)
                .ok()
                .flatten()
                .and_then(|sdp| sdp::negotiate(&sdp, &local).ok());
            match answer {
                Some(answer) => self.emit(Event::Media { id, answer }),
                None => {
                    // The call was answered (200), so this is our hang-up, not
                    // a rejection; the log says why.
                    tracing::info!(call = %id, "ACK without a usable SDP answer to our offer; hanging up");
                    self.hangup_serial(cs, EndReason::GatewayBye, now);
                    return;
                }
            }
        }
        self.rearm_call(cs);
    }

    fn dialog_of(&self, req: &Request) -> Option<u64> {
        let call_id = req.headers.call_id()?;
        let local_tag = req.headers.to().ok()??.tag()?.to_string();
        let remote_tag = req.headers.from().ok()??.tag()?.to_string();
        self.dialogs
            .get(&DialogId {
                call_id: call_id.to_string(),
                local_tag,
                remote_tag,
            })
            .copied()
    }

    fn in_dialog(
        &mut self,
        serial: u64,
        _key: ServerKey,
        req: Request,
        flow: Flow,
        _tag: String,
        now: Instant,
    ) {
        let Some(cs) = self.dialog_of(&req) else {
            let r = self.reply(&req, flow, 481, None);
            self.respond(serial, r, now);
            return;
        };
        let seq = req
            .headers
            .cseq()
            .ok()
            .flatten()
            .map(|c| c.seq)
            .unwrap_or(0);
        let in_order = self
            .calls
            .get_mut(&cs)
            .is_some_and(|c| c.dialog.accept_remote_seq(seq));
        if !in_order {
            let r = self.reply(&req, flow, 500, None);
            self.respond(serial, r, now);
            return;
        }
        match req.method {
            Method::Bye => {
                let r = self.reply(&req, flow, 200, None);
                self.respond(serial, r, now);
                let early = self
                    .calls
                    .get(&cs)
                    .is_some_and(|c| c.state != CallState::Answered);
                if early {
                    // BYE in an early dialog also ends the INVITE (15.1.2).
                    self.finish_unanswered(cs, 487, EndReason::CallerBye, Vec::new(), now);
                } else {
                    self.end_call(cs, EndReason::CallerBye, now);
                }
            }
            Method::Options => {
                let mut r = self.reply(&req, flow, 200, None);
                r.headers_mut().push("Allow", ALLOW);
                r.headers_mut().push("Accept", ACCEPT);
                r.headers_mut().push("Supported", SUPPORTED);
                self.respond(serial, r, now);
            }
            Method::Info => {
                let ct = req
                    .headers
                    .content_type()
                    .map(media_type)
                    .unwrap_or_default();
                let digit = parse_dtmf_body(&ct, &req.body);
                let status = if req.body.is_empty() || digit.is_some() {
                    200
                } else {
                    400
                };
                let r = self.reply(&req, flow, status, None);
                self.respond(serial, r, now);
                if let (Some((digit, duration_ms)), Some(id)) = (digit, self.serial_call_id(cs)) {
                    self.emit(Event::Dtmf {
                        id,
                        digit,
                        duration_ms,
                    });
                }
            }
            Method::Invite | Method::Update => self.on_modify(serial, cs, req, flow, now),
            _ => {
                let mut r = self.reply(&req, flow, 405, None);
                r.headers_mut().push("Allow", ALLOW);
                self.respond(serial, r, now);
            }
        }
    }

    /// re-INVITE or UPDATE: hold/resume, codec change, session refresh.
    fn on_modify(&mut self, serial: u64, cs: u64, req: Request, flow: Flow, now: Instant) {
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        let is_invite = req.method == Method::Invite;
        if call.state != CallState::Answered && is_invite {
            let r = self.reply(&req, flow, 491, None);
            self.respond(serial, r, now);
            return;
        }
        if is_invite && call.pending_2xx.is_some() {
            // The previous INVITE's ACK is outstanding (14.2: 500 + Retry-After).
            let mut r = self.reply(&req, flow, 500, None);
            r.headers_mut().push("Retry-After", "1");
            self.respond(serial, r, now);
            return;
        }
        if call.refresh_in_flight && is_invite {
            let r = self.reply(&req, flow, 491, None);
            self.respond(serial, r, now);
            return;
        }
        let Some(mut local) = call.local_media.clone() else {
            let r = self.reply(&req, flow, 500, None);
            self.respond(serial, r, now);
            return;
        };
        let offer = match sdp_of(&req) {
            Ok(o) => o,
            Err(()) => {
                let r = self.reply(&req, flow, 400, None);
                self.respond(serial, r, now);
                return;
            }
        };
        let session = match self.session_request(&req) {
            Ok(s) => s,
            Err(min_se) => {
                let mut r = self.reply(&req, flow, 422, None);
                r.headers_mut().push("Min-SE", min_se.to_string());
                self.respond(serial, r, now);
                return;
            }
        };
        let (body, late) = match &offer {
            Some(o) => {
                let prev = call.last_local_sdp.clone();
                let mut answer = match sdp::negotiate(o, &local) {
                    Ok(a) => a,
                    Err(e) => {
                        let mut r = self.reply(&req, flow, 488, None);
                        r.headers_mut()
                            .push("Warning", format!("305 {} \"{e}\"", self.cfg.user_agent));
                        self.respond(serial, r, now);
                        return;
                    }
                };
                if prev.as_deref() != Some(answer.sdp.to_string().as_str()) {
                    // A changed answer needs a new o= version (RFC 3264 8).
                    local.version += 1;
                    if let Ok(a) = sdp::negotiate(o, &local) {
                        answer = a;
                    }
                }
                let body = answer.sdp.to_string();
                let id = call.id.clone();
                self.emit(Event::Media { id, answer });
                (Some(body), false)
            }
            None if is_invite => (Some(sdp::offer(&local).to_string()), true),
            None => (None, false),
        };
        let Some(call) = self.calls.get_mut(&cs) else {
            return;
        };
        call.dialog.refresh_target(&req);
        call.local_media = Some(local.clone());
        if let Some(b) = &body {
            call.last_local_sdp = Some(b.clone());
        }
        if let Some((se, we_refresh)) = session {
            call.session = Some(SessionTimer {
                expires: se,
                we_refresh,
                deadline: now,
            });
        }
        if let Some(s) = &mut call.session {
            s.deadline = session_deadline(s, now);
        }
        let mut r = self.reply(&req, flow, 200, None);
        if let Some(call) = self.calls.get(&cs) {
            self.ok_headers(call, &mut r, body.is_some());
        }
        if let (Some(b), Message::Response(resp)) = (body, &mut r) {
            resp.body = b.into_bytes();
        }
        if is_invite {
            let bytes = r.to_bytes();
            let t = self.cfg.timers;
            let seq = req
                .headers
                .cseq()
                .ok()
                .flatten()
                .map(|c| c.seq)
                .unwrap_or(0);
            if let Some(call) = self.calls.get_mut(&cs) {
                call.pending_2xx = Some(Pending2xx {
                    cseq: seq,
                    bytes,
                    next: (!flow.reliable()).then(|| now + t.t1),
                    interval: t.t1,
                    give_up: now + t.t64(),
                    offer: if late { Some(local) } else { None },
                });
            }
        }
        self.respond(serial, r, now);
        self.rearm_call(cs);
    }

    // ------------------------------------------------------------------
    // Call timers and hang-up
    // ------------------------------------------------------------------

    fn call_timeout(&mut self, cs: u64, now: Instant) {
        let Some(call) = self.calls.get_mut(&cs) else {
            return;
        };
        if call.answer_at.is_some_and(|at| at <= now) && call.state == CallState::Ringing {
            call.answer_at = None;
            let body = call.last_local_sdp.clone().unwrap_or_default();
            let late = !matches!(sdp_of(&call.invite), Ok(Some(_)));
            self.send_invite_ok(cs, body, late, now);
            return;
        }
        let Some(call) = self.calls.get_mut(&cs) else {
            return;
        };
        let mut resend = None;
        let mut ack_timeout = false;
        if let Some(p) = &mut call.pending_2xx {
            if p.give_up <= now {
                ack_timeout = true;
            } else if p.next.is_some_and(|n| n <= now) {
                resend = Some(p.bytes.clone());
                p.interval = (p.interval * 2).min(self.cfg.timers.t2);
                p.next = Some(now + p.interval);
            }
        }
        let flow = call.flow;
        if ack_timeout {
            call.pending_2xx = None;
            tracing::info!(call = %call.id, "no ACK for 2xx within 64*T1; hanging up");
            self.hangup_serial(cs, EndReason::Timeout, now);
            return;
        }
        if let Some(b) = resend {
            self.stats.tx_retransmissions += 1;
            self.send(flow, b);
        }
        let Some(call) = self.calls.get_mut(&cs) else {
            return;
        };
        if call.hangup_at.is_some_and(|at| at <= now) {
            call.hangup_at = None;
            self.hangup_serial(cs, EndReason::GatewayBye, now);
            return;
        }
        if let Some(s) = call.session.filter(|s| s.deadline <= now) {
            if s.we_refresh && !call.refresh_in_flight {
                self.send_refresh(cs, now);
            } else {
                tracing::info!(call = %call.id, "session timer expired without refresh");
                self.hangup_serial(cs, EndReason::Timeout, now);
                return;
            }
        }
        self.rearm_call(cs);
    }

    /// Our side of RFC 4028: refresh with UPDATE when the peer allows it
    /// (no offer/answer needed), else with a re-INVITE carrying our SDP.
    fn send_refresh(&mut self, cs: u64, now: Instant) {
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        let method = if call.peer_allows_update {
            Method::Update
        } else {
            Method::Invite
        };
        let body = if method == Method::Invite {
            call.last_local_sdp.clone()
        } else {
            None
        };
        let expires = call
            .session
            .map(|s| s.expires)
            .unwrap_or(self.cfg.session_expires);
        let mut req = self.dialog_request(cs, method.clone());
        let Some(req_ref) = req.as_mut() else {
            return;
        };
        req_ref
            .headers
            .push("Session-Expires", format!("{expires};refresher=uas"));
        req_ref.headers.push("Supported", SUPPORTED);
        if let Some(b) = body {
            req_ref.headers.push("Content-Type", "application/sdp");
            req_ref.body = b.into_bytes();
        }
        if let Some(req) = req {
            if let Some(call) = self.calls.get_mut(&cs) {
                call.refresh_in_flight = true;
                if let Some(s) = &mut call.session {
                    // Until the answer comes, the hard deadline stands.
                    s.deadline = now + Duration::from_secs(u64::from(s.expires) / 2);
                    s.we_refresh = false;
                }
            }
            self.start_client(cs, req, now);
        }
    }

    fn dialog_request(&mut self, cs: u64, method: Method) -> Option<Request> {
        let branch = format!("{MAGIC_COOKIE}{:016x}", self.next_rand());
        let ua = self.cfg.user_agent.clone();
        let call = self.calls.get_mut(&cs)?;
        let proto = match call.flow.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            host_port(&call.host, call.flow.local.port())
        );
        Some(call.dialog.request(method, via, &ua))
    }

    /// Where an in-dialog request goes: the next hop if it names an IP
    /// address, else back along the flow the call came in on (which is
    /// also what crosses the PBX's NAT).
    fn request_flow(&self, cs: u64) -> Option<Flow> {
        let call = self.calls.get(&cs)?;
        let hop = call.dialog.next_hop();
        let ip = hop.host.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        let transport_tcp = hop
            .param("transport")
            .flatten()
            .is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
        match ip {
            Some(ip) if call.flow.transport == Transport::Udp && !transport_tcp => Some(Flow {
                remote: SocketAddr::new(ip, hop.port.unwrap_or(5060)),
                ..call.flow
            }),
            _ => Some(call.flow),
        }
    }

    fn start_client(&mut self, cs: u64, req: Request, now: Instant) {
        let Some(flow) = self.request_flow(cs) else {
            return;
        };
        let branch = req
            .headers
            .via()
            .ok()
            .and_then(|v| v.into_iter().next())
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let method = req.method.clone();
        let (tx, actions) = match method {
            Method::Invite => {
                let (t, a) = InviteClient::start(req, flow.reliable(), self.cfg.timers, now);
                (ClientTx::Invite(Box::new(t)), a)
            }
            _ => {
                let (t, a) = NonInviteClient::start(&req, flow.reliable(), self.cfg.timers, now);
                (ClientTx::NonInvite(t), a)
            }
        };
        let serial = self.next_serial();
        let call = self.calls.get(&cs).map(|c| c.id.clone());
        self.clients.insert(
            serial,
            ClientEntry {
                tx,
                key: (branch.clone(), method.clone()),
                flow,
                call,
                method: method.clone(),
            },
        );
        self.client_keys.insert((branch, method), serial);
        self.run_client_actions(serial, actions, now);
    }

    fn run_client_actions(&mut self, serial: u64, actions: Vec<Action>, now: Instant) {
        let Some(entry) = self.clients.get(&serial) else {
            return;
        };
        let flow = entry.flow;
        let call = entry.call.clone();
        let method = entry.method.clone();
        let next = match &entry.tx {
            ClientTx::Invite(t) => t.next_timeout(),
            ClientTx::NonInvite(t) => t.next_timeout(),
        };
        let mut terminated = false;
        for a in actions {
            match a {
                Action::Send(b) => self.send(flow, b),
                Action::Terminated => terminated = true,
                Action::Timeout => self.client_failed(call.as_deref(), &method, 408, now),
                Action::Response(r) => self.client_response(call.as_deref(), &method, r, now),
            }
        }
        if terminated {
            if let Some(e) = self.clients.remove(&serial) {
                if self.client_keys.get(&e.key) == Some(&serial) {
                    self.client_keys.remove(&e.key);
                }
            }
        } else {
            self.arm(next, TimerRef::Client(serial));
        }
    }

    fn client_timeout(&mut self, serial: u64, now: Instant) {
        let Some(entry) = self.clients.get_mut(&serial) else {
            return;
        };
        let actions = match &mut entry.tx {
            ClientTx::Invite(t) if t.next_timeout().is_some_and(|at| at <= now) => {
                t.on_timeout(now)
            }
            ClientTx::NonInvite(t) if t.next_timeout().is_some_and(|at| at <= now) => {
                t.on_timeout(now)
            }
            _ => return,
        };
        self.stats.tx_retransmissions += sends(&actions);
        self.run_client_actions(serial, actions, now);
    }

    fn on_response(&mut self, resp: Response, now: Instant) {
        let branch = resp
            .headers
            .via()
            .ok()
            .and_then(|v| v.into_iter().next())
            .and_then(|v| v.branch().map(str::to_string));
        let method = resp.headers.cseq().ok().flatten().map(|c| c.method);
        let serial = match (branch, method) {
            (Some(b), Some(m)) => self.client_keys.get(&(b, m)).copied(),
            _ => None,
        };
        let Some(serial) = serial else {
            self.stats.rx_unmatched_response += 1;
            return;
        };
        let Some(entry) = self.clients.get_mut(&serial) else {
            return;
        };
        let actions = match &mut entry.tx {
            ClientTx::Invite(t) => t.on_response(resp, now),
            ClientTx::NonInvite(t) => t.on_response(resp, now),
        };
        self.run_client_actions(serial, actions, now);
    }

    fn client_response(&mut self, call: Option<&str>, method: &Method, r: Response, now: Instant) {
        let Some(cs) = call.and_then(|id| self.call_by_id(id)) else {
            return;
        };
        match r.status {
            100..=199 => {}
            200..=299 => {
                if *method == Method::Invite {
                    // Our refresh re-INVITE was accepted: the ACK is ours
                    // (the TU's, RFC 3261 13.2.2.4), sent outside the transaction.
                    let seq = r.headers.cseq().ok().flatten().map(|c| c.seq).unwrap_or(0);
                    if let Some(mut ack) = self.dialog_request(cs, Method::Ack) {
                        if let Some(call) = self.calls.get_mut(&cs) {
                            call.dialog.local_seq = seq;
                        }
                        ack.headers.remove("CSeq");
                        ack.headers.push("CSeq", format!("{seq} ACK"));
                        if let Some(flow) = self.request_flow(cs) {
                            self.send(flow, Message::Request(ack).to_bytes());
                        }
                    }
                }
                if let Some(call) = self.calls.get_mut(&cs) {
                    if call.refresh_in_flight {
                        call.refresh_in_flight = false;
                        if let Some(s) = &mut call.session {
                            s.we_refresh = true;
                            s.deadline = session_deadline(s, now);
                        }
                    }
                }
                self.rearm_call(cs);
            }
            // 408/481 to an in-dialog request end the dialog (12.2.1.2).
            408 | 481 => self.client_failed(call, method, r.status, now),
            _ => {
                if let Some(call) = self.calls.get_mut(&cs) {
                    call.refresh_in_flight = false;
                }
            }
        }
    }

    fn client_failed(&mut self, call: Option<&str>, method: &Method, status: u16, now: Instant) {
        if *method == Method::Bye {
            return;
        }
        if let Some(cs) = call.and_then(|id| self.call_by_id(id)) {
            tracing::info!(status, %method, "in-dialog request failed; ending the call");
            self.hangup_serial(cs, EndReason::Timeout, now);
        }
    }

    /// Ends an answered call from our side with BYE.
    pub fn hangup(&mut self, id: &str, now: Instant) {
        self.end_call_with(id, EndReason::GatewayBye, now);
    }

    /// Ends a call from our side (BYE if answered, a final response if
    /// not), recording `reason` (e.g. `RtpTimeout` from the media plane).
    pub fn end_call_with(&mut self, id: &str, reason: EndReason, now: Instant) {
        if let Some(cs) = self.call_by_id(id) {
            self.hangup_serial(cs, reason, now);
        }
    }

    fn hangup_serial(&mut self, cs: u64, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.get(&cs) else {
            return;
        };
        if call.state != CallState::Answered {
            let code = match reason {
                EndReason::Shutdown => 503,
                _ => 480,
            };
            self.reject_with(cs, code, Vec::new(), now);
            return;
        }
        if let Some(bye) = self.dialog_request(cs, Method::Bye) {
            self.start_client(cs, bye, now);
        }
        self.end_call(cs, reason, now);
    }

    fn end_call(&mut self, cs: u64, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.remove(&cs) else {
            return;
        };
        self.dialogs.remove(&call.dialog.id);
        self.call_serials.remove(&call.id);
        let at = self.wall(now);
        self.emit(Event::Call(CallEvent::Ended {
            id: call.id,
            at,
            reason,
        }));
    }

    /// Stop taking calls and hang up every call in progress. Keep driving
    /// the endpoint until `transactions()` is 0 (or a grace period) so the
    /// BYEs get their retransmissions.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let serials: Vec<u64> = self.calls.keys().copied().collect();
        for cs in serials {
            self.hangup_serial(cs, EndReason::Shutdown, now);
        }
    }
}

/// When a session timer next needs attention: the refresher acts at half
/// the interval; the other side gives up at interval - min(32, interval/3)
/// (RFC 4028 10).
fn session_deadline(s: &SessionTimer, now: Instant) -> Instant {
    let se = u64::from(s.expires);
    if s.we_refresh {
        now + Duration::from_secs(se / 2)
    } else {
        now + Duration::from_secs(se.saturating_sub((se / 3).min(32)))
    }
}

#[cfg(test)]
mod tests;
