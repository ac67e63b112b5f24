//! One call's media: a tokio task that owns the call's RTP/RTCP sockets and
//! drives the sans-IO cores (RTP session, jitter buffer, DTMF receivers,
//! recorder handle) on a 20 ms tick. It only moves bytes and time; every
//! decision is in those cores. The prompt player is shared with the one
//! pacing thread ([`crate::media::pacer`]) that sends every call's frames.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{CallEvent, CallId, RtpStats};
use crate::codec::Codec;
use crate::dtmf::inband::{InbandConfig, InbandDetector};
use crate::dtmf::rfc4733::{ReceiverConfig, Rfc4733Receiver};
use crate::dtmf::{Digit, DigitDeduper, DigitEvent, DigitSource};
use crate::media::pacer::{self, Outbound, Pacer, PacerHandle, SentFrames, SharedOutbound};
use crate::media::player::{self as player, PlayOptions, Player, PlayerConfig, RtpStart};
use crate::media::prompt_cache::Pcm;
use crate::media::recorder::{Channel, RecordingHandle};
use crate::rtp::jitter::{Concealer, JitterBuffer, JitterConfig, Playout};
use crate::rtp::rtcp::{self, ReceptionStats};
use crate::rtp::session::{Accepted, RtpSession, SessionConfig, Verdict};
use crate::sdp::{Answer, G711};
use crate::transcript::{CallTranscript, Transcriber};

/// Even RTP ports (RTCP on +1) handed out in rotation.
pub struct PortPool {
    lo: u16,
    hi: u16,
    next: u16,
    in_use: HashSet<u16>,
}

/// A call's bound media sockets, before and during the call.
pub struct MediaSockets {
    pub rtp: UdpSocket,
    /// The same RTP socket for the pacing thread, which sends without tokio.
    pub rtp_tx: std::net::UdpSocket,
    pub rtcp: UdpSocket,
    pub port: u16,
}

impl PortPool {
    /// `lo..=hi`, rounded inward to even RTP ports whose RTCP port fits.
    pub fn new(lo: u16, hi: u16) -> Self {
        let lo = lo.saturating_add(lo % 2);
        PortPool {
            lo,
            hi,
            next: lo,
            in_use: HashSet::new(),
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Binds the next free pair on `ip`; ports taken by other processes are
    /// skipped. `None` when the whole range is busy.
    pub fn allocate(&mut self, ip: IpAddr) -> Option<MediaSockets> {
        let span = u32::from(self.hi.saturating_sub(self.lo)) / 2 + 1;
        for _ in 0..span {
            let port = self.next;
            self.next = if u32::from(port) + 3 > u32::from(self.hi) {
                self.lo
            } else {
                port + 2
            };
            if self.in_use.contains(&port) || port.checked_add(1).is_none() {
                continue;
            }
            let (Some((rtp, rtp_tx)), Some((rtcp, _))) = (bind(ip, port), bind(ip, port + 1))
            else {
                continue;
            };
            self.in_use.insert(port);
            return Some(MediaSockets {
                rtp,
                rtp_tx,
                rtcp,
                port,
            });
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}

/// A non-blocking socket for tokio and a clone of it for plain threads.
fn bind(ip: IpAddr, port: u16) -> Option<(UdpSocket, std::net::UdpSocket)> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    s.set_nonblocking(true).ok()?;
    let clone = s.try_clone().ok()?;
    Some((UdpSocket::from_std(s).ok()?, clone))
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Hang up after this long without RTP (not while on hold). Zero = never.
    pub rtp_timeout: Duration,
    pub inband_dtmf: bool,
    pub strict_source: bool,
    pub jitter: JitterConfig,
    /// How often RTCP reports go out (RFC 3550 suggests 5 s).
    pub rtcp_interval: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_timeout: Duration::from_secs(30),
            inband_dtmf: true,
            strict_source: false,
            jitter: JitterConfig::default(),
            rtcp_interval: Duration::from_secs(5),
        }
    }
}

/// Media figures for /metrics: per-call statistics added as each call's
/// media stops, RTCP counted as it arrives.
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    pub lost: AtomicU64,
    pub late: AtomicU64,
    pub duplicate: AtomicU64,
    pub rejected: AtomicU64,
    pub rtcp_received: AtomicU64,
    /// Packets the peers' RTCP reports say they lost of ours (last report per call).
    pub peer_lost: AtomicU64,
    /// Our packets the socket refused (send buffer full).
    pub send_errors: AtomicU64,
}

