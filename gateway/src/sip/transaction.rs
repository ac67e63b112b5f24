//! The four RFC 3261 §17 transaction machines, sans-IO.
//!
//! Each machine is fed the time explicitly and answers with actions; the
//! endpoint owns the table that maps messages to machines and the socket
//! that carries the bytes. Timer names follow RFC 3261 Table 4; the INVITE
//! server and client machines include RFC 6026's Accepted state so that
//! retransmitted INVITEs and 2xx responses are absorbed rather than
//! mistaken for new requests.

use std::time::{Duration, Instant};

use super::message::{Method, Request, Response};

/// T1, T2, T4 of RFC 3261 §17.1.1.1 (defaults 500 ms, 4 s, 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: timers B, F, H, J, L, M.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a machine asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put these bytes on the wire towards the transaction's peer.
    Send(Vec<u8>),
    /// Client transactions: a response for the transaction user.
    Response(Response),
    /// Timer B/F/H fired: the peer never answered (or never ACKed).
    Timeout,
    /// The machine is done and may be removed.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// A one-shot timer with its current interval (for doubling).
#[derive(Debug, Clone, Copy)]
struct Timer {
    at: Instant,
    interval: Duration,
}

impl Timer {
    fn new(now: Instant, interval: Duration) -> Self {
        Timer {
            at: now + interval,
            interval,
        }
    }

    fn due(t: &Option<Timer>, now: Instant) -> bool {
        t.is_some_and(|t| t.at <= now)
    }
}

fn earliest(timers: &[Option<Timer>]) -> Option<Instant> {
    timers.iter().flatten().map(|t| t.at).min()
}

/// Server INVITE transaction (RFC 3261 17.2.1 with RFC 6026 Accepted).
#[derive(Debug)]
pub struct InviteServer {
    state: State,
    reliable: bool,
    timers: Timers,
    last_response: Option<Vec<u8>>,
    /// G: retransmit the non-2xx final.
    timer_g: Option<Timer>,
    /// H: give up waiting for ACK.
    timer_h: Option<Timer>,
    /// I: absorb ACK retransmissions; L: absorb INVITE retransmissions after 2xx.
    timer_end: Option<Timer>,
}

