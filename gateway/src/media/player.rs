//! Prompt playback as paced RTP frames, sans-IO.
//!
//! A [`Player`] is one outgoing RTP audio stream (one SSRC) of one call. It never reads a
//! clock: the driver passes `now` to [`Player::poll`], sends every frame it returns, and
//! sleeps until [`Player::next_wake`].
//!
//! ```text
//! loop {
//!     while let Some(f) = player.poll(now) { rtp.send(f.seq, f.ts, f.marker, encode(f.pcm)) }
//!     while let Some(ev) = player.poll_event() { ivr.on(ev) }
//!     sleep_until(player.next_wake())      // or a command / a packet, whichever first
//! }
//! ```
//!
//! # Timeline
//!
//! The stream has an epoch `start` (given to [`Player::new`]); slot `k` is due at
//! `start + k * ptime` and carries RTP timestamp `ts0 + k * samples_per_frame`. Due times
//! are computed from `k`, never accumulated, so a 10-minute prompt ends exactly 10 minutes
//! after it started whatever the driver's wake-up jitter. The RTP timestamp therefore
//! follows wall time across every pause (hold, silence suppression, a stalled driver)
//! even when no packet is sent; sequence numbers count packets actually sent, so they
//! stay consecutive (RFC 3550 5.1). Both wrap (u16, u32).
//!
//! # Silence
//!
//! With [`SilenceMode::Send`] (the default) the player sends silence frames whenever no
//! prompt is playing, from the first poll to the end of the call: NAT bindings and the
//! peer's symmetric-RTP latching stay alive, the peer's jitter buffer sees one continuous
//! stream, and the recording's gateway channel is continuous. With
//! [`SilenceMode::Suppress`] nothing is sent between prompts.
//!
//! # Marker bit (RFC 3551 4.1)
//!
//! Set on the first packet of the stream and on the first packet after any stretch of
//! slots in which nothing was sent: after silence suppression (each prompt's start in
//! `Suppress` mode), after hold, and after late frames were skipped. Packets that follow
//! each other without a gap never carry it, so in `Send` mode a prompt starting after
//! silence frames is not marked (the peer's playout has nothing to resynchronise).
//!
//! # Late wake-ups
//!
//! If the driver wakes late, `poll` returns the overdue frames at once, one per call,
//! each with its own slot's timestamp (the peer's jitter buffer absorbs the burst). If
//! the oldest overdue frame is more than `max_late` (default 200 ms) late, the player
//! skips to the current slot instead: the skipped slots are counted in
//! [`PlayerStats::skipped_frames`], the next packet carries the current slot's timestamp
//! and the marker bit, and the prompt resumes where it stopped (skipping never drops
//! prompt audio; the prompt simply ends that much later).
//!
//! # Barge-in
//!
//! Each prompt is queued with [`PlayOptions::barge_in`]. [`Player::barge_in`] (a digit
//! or speech onset arrived) stops the current prompt and flushes the queue only when the
//! current prompt allows it; [`Player::stop`] stops everything unconditionally. Every
//! queued prompt ends with exactly one [`PlayerEvent::PromptDone`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::prompt_cache::Pcm;
use super::SAMPLE_RATE;

/// Whether the stream carries silence frames while no prompt plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SilenceMode {
    #[default]
    Send,
    Suppress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerConfig {
    /// Packet time in milliseconds: 10–120 (20 is the G.711 default, `a=ptime`).
    pub ptime_ms: u32,
    /// A frame later than this is skipped rather than sent (see the module doc).
    pub max_late: Duration,
    pub silence: SilenceMode,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            ptime_ms: 20,
            max_late: Duration::from_millis(200),
            silence: SilenceMode::Send,
        }
    }
}

/// Initial RTP state of a stream: random per RFC 3550 5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpStart {
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

impl RtpStart {
    /// Derives the three values from a seed (the driver passes fresh randomness, e.g. the
    /// random bits of the call's UUID; tests pass constants).
    pub fn from_seed(seed: u64) -> Self {
        let mut s = seed;
        let a = splitmix64(&mut s);
        let b = splitmix64(&mut s);
        RtpStart {
            seq: a as u16,
            ts: (a >> 32) as u32,
            ssrc: b as u32,
        }
    }
}