impl MediaCounters {
    fn add_call(&self, s: &RtpStats, send_errors: u64) {
        let add = |c: &AtomicU64, v: u64| {
            c.fetch_add(v, Ordering::Relaxed);
        };
        add(&self.rx_packets, s.rx_packets);
        add(&self.tx_packets, s.tx_packets);
        add(&self.lost, s.lost);
        add(&self.late, s.late);
        add(&self.duplicate, s.duplicate);
        add(&self.rejected, s.rejected);
        add(&self.peer_lost, s.peer_lost.unwrap_or(0).max(0) as u64);
        add(&self.send_errors, send_errors);
    }
}

/// Commands from the signalling side to a call's media task.
#[derive(Debug)]
pub enum MediaCmd {
    /// Renegotiated media (re-INVITE, UPDATE, late-offer ACK).
    Update(Box<Answer>),
    Play {
        pcm: Pcm,
        barge_in: bool,
    },
    /// A key press that came by SIP INFO.
    InfoDigit {
        key: char,
        duration_ms: Option<u32>,
    },
    /// The call is over: finish up and report.
    Stop,
}

/// What a media task tells the signalling side.
#[derive(Debug)]
pub enum MediaNote {
    /// No RTP for `rtp_timeout`: end the call with `rtp-timeout`.
    RtpTimeout { id: CallId },
    /// The task is done; its ports may be reused.
    Finished { id: CallId, port: u16 },
}

fn codec_of(a: &Answer) -> Codec {
    match a.codec.name {
        G711::Pcmu => Codec::Pcmu,
        G711::Pcma => Codec::Pcma,
    }
}

pub struct MediaTask {
    pub id: CallId,
    pub sockets: MediaSockets,
    pub answer: Option<Answer>,
    pub cfg: MediaConfig,
    pub bus: mpsc::Sender<CallEvent>,
    pub notes: mpsc::Sender<MediaNote>,
    pub cmds: mpsc::Receiver<MediaCmd>,
    pub recording: Option<RecordingHandle>,
    pub greeting: Option<Pcm>,
    pub seed: u64,
    pub pacer: PacerHandle,
    /// This call's key with the pacer.
    pub key: u64,
    pub transcript: Option<CallTranscript>,
    pub counters: Arc<MediaCounters>,
}

const FRAME: Duration = Duration::from_millis(20);
const SAMPLES: usize = 160;

struct State {
    id: CallId,
    start: Instant,
    codec: Codec,
    te_pt: Option<u8>,
    hold: bool,
    session: RtpSession,
    jitter: JitterBuffer<Vec<u8>>,
    concealer: Concealer,
    reception: Option<ReceptionStats>,
    rfc4733: Rfc4733Receiver,
    inband: Option<InbandDetector>,
    dedupe: DigitDeduper,
    /// Presses started but not ended: key -> offset of the start.
    open_presses: Vec<(char, DigitSource, u64)>,
    /// The player and the send side, shared with the pacer.
    out: SharedOutbound,
    pacer: PacerHandle,
    key: u64,
    rtp_start: RtpStart,
    /// Where the pacer was last told to send.
    sent_to: Option<SocketAddr>,
    sent: SentFrames,
    recording: Option<RecordingHandle>,
    transcript: Option<CallTranscript>,
    caller_speaking: bool,
    counters: Arc<MediaCounters>,
    /// Caller audio position, in samples from `start` (one frame per tick).
    caller_pos: u64,
    /// Samples per caller packet: the jitter buffer's frame and the tick.
    /// Follows what the peer actually sends (ptime is only a preference).
    frame_samples: usize,
    jitter_cfg: JitterConfig,
    retimed: bool,
    last_rtp: Instant,
    rtp_stats: RtpStats,
    /// Telephone-event packets received (see `final_stats`).
    te_packets: u64,
    pcm: Vec<i16>,
    events: Vec<CallEvent>,
}

impl State {
    fn at_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    fn with_player<R>(&self, f: impl FnOnce(&mut Player) -> R) -> R {
        let r = f(&mut pacer::lock(&self.out).player);
        self.pacer.wake(self.key);
        r
    }

    /// Tells the pacer about a new destination (latching, re-INVITE).
    fn sync_destination(&mut self) {
        let to = self.session.send_to();
        if to != self.sent_to {
            self.sent_to = to;
            pacer::lock(&self.out).to = to;
        }
    }