impl InviteServer {
    pub fn new(reliable: bool, timers: Timers) -> Self {
        InviteServer {
            state: State::Proceeding,
            reliable,
            timers,
            last_response: None,
            timer_g: None,
            timer_h: None,
            timer_end: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// True once a final response has been handed to this transaction.
    pub fn is_final(&self) -> bool {
        !matches!(self.state, State::Proceeding)
    }

    /// The TU sends a response through the transaction.
    pub fn respond(&mut self, status: u16, bytes: Vec<u8>, now: Instant) -> Vec<Action> {
        if self.state != State::Proceeding {
            return Vec::new();
        }
        let out = vec![Action::Send(bytes.clone())];
        match status {
            100..=199 => {}
            200..=299 => {
                self.state = State::Accepted;
                self.timer_end = Some(Timer::new(now, self.timers.t64()));
            }
            _ => {
                self.state = State::Completed;
                if !self.reliable {
                    self.timer_g = Some(Timer::new(now, self.timers.t1));
                }
                self.timer_h = Some(Timer::new(now, self.timers.t64()));
            }
        }
        self.last_response = Some(bytes);
        out
    }

    /// A retransmission of the INVITE arrived.
    pub fn on_invite_retransmit(&mut self) -> Vec<Action> {
        match self.state {
            State::Proceeding | State::Completed => self
                .last_response
                .clone()
                .map(Action::Send)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// An ACK matched this transaction (only non-2xx finals are ACKed here).
    pub fn on_ack(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Completed {
            return Vec::new();
        }
        self.state = State::Confirmed;
        self.timer_g = None;
        self.timer_h = None;
        if self.reliable {
            return self.terminate();
        }
        self.timer_end = Some(Timer::new(now, self.timers.t4));
        Vec::new()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g, self.timer_h, self.timer_end])
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if Timer::due(&self.timer_h, now) {
            out.push(Action::Timeout);
            out.extend(self.terminate());
            return out;
        }
        if Timer::due(&self.timer_end, now) {
            return self.terminate();
        }
        if let Some(g) = self.timer_g.filter(|g| g.at <= now) {
            if let Some(bytes) = &self.last_response {
                out.push(Action::Send(bytes.clone()));
            }
            let interval = (g.interval * 2).min(self.timers.t2);
            self.timer_g = Some(Timer::new(now, interval));
        }
        out
    }

    fn terminate(&mut self) -> Vec<Action> {
        self.state = State::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_end = None;
        vec![Action::Terminated]
    }
}

/// Server non-INVITE transaction (RFC 3261 17.2.2).
#[derive(Debug)]
pub struct NonInviteServer {
    state: State,
    reliable: bool,
    timers: Timers,
    last_response: Option<Vec<u8>>,
    timer_j: Option<Timer>,
}

impl NonInviteServer {
    pub fn new(reliable: bool, timers: Timers) -> Self {
        NonInviteServer {
            state: State::Trying,
            reliable,
            timers,
            last_response: None,
            timer_j: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn respond(&mut self, status: u16, bytes: Vec<u8>, now: Instant) -> Vec<Action> {
        if matches!(self.state, State::Completed | State::Terminated) {
            return Vec::new();
        }
        let out = vec![Action::Send(bytes.clone())];
        self.last_response = Some(bytes);
        if status < 200 {
            self.state = State::Proceeding;
            return out;
        }
        self.state = State::Completed;
        if self.reliable {
            let mut out = out;
            self.state = State::Terminated;
            out.push(Action::Terminated);
            return out;
        }
        self.timer_j = Some(Timer::new(now, self.timers.t64()));
        out
    }

    pub fn on_retransmit(&mut self) -> Vec<Action> {
        match self.state {
            State::Proceeding | State::Completed => self
                .last_response
                .clone()
                .map(Action::Send)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_j])
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        if Timer::due(&self.timer_j, now) {
            self.state = State::Terminated;
            self.timer_j = None;
            return vec![Action::Terminated];
        }
        Vec::new()
    }
}

/// Client INVITE transaction (RFC 3261 17.1.1 with RFC 6026 Accepted).
#[derive(Debug)]
pub struct InviteClient {
    state: State,
    reliable: bool,
    timers: Timers,
    request: Request,
    request_bytes: Vec<u8>,
    ack_bytes: Option<Vec<u8>>,
    timer_a: Option<Timer>,
    timer_b: Option<Timer>,
    /// D (Completed) or M (Accepted).
    timer_end: Option<Timer>,
}

impl InviteClient {
    /// Returns the machine and the first transmission.
    pub fn start(
        request: Request,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let bytes = super::Message::Request(request.clone()).to_bytes();
        let tx = InviteClient {
            state: State::Calling,
            reliable,
            timers,
            request,
            request_bytes: bytes.clone(),
            ack_bytes: None,
            timer_a: (!reliable).then(|| Timer::new(now, timers.t1)),
            timer_b: Some(Timer::new(now, timers.t64())),
            timer_end: None,
        };
        (tx, vec![Action::Send(bytes)])
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn on_response(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        let status = resp.status;
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.timer_a = None;
                vec![Action::Response(resp)]
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_end = Some(Timer::new(now, self.timers.t64()));
                vec![Action::Response(resp)]
            }
            // 2xx retransmissions and forked 2xx still go to the TU, which
            // owns the ACK for them (RFC 6026 7.2).
            (State::Accepted, 200..=299) => vec![Action::Response(resp)],
            (State::Calling | State::Proceeding, _) => {
                self.state = State::Completed;
                self.timer_a = None;
                self.timer_b = None;
                let ack = super::Message::Request(ack_for_failure(&self.request, &resp)).to_bytes();
                self.ack_bytes = Some(ack.clone());
                let mut out = vec![Action::Send(ack), Action::Response(resp)];
                if self.reliable {
                    self.state = State::Terminated;
                    out.push(Action::Terminated);
                } else {
                    self.timer_end = Some(Timer::new(now, Duration::from_secs(32)));
                }
                out
            }
            (State::Completed, 300..) => self
                .ack_bytes
                .clone()
                .map(Action::Send)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a, self.timer_b, self.timer_end])
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        if Timer::due(&self.timer_b, now) {
            self.state = State::Terminated;
            self.timer_a = None;
            self.timer_b = None;
            return vec![Action::Timeout, Action::Terminated];
        }
        if Timer::due(&self.timer_end, now) {
            self.state = State::Terminated;
            self.timer_end = None;
            return vec![Action::Terminated];
        }
        if let Some(a) = self.timer_a.filter(|a| a.at <= now) {
            // Timer A doubles without the T2 cap (RFC 3261 17.1.1.2).
            self.timer_a = Some(Timer::new(now, a.interval * 2));
            return vec![Action::Send(self.request_bytes.clone())];
        }
        Vec::new()
    }
}

/// Client non-INVITE transaction (RFC 3261 17.1.2).
#[derive(Debug)]
pub struct NonInviteClient {
    state: State,
    reliable: bool,
    timers: Timers,
    request_bytes: Vec<u8>,
    timer_e: Option<Timer>,
    timer_f: Option<Timer>,
    timer_k: Option<Timer>,
}

impl NonInviteClient {
    pub fn start(
        request: &Request,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let bytes = super::Message::Request(request.clone()).to_bytes();
        let tx = NonInviteClient {
            state: State::Trying,
            reliable,
            timers,
            request_bytes: bytes.clone(),
            timer_e: (!reliable).then(|| Timer::new(now, timers.t1)),
            timer_f: Some(Timer::new(now, timers.t64())),
            timer_k: None,
        };
        (tx, vec![Action::Send(bytes)])
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn on_response(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        match self.state {
            State::Trying | State::Proceeding if resp.status < 200 => {
                self.state = State::Proceeding;
                vec![Action::Response(resp)]
            }
            State::Trying | State::Proceeding => {
                self.timer_e = None;
                self.timer_f = None;
                let mut out = vec![Action::Response(resp)];
                if self.reliable {
                    self.state = State::Terminated;
                    out.push(Action::Terminated);
                } else {
                    self.state = State::Completed;
                    self.timer_k = Some(Timer::new(now, self.timers.t4));
                }
                out
            }
            _ => Vec::new(),
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e, self.timer_f, self.timer_k])
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        if Timer::due(&self.timer_f, now) {
            self.state = State::Terminated;
            self.timer_e = None;
            self.timer_f = None;
            return vec![Action::Timeout, Action::Terminated];
        }
        if Timer::due(&self.timer_k, now) {
            self.state = State::Terminated;
            self.timer_k = None;
            return vec![Action::Terminated];
        }
        if let Some(e) = self.timer_e.filter(|e| e.at <= now) {
            // In Proceeding the interval is pinned to T2 (17.1.2.2).
            let interval = if self.state == State::Proceeding {
                self.timers.t2
            } else {
                (e.interval * 2).min(self.timers.t2)
            };
            self.timer_e = Some(Timer::new(now, interval));
            return vec![Action::Send(self.request_bytes.clone())];
        }
        Vec::new()
    }
}

/// The ACK a client INVITE transaction sends for a non-2xx final
/// (RFC 3261 17.1.1.3): same Request-URI, Call-ID, From, CSeq number and
/// top Via as the INVITE, To from the response, the INVITE's Route set.
pub fn ack_for_failure(invite: &Request, resp: &Response) -> Request {
    let mut headers = super::Headers::new();
    if let Some(via) = invite.headers.get_all("Via").next() {
        // The first Via line may carry several comma-separated values; only
        // the topmost one belongs in the ACK.
        let top = super::parse::split_list(via)
            .and_then(|v| v.first().map(|s| s.to_string()))
            .unwrap_or_else(|| via.to_string());
        headers.push("Via", top);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            headers.push(name, v);
        }
    }
    if let Some(v) = resp.headers.get("To") {
        headers.push("To", v);
    }
    let seq = invite
        .headers
        .cseq()
        .ok()
        .flatten()
        .map(|c| c.seq)
        .unwrap_or(1);
    headers.push("CSeq", format!("{seq} ACK"));
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        version: invite.version.clone(),
        headers,
        body: Vec::new(),
    }
}