/// The RTP timestamp at `now` of a stream whose timestamp was `ts0` at `start`.
pub fn timestamp_at(start: Instant, ts0: u32, now: Instant) -> u32 {
    let ns = now.saturating_duration_since(start).as_nanos();
    let samples = (ns * SAMPLE_RATE as u128 / 1_000_000_000) as u64;
    ts0.wrapping_add(samples as u32)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Names one queued prompt in [`PlayerEvent`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromptId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlayOptions {
    /// A digit or speech onset may interrupt this prompt.
    pub barge_in: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    /// Played to the end.
    Finished,
    /// [`Player::stop`].
    Stopped,
    /// [`Player::barge_in`].
    BargedIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerEvent {
    PromptDone {
        id: PromptId,
        reason: DoneReason,
        /// Samples of the prompt that were sent (all of them when `Finished`).
        played: u64,
    },
}

/// One packet's worth of audio, due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutFrame<'a> {
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub marker: bool,
    /// `samples_per_frame` samples of 8 kHz PCM (a prompt's last frame is zero-padded).
    pub pcm: &'a [i16],
    /// Slot index on the stream timeline: the frame's first sample is sample
    /// `slot * samples_per_frame` after the stream's epoch (recording alignment).
    pub slot: u64,
    /// When the frame was due; `now - due` is the send lateness.
    pub due: Instant,
    /// The prompt this frame is from, `None` for silence.
    pub prompt: Option<PromptId>,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayerStats {
    /// Packets returned by `poll` (prompt and silence).
    pub frames_sent: u64,
    pub silence_frames: u64,
    /// Slots skipped because the driver was more than `max_late` late.
    pub skipped_frames: u64,
    /// Latest send relative to the due time seen so far.
    pub max_lateness: Duration,
}

struct Queued {
    id: PromptId,
    pcm: Pcm,
    opts: PlayOptions,
}

struct Current {
    q: Queued,
    pos: usize,
}

pub struct Player {
    cfg: PlayerConfig,
    frame_len: usize,
    ptime_ns: u64,
    start: Instant,
    rtp: RtpStart,
    /// Next slot to send.
    next_slot: u64,
    /// Sequence number of the next packet.
    seq: u16,
    marker_pending: bool,
    /// Nothing was sent for a while: jump `next_slot` to the current slot at the next poll.
    resync: bool,
    held: bool,
    current: Option<Current>,
    queue: VecDeque<Queued>,
    events: VecDeque<PlayerEvent>,
    next_id: u64,
    buf: Vec<i16>,
    stats: PlayerStats,
}

/// `PlayerConfig::ptime_ms` outside 10–120.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ptime {0} ms is outside 10-120 ms")]
pub struct BadPtime(pub u32);

impl Player {
    /// A stream whose slot 0 is due at `start` (normally the moment the call is
    /// answered), with random initial RTP state from `seed`.
    pub fn new(cfg: PlayerConfig, seed: u64, start: Instant) -> Result<Self, BadPtime> {
        Self::with_rtp(cfg, RtpStart::from_seed(seed), start)
    }

    /// As [`Player::new`] with explicit initial sequence number, timestamp and SSRC.
    pub fn with_rtp(cfg: PlayerConfig, rtp: RtpStart, start: Instant) -> Result<Self, BadPtime> {
        if !(10..=120).contains(&cfg.ptime_ms) {
            return Err(BadPtime(cfg.ptime_ms));
        }
        let frame_len = (SAMPLE_RATE * cfg.ptime_ms / 1000) as usize;
        Ok(Player {
            cfg,
            frame_len,
            ptime_ns: cfg.ptime_ms as u64 * 1_000_000,
            start,
            rtp,
            next_slot: 0,
            seq: rtp.seq,
            marker_pending: true,
            resync: false,
            held: false,
            current: None,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            buf: vec![0; frame_len],
            stats: PlayerStats::default(),
        })
    }

    /// Queues a prompt after those already queued. An empty prompt finishes at once.
    pub fn play(&mut self, pcm: Pcm, opts: PlayOptions) -> PromptId {
        let id = PromptId(self.next_id);
        self.next_id += 1;
        if pcm.is_empty() {
            self.events.push_back(PlayerEvent::PromptDone {
                id,
                reason: DoneReason::Finished,
                played: 0,
            });
            return id;
        }
        let q = Queued { id, pcm, opts };
        if self.current.is_none() {
            if self.cfg.silence == SilenceMode::Suppress {
                // The stream was idle: resume on the slot current at the next poll.
                self.resync = true;
            }
            self.current = Some(Current { q, pos: 0 });
        } else {
            self.queue.push_back(q);
        }
        id
    }

    /// Stops the current prompt and drops the queue. Returns whether anything was playing.
    pub fn stop(&mut self) -> bool {
        self.end_all(DoneReason::Stopped)
    }

    /// A digit or speech onset: stops the current prompt and drops the queue if the
    /// current prompt allows barge-in. Returns whether it did.
    pub fn barge_in(&mut self) -> bool {
        match &self.current {
            Some(c) if c.q.opts.barge_in => self.end_all(DoneReason::BargedIn),
            _ => false,
        }
    }

    fn end_all(&mut self, reason: DoneReason) -> bool {
        let Some(c) = self.current.take() else {
            return false;
        };
        self.events.push_back(PlayerEvent::PromptDone {
            id: c.q.id,
            reason,
            played: c.pos as u64,
        });
        for q in self.queue.drain(..) {
            self.events.push_back(PlayerEvent::PromptDone {
                id: q.id,
                reason,
                played: 0,
            });
        }
        true
    }

    /// A prompt is playing or queued.
    pub fn is_playing(&self) -> bool {
        self.current.is_some()
    }

    /// The prompt now playing.
    pub fn current_prompt(&self) -> Option<PromptId> {
        self.current.as_ref().map(|c| c.q.id)
    }

    /// Hold (the peer sent `a=sendonly`/`inactive`): nothing is sent and the current prompt
    /// keeps its position; on release the stream resumes at the current slot with the
    /// marker bit.
    pub fn set_hold(&mut self, held: bool) {
        if held && !self.held {
            self.resync = true;
        }
        self.held = held;
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Whether the stream currently has packets to send (playing, or sending silence).
    fn active(&self) -> bool {
        !self.held && (self.current.is_some() || self.cfg.silence == SilenceMode::Send)
    }

    fn due(&self, slot: u64) -> Instant {
        self.start + Duration::from_nanos(slot.saturating_mul(self.ptime_ns))
    }

    /// The last slot whose due time is at or before `now`; `None` before the epoch.
    fn slot_at(&self, now: Instant) -> Option<u64> {
        let since = now.checked_duration_since(self.start)?;
        Some((since.as_nanos() / self.ptime_ns as u128) as u64)
    }

    /// When `poll` next has a frame to return; `None` while there is nothing to send
    /// (held, or idle with silence suppressed). An instant in the past means "now".
    pub fn next_wake(&self) -> Option<Instant> {
        if !self.active() {
            return None;
        }
        Some(self.due(self.next_slot))
    }

    /// The next frame due at `now`, if any. Call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<OutFrame<'_>> {
        if !self.active() {
            if !self.held {
                // Idle with silence suppressed: the stream pauses here.
                self.resync = true;
            }
            return None;
        }
        let now_slot = self.slot_at(now)?;
        if self.resync {
            self.resync = false;
            if now_slot > self.next_slot {
                self.next_slot = now_slot;
                self.marker_pending = true;
            }
        }
        if now_slot < self.next_slot {
            return None;
        }
        let mut due = self.due(self.next_slot);
        if now.saturating_duration_since(due) > self.cfg.max_late {
            self.stats.skipped_frames += now_slot - self.next_slot;
            self.next_slot = now_slot;
            self.marker_pending = true;
            due = self.due(now_slot);
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        let lateness = now.saturating_duration_since(due);
        self.stats.max_lateness = self.stats.max_lateness.max(lateness);

        let prompt = self.fill();
        let marker = std::mem::take(&mut self.marker_pending);
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.stats.frames_sent += 1;
        if prompt.is_none() {
            self.stats.silence_frames += 1;
        }
        Some(OutFrame {
            seq,
            ts: self
                .rtp
                .ts
                .wrapping_add(slot.wrapping_mul(self.frame_len as u64) as u32),
            ssrc: self.rtp.ssrc,
            marker,
            pcm: &self.buf,
            slot,
            due,
            prompt,
        })
    }

    /// Fills `buf` with the next frame of the current prompt (advancing the queue when it
    /// ends) or silence.
    fn fill(&mut self) -> Option<PromptId> {
        let Some(c) = self.current.as_mut() else {
            self.buf.fill(0);
            return None;
        };
        let id = c.q.id;
        let end = (c.pos + self.frame_len).min(c.q.pcm.len());
        let n = end - c.pos;
        self.buf[..n].copy_from_slice(&c.q.pcm[c.pos..end]);
        self.buf[n..].fill(0);
        c.pos = end;
        if end == c.q.pcm.len() {
            self.events.push_back(PlayerEvent::PromptDone {
                id,
                reason: DoneReason::Finished,
                played: end as u64,
            });
            self.current = self.queue.pop_front().map(|q| Current { q, pos: 0 });
        }
        Some(id)
    }

    pub fn poll_event(&mut self) -> Option<PlayerEvent> {
        self.events.pop_front()
    }

    /// A sequence number for another packet on this stream (an RFC 4733 telephone-event
    /// shares the audio's SSRC and sequence space).
    pub fn alloc_seq(&mut self) -> u16 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// The RTP timestamp of the sampling instant `now` on this stream's timeline.
    pub fn timestamp_at(&self, now: Instant) -> u32 {
        timestamp_at(self.start, self.rtp.ts, now)
    }

    pub fn samples_per_frame(&self) -> usize {
        self.frame_len
    }

    pub fn rtp_start(&self) -> RtpStart {
        self.rtp
    }

    pub fn ssrc(&self) -> u32 {
        self.rtp.ssrc
    }

    pub fn stats(&self) -> PlayerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pcm(n: usize, f: impl Fn(usize) -> i16) -> Pcm {
        (0..n).map(f).collect::<Vec<_>>().into()
    }

    fn ramp(n: usize) -> Pcm {
        pcm(n, |i| (i % 30_000) as i16 + 1)
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Sent {
        seq: u16,
        ts: u32,
        marker: bool,
        slot: u64,
        due: Instant,
        at: Instant,
        pcm: Vec<i16>,
        prompt: Option<PromptId>,
    }

    fn drain(p: &mut Player, now: Instant, out: &mut Vec<Sent>) {
        while let Some(f) = p.poll(now) {
            out.push(Sent {
                seq: f.seq,
                ts: f.ts,
                marker: f.marker,
                slot: f.slot,
                due: f.due,
                at: now,
                pcm: f.pcm.to_vec(),
                prompt: f.prompt,
            });
        }
    }

    fn events(p: &mut Player) -> Vec<PlayerEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    fn player(cfg: PlayerConfig, rtp: RtpStart, t0: Instant) -> Player {
        Player::with_rtp(cfg, rtp, t0).unwrap()
    }

    const RTP: RtpStart = RtpStart {
        seq: 1000,
        ts: 50_000,
        ssrc: 0xABCD,
    };

    #[test]
    fn ten_minute_prompt_paced_without_drift() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        let prompt = ramp(10 * 60 * 8000);
        let id = p.play(prompt.clone(), PlayOptions::default());
        let mut sent = Vec::new();
        // A driver whose wake-ups jitter by 0–7 ms (deterministic pseudo-random).
        let mut rng = 7u64;
        let mut now = t0;
        let mut done_at = None;
        while sent.len() < 30_000 {
            drain(&mut p, now, &mut sent);
            if done_at.is_none() && !events(&mut p).is_empty() {
                done_at = Some(now);
            }
            let wake = p.next_wake().unwrap();
            now = wake.max(now) + Duration::from_micros(splitmix64(&mut rng) % 7000);
        }
        assert_eq!(sent.len(), 30_000);
        let mut played = Vec::with_capacity(prompt.len());
        for (k, f) in sent.iter().enumerate() {
            assert_eq!(f.slot, k as u64);
            assert_eq!(f.seq, RTP.seq.wrapping_add(k as u16));
            assert_eq!(f.ts, RTP.ts.wrapping_add(160 * k as u32));
            assert_eq!(f.due, t0 + 20 * MS * k as u32, "slot {k}");
            assert!(f.at >= f.due && f.at - f.due < 7 * MS, "slot {k}");
            assert_eq!(f.marker, k == 0);
            assert_eq!(f.prompt, Some(id));
            played.extend_from_slice(&f.pcm);
        }
        assert_eq!(&played[..], &prompt[..]);
        // The last frame is due exactly 10 minutes minus one ptime after the start.
        assert_eq!(sent[29_999].due - t0, Duration::from_secs(600) - 20 * MS);
        assert!(done_at.is_some_and(|d| d - t0 < Duration::from_secs(600)));
        assert!(!p.is_playing());
        assert_eq!(p.stats().skipped_frames, 0);
        assert!(p.stats().max_lateness < 7 * MS);
        // Silence follows, same stream.
        let mut more = Vec::new();
        drain(&mut p, t0 + Duration::from_secs(600), &mut more);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].ts, RTP.ts.wrapping_add(160 * 30_000));
        assert!(more[0].pcm.iter().all(|&s| s == 0) && more[0].prompt.is_none());
        assert!(!more[0].marker);
    }

    #[test]
    fn nothing_before_due_and_next_wake_is_exact() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        let mut out = Vec::new();
        assert_eq!(p.next_wake(), Some(t0));
        drain(&mut p, t0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.next_wake(), Some(t0 + 20 * MS));
        drain(&mut p, t0 + 19 * MS, &mut out);
        assert_eq!(out.len(), 1);
        drain(&mut p, t0 + 20 * MS, &mut out);
        assert_eq!(out.len(), 2);
        // Before the epoch: nothing.
        let mut q = player(PlayerConfig::default(), RTP, t0 + 100 * MS);
        assert!(q.poll(t0).is_none());
    }

    #[test]
    fn silence_between_prompts_keeps_ts_and_seq_continuous_without_markers() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        let mut out = Vec::new();
        for k in 0..10 {
            drain(&mut p, t0 + 20 * MS * k, &mut out);
        }
        let a = p.play(ramp(400), PlayOptions::default()); // 2.5 frames
        let b = p.play(ramp(160), PlayOptions::default());
        for k in 10..20 {
            drain(&mut p, t0 + 20 * MS * k, &mut out);
        }
        assert_eq!(out.len(), 20);
        for (k, f) in out.iter().enumerate() {
            assert_eq!(f.seq, RTP.seq + k as u16);
            assert_eq!(f.ts, RTP.ts + 160 * k as u32);
            assert_eq!(f.marker, k == 0, "frame {k}");
        }
        let who: Vec<_> = out.iter().map(|f| f.prompt).collect();
        assert_eq!(who[9], None);
        assert_eq!(&who[10..13], &[Some(a); 3]);
        assert_eq!(who[13], Some(b));
        assert_eq!(who[14], None);
        // The short last frame of `a` is zero-padded.
        assert_eq!(out[12].pcm[..80], ramp(400)[320..]);
        assert!(out[12].pcm[80..].iter().all(|&s| s == 0));
        assert_eq!(
            events(&mut p),
            vec![
                PlayerEvent::PromptDone {
                    id: a,
                    reason: DoneReason::Finished,
                    played: 400
                },
                PlayerEvent::PromptDone {
                    id: b,
                    reason: DoneReason::Finished,
                    played: 160
                },
            ]
        );
        assert_eq!(p.stats().silence_frames, 16);
    }

    #[test]
    fn suppressed_silence_marks_each_talkspurt_and_ts_follows_wall_time() {
        let t0 = Instant::now();
        let cfg = PlayerConfig {
            silence: SilenceMode::Suppress,
            ..Default::default()
        };
        let mut p = player(cfg, RTP, t0);
        let mut out = Vec::new();
        assert_eq!(p.next_wake(), None);
        drain(&mut p, t0 + 100 * MS, &mut out);
        assert!(out.is_empty());
        // A prompt queued at 1.005 s starts in slot 50 (due 1.000 s), marked.
        p.play(ramp(320), PlayOptions::default());
        let now = t0 + 1005 * MS;
        assert!(p.next_wake().is_some_and(|w| w <= now));
        drain(&mut p, now, &mut out);
        drain(&mut p, t0 + 1020 * MS, &mut out);
        drain(&mut p, t0 + 1040 * MS, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].slot, out[0].ts, out[0].seq, out[0].marker),
            (50, RTP.ts + 50 * 160, RTP.seq, true)
        );
        assert_eq!(
            (out[1].slot, out[1].ts, out[1].seq, out[1].marker),
            (51, RTP.ts + 51 * 160, RTP.seq + 1, false)
        );
        assert_eq!(p.next_wake(), None);
        // Another after 3 s idle: seq continues, ts jumps by the idle time, marker again.
        p.play(ramp(160), PlayOptions::default());
        drain(&mut p, t0 + 4000 * MS, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[2].ts, out[2].seq, out[2].marker),
            (RTP.ts + 200 * 160, RTP.seq + 2, true)
        );
        // Queued exactly on the next slot after a prompt: no pause, so no marker.
        p.play(ramp(160), PlayOptions::default());
        drain(&mut p, t0 + 4020 * MS, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!((out[3].ts, out[3].marker), (RTP.ts + 201 * 160, false));
    }

    #[test]
    fn late_wakeup_bursts_overdue_frames_then_skips_beyond_max_late() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        let prompt = ramp(8000 * 5);
        p.play(prompt.clone(), PlayOptions::default());
        let mut out = Vec::new();
        drain(&mut p, t0, &mut out);
        // 150 ms late (slot 1 was due at 20 ms; now is 170 ms: slots 1..=8 due).
        drain(&mut p, t0 + 170 * MS, &mut out);
        assert_eq!(out.len(), 9);
        for (k, f) in out.iter().enumerate() {
            assert_eq!(
                (f.slot, f.ts, f.marker),
                (k as u64, RTP.ts + 160 * k as u32, k == 0)
            );
        }
        assert_eq!(p.stats().skipped_frames, 0);
        assert_eq!(p.stats().max_lateness, 150 * MS);
        // Stalled for 500 ms: slot 9 was due at 180 ms, now is 690 ms (slot 34).
        drain(&mut p, t0 + 690 * MS, &mut out);
        assert_eq!(out.len(), 10, "one frame, the current slot");
        let f = &out[9];
        assert_eq!(
            (f.slot, f.ts, f.seq, f.marker),
            (34, RTP.ts + 34 * 160, RTP.seq + 9, true)
        );
        assert_eq!(f.due, t0 + 680 * MS);
        assert_eq!(p.stats().skipped_frames, 25);
        // The prompt resumed where it stopped: no audio was dropped.
        let played: Vec<i16> = out.iter().flat_map(|f| f.pcm.clone()).collect();
        assert_eq!(&played[..], &prompt[..160 * 10]);
        drain(&mut p, t0 + 700 * MS, &mut out);
        assert_eq!((out[10].slot, out[10].marker), (35, false));
    }

    #[test]
    fn hold_freezes_the_prompt_and_resumes_with_marker() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        let prompt = ramp(1600);
        p.play(prompt.clone(), PlayOptions::default());
        let mut out = Vec::new();
        for k in 0..3 {
            drain(&mut p, t0 + 20 * MS * k, &mut out);
        }
        p.set_hold(true);
        assert_eq!(p.next_wake(), None);
        drain(&mut p, t0 + 500 * MS, &mut out);
        assert_eq!(out.len(), 3);
        p.set_hold(false);
        drain(&mut p, t0 + 2010 * MS, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(
            (out[3].slot, out[3].marker, out[3].seq),
            (100, true, RTP.seq + 3)
        );
        assert_eq!(out[3].pcm, prompt[480..640]);
        assert_eq!(p.stats().skipped_frames, 0, "hold is not lateness");
    }

    #[test]
    fn barge_in_only_interrupts_interruptible_prompts() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        let mut out = Vec::new();
        let legal = p.play(ramp(800), PlayOptions { barge_in: false });
        let menu = p.play(ramp(8000), PlayOptions { barge_in: true });
        let more = p.play(ramp(8000), PlayOptions { barge_in: true });
        drain(&mut p, t0, &mut out);
        assert!(!p.barge_in(), "legal notice plays to the end");
        assert_eq!(p.current_prompt(), Some(legal));
        for k in 1..7 {
            drain(&mut p, t0 + 20 * MS * k, &mut out);
        }
        assert_eq!(p.current_prompt(), Some(menu));
        assert!(p.barge_in());
        assert!(!p.is_playing());
        assert_eq!(
            events(&mut p),
            vec![
                PlayerEvent::PromptDone {
                    id: legal,
                    reason: DoneReason::Finished,
                    played: 800
                },
                PlayerEvent::PromptDone {
                    id: menu,
                    reason: DoneReason::BargedIn,
                    played: 320
                },
                PlayerEvent::PromptDone {
                    id: more,
                    reason: DoneReason::BargedIn,
                    played: 0
                },
            ]
        );
        // The very next frame is silence, continuous.
        drain(&mut p, t0 + 140 * MS, &mut out);
        let f = out.last().unwrap();
        assert_eq!((f.prompt, f.marker, f.slot), (None, false, 7));
        assert!(!p.barge_in() && !p.stop());
        // stop() ends non-interruptible prompts too.
        let x = p.play(ramp(800), PlayOptions { barge_in: false });
        assert!(p.stop());
        assert_eq!(
            events(&mut p),
            vec![PlayerEvent::PromptDone {
                id: x,
                reason: DoneReason::Stopped,
                played: 0
            }]
        );
        let e = p.play(Vec::new().into(), PlayOptions::default());
        assert_eq!(
            events(&mut p),
            vec![PlayerEvent::PromptDone {
                id: e,
                reason: DoneReason::Finished,
                played: 0
            }]
        );
        assert!(!p.is_playing());
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let t0 = Instant::now();
        let rtp = RtpStart {
            seq: 65_530,
            ts: u32::MAX - 500,
            ssrc: 1,
        };
        let mut p = player(PlayerConfig::default(), rtp, t0);
        let mut out = Vec::new();
        for k in 0..12 {
            drain(&mut p, t0 + 20 * MS * k, &mut out);
        }
        let seqs: Vec<u16> = out.iter().map(|f| f.seq).collect();
        assert_eq!(&seqs[4..8], &[65_534, 65_535, 0, 1]);
        let ts: Vec<u32> = out.iter().map(|f| f.ts).collect();
        assert_eq!(
            &ts[..5],
            &[
                u32::MAX - 500,
                u32::MAX - 340,
                u32::MAX - 180,
                u32::MAX - 20,
                139
            ]
        );
        for w in out.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
        }
        // A timestamp far along the timeline (slot 2^27: ~31 days) still wraps correctly.
        let far = 1u64 << 27;
        let mut q = player(PlayerConfig::default(), rtp, t0);
        let f = q.poll(t0 + Duration::from_millis(20 * far)).unwrap();
        assert_eq!(f.ts, rtp.ts.wrapping_add((far * 160) as u32));
    }

    #[test]
    fn other_ptimes_and_bad_ptime() {
        let t0 = Instant::now();
        let cfg = PlayerConfig {
            ptime_ms: 30,
            ..Default::default()
        };
        let mut p = player(cfg, RTP, t0);
        assert_eq!(p.samples_per_frame(), 240);
        let mut out = Vec::new();
        drain(&mut p, t0 + 30 * MS, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].ts, RTP.ts + 240);
        assert_eq!(out[1].pcm.len(), 240);
        assert_eq!(
            Player::new(
                PlayerConfig {
                    ptime_ms: 5,
                    ..Default::default()
                },
                1,
                t0
            )
            .err(),
            Some(BadPtime(5))
        );
    }

    #[test]
    fn seeds_give_random_looking_distinct_starts() {
        let a = RtpStart::from_seed(1);
        let b = RtpStart::from_seed(2);
        assert_eq!(a, RtpStart::from_seed(1));
        assert!(a.seq != b.seq && a.ts != b.ts && a.ssrc != b.ssrc);
        let t0 = Instant::now();
        let mut p = Player::new(PlayerConfig::default(), 42, t0).unwrap();
        let r = p.rtp_start();
        let f = p.poll(t0).unwrap();
        assert_eq!((f.seq, f.ts, f.ssrc), (r.seq, r.ts, r.ssrc));
    }

    #[test]
    fn event_packets_share_the_sequence_space_and_timeline() {
        let t0 = Instant::now();
        let mut p = player(PlayerConfig::default(), RTP, t0);
        p.poll(t0).unwrap();
        assert_eq!(p.alloc_seq(), RTP.seq + 1);
        let f = p.poll(t0 + 20 * MS).unwrap();
        assert_eq!(f.seq, RTP.seq + 2);
        assert_eq!(p.timestamp_at(t0 + 25 * MS), RTP.ts + 200);
    }
}