    fn apply(&mut self, a: &Answer, strict: bool, now: Instant) {
        self.codec = codec_of(a);
        pacer::lock(&self.out).codec = self.codec;
        self.te_pt = a.telephone_event_pt;
        if self.hold != a.hold {
            // Inactivity is measured from the hold change, not from the last
            // packet before a long hold.
            self.last_rtp = now;
        }
        self.hold = a.hold;
        let samples = (a.ptime as usize).saturating_mul(8);
        if samples != self.frame_samples {
            self.retime(samples);
        }
        self.session.set_remote(SessionConfig {
            remote_rtp: a.remote_rtp,
            remote_rtcp: a
                .remote_rtp
                .map(|r| SocketAddr::new(r.ip(), r.port().saturating_add(1))),
            strict_source: strict,
            ..SessionConfig::default()
        });
        self.sync_destination();
        self.with_player(|p| p.set_hold(a.hold));
    }

    /// One press seen by any path. Starts barge in; ends go to the record.
    fn digit(&mut self, ev: DigitEvent, source: DigitSource, now: Instant) {
        let at = self.at_ms(now);
        if !ev.ended {
            let d = Digit::from_event(&ev, source, at, 8000);
            if !self.dedupe.admit(&d) {
                return;
            }
            self.with_player(Player::barge_in);
            self.open_presses.push((ev.digit, source, at));
            return;
        }
        let Some(i) = self
            .open_presses
            .iter()
            .position(|(k, s, _)| *k == ev.digit && *s == source)
        else {
            return; // its start was a duplicate of another path's press
        };
        let (key, source, start) = self.open_presses.remove(i);
        self.events.push(CallEvent::Digit {
            id: self.id.clone(),
            key,
            at_ms: start,
            source: source.as_str(),
            duration_ms: Some(ev.duration_ms(8000)),
        });
    }

    /// A new packet duration: restart the jitter buffer on that frame size.
    fn retime(&mut self, samples: usize) {
        if !(80..=480).contains(&samples) || !samples.is_multiple_of(80) {
            return; // 10-60 ms in 10 ms steps; anything else is not G.711 framing
        }
        self.frame_samples = samples;
        self.jitter_cfg.frame = Duration::from_millis(samples as u64 / 8);
        self.jitter = JitterBuffer::new(self.jitter_cfg.clone());
        self.concealer = Concealer::new(samples);
        self.retimed = true;
    }

    fn on_rtp(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let packet = match self.session.on_packet(from, bytes, now) {
            Verdict::Accepted(Accepted::Rtp { packet, .. }) => packet,
            Verdict::Accepted(Accepted::Rtcp(packets)) => {
                self.on_rtcp(&packets);
                return;
            }
            Verdict::Dropped(_) => {
                self.rtp_stats.rejected += 1;
                return;
            }
        };
        self.last_rtp = now;
        self.rtp_stats.rx_packets += 1;
        if self.session.send_to() != self.sent_to {
            self.sync_destination();
        }
        let h = &packet.header;
        let arrival = player::timestamp_at(self.start, self.rtp_start.ts, now);
        let rs = self
            .reception
            .get_or_insert_with(|| ReceptionStats::new(h.ssrc));
        if rs.ssrc() != h.ssrc {
            *rs = ReceptionStats::new(h.ssrc);
        }
        rs.on_packet(h.sequence, h.timestamp, arrival);
        if Some(h.payload_type) == self.te_pt {
            self.te_packets += 1;
            for ev in self
                .rfc4733
                .on_packet(h.timestamp, h.marker, packet.payload, now)
            {
                self.digit(ev, DigitSource::Rfc4733, now);
            }
            return;
        }
        if h.payload_type != self.codec.static_pt() {
            return; // comfort noise or a codec we did not negotiate
        }
        let samples = self.codec.samples_in_payload(packet.payload.len());
        if samples != self.frame_samples {
            self.retime(samples);
        }
        let _ = self.jitter.push(
            h.ssrc,
            h.sequence,
            h.timestamp,
            h.marker,
            packet.payload.to_vec(),
            now,
        );
    }