/// The key RFC 3261 17.2.3 matches server transactions on. ACK maps to
/// INVITE so it finds the INVITE transaction it acknowledges; CANCEL keeps
/// its own method so it gets its own transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// RFC 3261 branch (magic cookie `z9hG4bK`).
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 peers: no usable branch, so match on dialog-ish fields.
    Legacy {
        call_id: String,
        cseq: u32,
        from_tag: String,
        via: String,
        method: Method,
    },
}

pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl ServerKey {
    /// `None` when the request lacks what any key needs (Via, CSeq).
    pub fn for_request(req: &Request) -> Option<ServerKey> {
        let method = match &req.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let via = req.headers.via().ok()?.into_iter().next()?;
        if let Some(branch) = via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            return Some(ServerKey::Branch {
                branch: branch.to_string(),
                sent_by: format!(
                    "{}:{}",
                    via.host.to_ascii_lowercase(),
                    via.port.unwrap_or(0)
                ),
                method,
            });
        }
        let cseq = req.headers.cseq().ok()??;
        let from_tag = req
            .headers
            .from()
            .ok()
            .flatten()
            .and_then(|f| f.tag().map(str::to_string))
            .unwrap_or_default();
        Some(ServerKey::Legacy {
            call_id: req.headers.call_id()?.to_string(),
            cseq: cseq.seq,
            from_tag,
            via: format!(
                "{}:{};{}",
                via.host,
                via.port.unwrap_or(0),
                via.branch().unwrap_or("")
            ),
            method,
        })
    }

    /// The INVITE transaction a CANCEL with this key targets.
    pub fn as_invite(&self) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Branch { method, .. } | ServerKey::Legacy { method, .. } => {
                *method = Method::Invite
            }
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn sends(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Send(_)))
            .count()
    }

    /// Drives a machine's timers from `start` until `until`, firing each
    /// one exactly when it is due, and returns the instants of each send.
    fn run_timers<F, N>(start: Instant, until: Instant, mut next: N, mut fire: F) -> Vec<Duration>
    where
        N: FnMut() -> Option<Instant>,
        F: FnMut(Instant) -> Vec<Action>,
    {
        let mut sent = Vec::new();
        while let Some(at) = next() {
            if at > until {
                break;
            }
            for a in fire(at) {
                if matches!(a, Action::Send(_)) {
                    sent.push(at - start);
                }
            }
        }
        sent
    }

    #[test]
    fn ist_retransmits_failure_with_g_doubling_to_t2_until_h() {
        let now = t0();
        let mut tx = InviteServer::new(false, Timers::default());
        assert_eq!(sends(&tx.respond(486, b"486".to_vec(), now)), 1);
        let cell = std::cell::RefCell::new(tx);
        let sent = run_timers(
            now,
            now + Duration::from_secs(40),
            || cell.borrow().next_timeout(),
            |at| cell.borrow_mut().on_timeout(at),
        );
        let tx = cell.into_inner();
        let ms: Vec<u128> = sent.iter().map(|d| d.as_millis()).collect();
        // G: 0.5, 1.5, 3.5, 7.5, 11.5, ... every 4 s until H at 32 s.
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert!(ms.iter().all(|&m| m < 32_000));
        assert_eq!(tx.state(), State::Terminated);
    }

    #[test]
    fn ist_timer_h_reports_timeout() {
        let now = t0();
        let mut tx = InviteServer::new(true, Timers::default());
        tx.respond(500, b"500".to_vec(), now);
        assert_eq!(tx.next_timeout(), Some(now + Duration::from_secs(32)));
        let out = tx.on_timeout(now + Duration::from_secs(32));
        assert_eq!(out, vec![Action::Timeout, Action::Terminated]);
    }

    #[test]
    fn ist_ack_confirms_then_timer_i_absorbs() {
        let now = t0();
        let mut tx = InviteServer::new(false, Timers::default());
        tx.respond(487, b"487".to_vec(), now);
        assert!(tx.on_ack(now + Duration::from_millis(100)).is_empty());
        assert_eq!(tx.state(), State::Confirmed);
        // Retransmitted INVITE in Confirmed is absorbed.
        assert!(tx.on_invite_retransmit().is_empty());
        assert_eq!(
            tx.next_timeout(),
            Some(now + Duration::from_millis(100) + Duration::from_secs(5))
        );
        let out = tx.on_timeout(now + Duration::from_secs(6));
        assert_eq!(out, vec![Action::Terminated]);
    }

    #[test]
    fn ist_resends_provisional_and_final_on_invite_retransmit() {
        let now = t0();
        let mut tx = InviteServer::new(false, Timers::default());
        tx.respond(100, b"100".to_vec(), now);
        assert_eq!(
            tx.on_invite_retransmit(),
            vec![Action::Send(b"100".to_vec())]
        );
        tx.respond(200, b"200".to_vec(), now);
        assert_eq!(tx.state(), State::Accepted);
        // After a 2xx the UAS core retransmits; the transaction absorbs.
        assert!(tx.on_invite_retransmit().is_empty());
        assert_eq!(
            tx.on_timeout(now + Duration::from_secs(32)),
            vec![Action::Terminated]
        );
    }

    #[test]
    fn nist_completes_and_absorbs_for_timer_j() {
        let now = t0();
        let mut tx = NonInviteServer::new(false, Timers::default());
        assert!(tx.on_retransmit().is_empty()); // Trying: absorbed
        tx.respond(200, b"200".to_vec(), now);
        assert_eq!(tx.on_retransmit(), vec![Action::Send(b"200".to_vec())]);
        assert_eq!(tx.next_timeout(), Some(now + Duration::from_secs(32)));
        assert_eq!(
            tx.on_timeout(now + Duration::from_secs(32)),
            vec![Action::Terminated]
        );
        let mut tcp = NonInviteServer::new(true, Timers::default());
        let out = tcp.respond(200, b"200".to_vec(), now);
        assert_eq!(out.last(), Some(&Action::Terminated));
    }

    fn request(method: &str) -> Request {
        let text = format!(
            "{method} sip:bob@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\n\
Call-ID: c1\r\nCSeq: 7 {method}\r\nRoute: <sip:p1.example;lr>\r\nContent-Length: 0\r\n\r\n"
        );
        match super::super::parse(text.as_bytes()) {
            Ok(super::super::Message::Request(r)) => r,
            other => panic!("test request did not parse: {other:?}"),
        }
    }

    fn response(status: u16, method: &str) -> Response {
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKabc\r\n\
From: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>;tag=2\r\n\
Call-ID: c1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match super::super::parse(text.as_bytes()) {
            Ok(super::super::Message::Response(r)) => r,
            other => panic!("test response did not parse: {other:?}"),
        }
    }

    #[test]
    fn nict_timer_e_doubles_to_t2_and_f_times_out() {
        let now = t0();
        let (tx, first) = NonInviteClient::start(&request("BYE"), false, Timers::default(), now);
        assert_eq!(sends(&first), 1);
        let cell = std::cell::RefCell::new(tx);
        let sent = run_timers(
            now,
            now + Duration::from_secs(40),
            || cell.borrow().next_timeout(),
            |at| cell.borrow_mut().on_timeout(at),
        );
        let ms: Vec<u128> = sent.iter().map(|d| d.as_millis()).collect();
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(cell.borrow().state(), State::Terminated);
    }

    #[test]
    fn nict_final_response_stops_retransmission() {
        let now = t0();
        let (mut tx, _) = NonInviteClient::start(&request("BYE"), false, Timers::default(), now);
        let out = tx.on_response(response(200, "BYE"), now + Duration::from_millis(10));
        assert!(matches!(out.as_slice(), [Action::Response(r)] if r.status == 200));
        assert_eq!(tx.state(), State::Completed);
        // Only timer K (T4) remains; no more sends.
        let out = tx.on_timeout(now + Duration::from_secs(6));
        assert_eq!(out, vec![Action::Terminated]);
    }

    #[test]
    fn ict_acks_failure_and_reacks_retransmissions() {
        let now = t0();
        let (mut tx, _) = InviteClient::start(request("INVITE"), false, Timers::default(), now);
        assert_eq!(tx.next_timeout(), Some(now + Duration::from_millis(500)));
        let out = tx.on_response(response(486, "INVITE"), now);
        let ack = match &out[0] {
            Action::Send(b) => String::from_utf8_lossy(b).to_string(),
            other => panic!("expected ACK, got {other:?}"),
        };
        assert!(ack.starts_with("ACK sip:bob@192.0.2.1 SIP/2.0\r\n"));
        assert!(ack.contains("CSeq: 7 ACK"));
        assert!(ack.contains(";tag=2"));
        assert!(ack.contains("Route: <sip:p1.example;lr>"));
        assert!(ack.contains("branch=z9hG4bKabc"));
        assert_eq!(
            tx.on_response(response(486, "INVITE"), now),
            vec![Action::Send(ack.into_bytes())]
        );
    }

    #[test]
    fn ict_timer_a_doubles_without_cap_and_b_ends() {
        let now = t0();
        let (tx, _) = InviteClient::start(request("INVITE"), false, Timers::default(), now);
        let cell = std::cell::RefCell::new(tx);
        let sent = run_timers(
            now,
            now + Duration::from_secs(40),
            || cell.borrow().next_timeout(),
            |at| cell.borrow_mut().on_timeout(at),
        );
        let ms: Vec<u128> = sent.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(cell.borrow().state(), State::Terminated);
    }

    #[test]
    fn server_keys_match_ack_and_cancel_to_invite() {
        let invite = ServerKey::for_request(&request("INVITE"));
        let ack = ServerKey::for_request(&request("ACK"));
        let cancel = ServerKey::for_request(&request("CANCEL"));
        assert!(invite.is_some());
        assert_eq!(invite, ack);
        assert_ne!(invite, cancel);
        assert_eq!(invite, cancel.map(|c| c.as_invite()));
    }
}