    /// The peer's RTCP: what it says about our stream goes into the stats.
    fn on_rtcp(&mut self, packets: &[rtcp::RtcpPacket]) {
        self.rtp_stats.rtcp_received += 1;
        self.counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
        let ours = self.rtp_start.ssrc;
        let arrival = rtcp::NtpTime::from_system_time(SystemTime::now());
        for p in packets {
            let blocks = match p {
                rtcp::RtcpPacket::Sr(sr) => &sr.blocks,
                rtcp::RtcpPacket::Rr(rr) => &rr.blocks,
                _ => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == ours) {
                self.rtp_stats.peer_lost = Some(i64::from(b.cumulative_lost));
                self.rtp_stats.peer_jitter_ms = Some(f64::from(b.jitter) / 8.0);
                if let Some(rtt) = b.round_trip(arrival) {
                    self.rtp_stats.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
            }
        }
    }

    /// Records what the pacer sent since the last look.
    fn take_sent(&mut self) {
        pacer::lock(&self.out).take_sent(&mut self.sent);
        for (slot, pcm) in self.sent.iter() {
            if let Some(r) = &mut self.recording {
                r.push(Channel::Right, slot * SAMPLES as u64, pcm);
            }
            if let Some(t) = &mut self.transcript {
                t.gateway(slot, pcm);
            }
        }
    }

    /// One 20 ms playout step of the caller's audio.
    fn tick(&mut self, now: Instant) {
        self.take_sent();
        self.pcm.clear();
        match self.jitter.pop(now) {
            Some(Playout::Frame { payload, .. }) => {
                self.codec.decode(&payload, &mut self.pcm);
                self.pcm.resize(self.frame_samples, 0);
                self.concealer.good(&self.pcm);
                if let Some(det) = &mut self.inband {
                    for ev in det.push(&self.pcm) {
                        self.digit(ev, DigitSource::Inband, now);
                    }
                }
            }
            Some(Playout::Lost { .. }) => {
                self.pcm.resize(self.frame_samples, 0);
                self.concealer.conceal(&mut self.pcm);
            }
            None => self.pcm.resize(self.frame_samples, 0),
        }
        if let Some(r) = &mut self.recording {
            r.push(Channel::Left, self.caller_pos, &self.pcm);
        }
        if let Some(t) = &mut self.transcript {
            t.caller(&self.pcm);
            // Speech barges in like a key press (the VAD lives in the
            // transcript streams, so this needs `[asr]` on and the caller side).
            let speaking = t.caller_speaking();
            if speaking && !self.caller_speaking {
                self.with_player(Player::barge_in);
            }
            self.caller_speaking = speaking;
        }
        self.caller_pos += self.pcm.len() as u64;
        if let Some(t) = self.rfc4733.poll_timeout().filter(|t| *t <= now) {
            if let Some(ev) = self.rfc4733.on_timeout(t) {
                self.digit(ev, DigitSource::Rfc4733, now);
            }
        }
    }

    fn rtcp_report(&mut self, now: Instant) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let ssrc = self.rtp_start.ssrc;
        let sender = pacer::lock(&self.out).sender;
        let blocks: Vec<_> = self
            .reception
            .as_mut()
            .map(|r| r.report_block(now))
            .into_iter()
            .collect();
        if sender.packets > 0 {
            let sr = rtcp::SenderReport {
                ssrc,
                info: sender.sender_info(
                    SystemTime::now(),
                    player::timestamp_at(self.start, self.rtp_start.ts, now),
                ),
                blocks,
            };
            rtcp::write_sr(&sr, &mut out);
        } else {
            let rr = rtcp::ReceiverReport { ssrc, blocks };
            rtcp::write_rr(&rr, &mut out);
        }
        rtcp::write_sdes_cname(ssrc, "hotline", &mut out);
        out
    }

    fn final_stats(&mut self) -> RtpStats {
        let j = self.jitter.stats();
        let mut s = self.rtp_stats.clone();
        s.tx_packets = u64::from(pacer::lock(&self.out).sender.packets);
        // The jitter buffer sees audio packets only, so each sequence number
        // an RFC 4733 event packet took reads there as a lost audio frame;
        // those are not loss. (RFC 3550 A.3 counting over the whole stream
        // would instead count every sequence jump of a replayed or spliced
        // stream as loss.)
        s.lost = j.lost.saturating_sub(self.te_packets);
        s.late = j.late;
        s.duplicate = j.duplicate;
        // The jitter buffer's estimate covers audio packets only: the
        // packets of one DTMF press share a timestamp and would read as
        // hundreds of milliseconds of jitter in the RTCP figure.
        s.jitter_ms = self.jitter.jitter().as_secs_f64() * 1000.0;
        s
    }
}

impl MediaTask {
    pub async fn run(self) {
        let MediaTask {
            id,
            sockets,
            answer,
            cfg,
            bus,
            notes,
            mut cmds,
            recording,
            greeting,
            seed,
            pacer,
            key,
            transcript,
            counters,
        } = self;
        let start = Instant::now();
        let player = match Player::new(PlayerConfig::default(), seed, start) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(call = %id, ?e, "player config");
                let _ = notes
                    .send(MediaNote::Finished {
                        id,
                        port: sockets.port,
                    })
                    .await;
                return;
            }
        };
        let rtp_start = player.rtp_start();
        let out = Arc::new(std::sync::Mutex::new(Outbound::new(player, Codec::Pcmu)));
        let mut st = State {
            id: id.clone(),
            start,
            codec: Codec::Pcmu,
            te_pt: None,
            hold: false,
            session: RtpSession::new(SessionConfig::default()),
            jitter: JitterBuffer::new(cfg.jitter.clone()),
            concealer: Concealer::new(SAMPLES),
            frame_samples: SAMPLES,
            jitter_cfg: cfg.jitter.clone(),
            retimed: false,
            reception: None,
            rfc4733: Rfc4733Receiver::new(ReceiverConfig::default()),
            inband: cfg
                .inband_dtmf
                .then(|| InbandDetector::new(InbandConfig::default())),
            dedupe: DigitDeduper::default(),
            open_presses: Vec::new(),
            out: out.clone(),
            pacer: pacer.clone(),
            key,
            rtp_start,
            sent_to: None,
            sent: SentFrames::default(),
            recording,
            transcript,
            caller_speaking: false,
            counters,
            caller_pos: 0,
            last_rtp: start,
            rtp_stats: RtpStats::default(),
            te_packets: 0,
            pcm: Vec::with_capacity(SAMPLES),
            events: Vec::new(),
        };
        if let Some(a) = &answer {
            st.apply(a, cfg.strict_source, start);
        }
        if let Some(pcm) = greeting {
            pacer::lock(&out)
                .player
                .play(pcm, PlayOptions { barge_in: true });
        }
        pacer.add(key, out, sockets.rtp_tx);
        if let Some(r) = &st.recording {
            st.events.push(CallEvent::Recording {
                id: id.clone(),
                path: r.path().display().to_string(),
            });
        }
        let mut tick = tokio::time::interval_at(start.into(), FRAME);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut next_rtcp = start + cfg.rtcp_interval;
        let mut buf = vec![0u8; 2048];
        let mut rtcp_buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                r = sockets.rtp.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        st.on_rtp(from, buf.get(..n).unwrap_or_default(), Instant::now());
                    }
                }
                r = sockets.rtcp.recv_from(&mut rtcp_buf) => {
                    if let Ok((n, from)) = r {
                        if let Verdict::Accepted(Accepted::Rtcp(packets)) =
                            st.session.on_rtcp_port(from, rtcp_buf.get(..n).unwrap_or_default())
                        {
                            st.on_rtcp(&packets);
                        }
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(MediaCmd::Update(a)) => st.apply(&a, cfg.strict_source, Instant::now()),
                    Some(MediaCmd::Play { pcm, barge_in }) => {
                        st.with_player(|p| p.play(pcm, PlayOptions { barge_in }));
                    }
                    Some(MediaCmd::InfoDigit { key, duration_ms }) => {
                        let now = Instant::now();
                        let at = st.at_ms(now);
                        if let Some(d) = Digit::from_info(key, duration_ms, at) {
                            if st.dedupe.admit(&d) {
                                st.with_player(Player::barge_in);
                                st.events.push(CallEvent::Digit {
                                    id: id.clone(),
                                    key: d.key,
                                    at_ms: at,
                                    source: DigitSource::Info.as_str(),
                                    duration_ms,
                                });
                            }
                        }
                    }
                    Some(MediaCmd::Stop) | None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    st.tick(now);
                    if now >= next_rtcp {
                        next_rtcp = now + cfg.rtcp_interval;
                        if let Some(to) = st.session.rtcp_send_to() {
                            let report = st.rtcp_report(now);
                            let _ = sockets.rtcp.try_send_to(&report, to);
                        }
                    }
                    if !cfg.rtp_timeout.is_zero()
                        && !st.hold
                        && now.saturating_duration_since(st.last_rtp) >= cfg.rtp_timeout
                    {
                        // Ask once; the Stop that follows ends the loop.
                        st.last_rtp = now + Duration::from_secs(3600);
                        let _ = notes.send(MediaNote::RtpTimeout { id: id.clone() }).await;
                    }
                }
            }
            for ev in st.events.drain(..) {
                let _ = bus.send(ev).await;
            }
            if std::mem::take(&mut st.retimed) {
                let period = Duration::from_millis(st.frame_samples as u64 / 8);
                tick = tokio::time::interval_at((Instant::now() + period).into(), period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            }
        }
        // The pacer closes its socket clone when it sees this; the port is
        // only reused once that has happened or the bind is retried elsewhere.
        st.pacer.remove(st.key);
        st.take_sent();
        if let Some(t) = st.transcript.take() {
            t.finish();
        }
        let stats = st.final_stats();
        let send_errors = pacer::lock(&st.out).send_errors;
        st.counters.add_call(&stats, send_errors);
        let mut tail = std::mem::take(&mut st.events);
        tail.push(CallEvent::RtpStats {
            id: id.clone(),
            stats,
        });
        for ev in tail {
            let _ = bus.send(ev).await;
        }
        if let Some(r) = st.recording.take() {
            // Dropping the handle would also finish it; asking keeps errors visible.
            let done = r.finish();
            if let Ok(Err(e)) = done.await {
                tracing::warn!(call = %id, error = %e, "recording did not finish cleanly");
            }
        }
        let _ = notes
            .send(MediaNote::Finished {
                id,
                port: sockets.port,
            })
            .await;
    }
}

pub type SharedPcm = Arc<[i16]>;

/// Every call's media on this gateway: port allocation, the media tasks,
/// the recorder pool and the greeting prompt. The signalling task calls it
/// at each step of a call; it never blocks that task.
pub struct MediaPlane {
    ports: PortPool,
    cfg: MediaConfig,
    bus: mpsc::Sender<CallEvent>,
    notes_tx: mpsc::Sender<MediaNote>,
    /// Allocated at INVITE, waiting for the answer.
    pending: std::collections::HashMap<CallId, (MediaSockets, Option<Answer>)>,
    active: std::collections::HashMap<CallId, mpsc::Sender<MediaCmd>>,
    recorder: Option<crate::media::recorder::RecorderPool>,
    data_dir: std::path::PathBuf,
    greeting: Option<Pcm>,
    seed: u64,
    pacer: Pacer,
    next_key: u64,
    transcriber: Option<Transcriber>,
    counters: Arc<MediaCounters>,
}

/// Commands queued per call: a handful of updates and digits at most.
const CMD_QUEUE: usize = 64;

impl MediaPlane {
    pub fn new(
        settings: &crate::config::Config,
        bus: mpsc::Sender<CallEvent>,
        transcriber: Option<Transcriber>,
        counters: Arc<MediaCounters>,
    ) -> std::io::Result<(MediaPlane, mpsc::Receiver<MediaNote>)> {
        let m = &settings.media;
        let pacer = Pacer::spawn(m.realtime_pacer)?;
        let recordings = settings.data_dir.join("recordings");
        if m.record {
            match crate::media::recorder::repair_dir(&recordings) {
                Ok(r) => tracing::info!(report = ?r, "recordings checked"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "could not check recordings"),
            }
        }
        let recorder = if m.record {
            match crate::media::recorder::RecorderPool::spawn(Default::default()) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the recorder; calls will not be recorded");
                    None
                }
            }
        } else {
            None
        };
        let greeting = if m.greeting.as_os_str().is_empty() {
            None
        } else {
            match crate::media::prompt_cache::load_prompt(&m.greeting) {
                Ok(pcm) => Some(Pcm::from(pcm)),
                Err(e) => {
                    tracing::warn!(error = %e, "greeting not loaded; answered calls hear silence");
                    None
                }
            }
        };
        let (notes_tx, notes_rx) = mpsc::channel(1024);
        let plane = MediaPlane {
            ports: PortPool::new(m.rtp_port_min, m.rtp_port_max),
            cfg: MediaConfig {
                rtp_timeout: Duration::from_secs(m.rtp_timeout_s),
                inband_dtmf: m.inband_dtmf,
                strict_source: m.strict_source,
                ..MediaConfig::default()
            },
            bus,
            notes_tx,
            pending: Default::default(),
            active: Default::default(),
            recorder,
            data_dir: settings.data_dir.clone(),
            greeting,
            seed: u64::from_le_bytes(
                uuid::Uuid::new_v4().as_bytes()[..8]
                    .try_into()
                    .unwrap_or([7; 8]),
            ),
            pacer,
            next_key: 0,
            transcriber,
            counters,
        };
        Ok((plane, notes_rx))
    }

    /// The whisper pool's queue, when live transcripts are on.
    pub fn asr_stats(&self) -> Option<hotline_asr::pool::Stats> {
        self.transcriber.as_ref().map(Transcriber::pool_stats)
    }

    pub fn calls(&self) -> usize {
        self.pending.len() + self.active.len()
    }

    /// RTP/RTCP port pairs bound now (a finished call frees its pair only
    /// after its task has reported).
    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    /// Reserves RTP/RTCP ports for a new call; `None`: the range is full.
    /// Sockets bind the wildcard of `advertised`'s family, so a NAT'd or
    /// multi-homed host still receives what the SDP address attracts.
    pub fn incoming(&mut self, id: &str, advertised: IpAddr) -> Option<u16> {
        let any = match advertised {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let sockets = self.ports.allocate(any)?;
        let port = sockets.port;
        self.pending.insert(id.to_string(), (sockets, None));
        Some(port)
    }

    pub fn negotiated(&mut self, id: &str, answer: Answer) {
        if let Some((_, slot)) = self.pending.get_mut(id) {
            *slot = Some(answer);
        } else if let Some(tx) = self.active.get(id) {
            let _ = tx.try_send(MediaCmd::Update(Box::new(answer)));
        }
    }

    /// The call was answered: its media starts now.
    pub fn answered(&mut self, id: &str) {
        let Some((sockets, answer)) = self.pending.remove(id) else {
            return;
        };
        let (tx, rx) = mpsc::channel(CMD_QUEUE);
        let recording = self.recorder.as_ref().map(|pool| {
            let path =
                crate::media::recorder::recording_path(&self.data_dir, id, SystemTime::now());
            pool.open(path)
        });
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let task = MediaTask {
            id: id.to_string(),
            sockets,
            answer,
            cfg: self.cfg.clone(),
            bus: self.bus.clone(),
            notes: self.notes_tx.clone(),
            cmds: rx,
            recording,
            greeting: self.greeting.clone(),
            seed: self.seed,
            pacer: self.pacer.handle(),
            key: self.next_key,
            transcript: self.transcriber.as_ref().map(|t| t.call(&id.to_string())),
            counters: self.counters.clone(),
        };
        self.next_key += 1;
        self.active.insert(id.to_string(), tx);
        tokio::spawn(task.run());
    }

    pub fn info_digit(&mut self, id: &str, key: char, duration_ms: Option<u32>) {
        if let Some(tx) = self.active.get(id) {
            let _ = tx.try_send(MediaCmd::InfoDigit { key, duration_ms });
        }
    }

    /// The call is over (any reason): stop its media, free unused ports.
    pub fn ended(&mut self, id: &str) {
        if let Some((sockets, _)) = self.pending.remove(id) {
            self.ports.release(sockets.port);
        }
        if let Some(tx) = self.active.remove(id) {
            // A full queue must not keep the call alive: dropping the
            // sender also ends the task.
            let _ = tx.try_send(MediaCmd::Stop);
        }
    }

    /// Handles a note from a media task; returns a call to hang up for
    /// RTP inactivity.
    pub fn on_note(&mut self, note: MediaNote) -> Option<CallId> {
        match note {
            MediaNote::RtpTimeout { id } => Some(id),
            MediaNote::Finished { port, .. } => {
                self.ports.release(port);
                None
            }
        }
    }

    /// After every call has ended: wait (bounded) for the media tasks to
    /// report, then close every recording.
    pub async fn shutdown(mut self, notes: &mut mpsc::Receiver<MediaNote>, grace: Duration) {
        for id in self.active.keys().cloned().collect::<Vec<_>>() {
            self.ended(&id);
        }
        let until = tokio::time::Instant::now() + grace;
        while self.ports.in_use() > 0 {
            match tokio::time::timeout_at(until, notes.recv()).await {
                Ok(Some(note)) => {
                    self.on_note(note);
                }
                _ => break,
            }
        }
        if let Some(pool) = self.recorder.take() {
            let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
        }
        // Every task has finished its streams: decode the finals still queued.
        if let Some(t) = self.transcriber.take() {
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
    }
}
