//! Adaptive jitter buffer for one incoming RTP stream, and a simple loss concealer.
//!
//! Sans-IO: `push(.., now)` on every packet, `pop(now)` once per frame tick (20 ms for
//! G.711). The driver's tick is the playout clock: each `pop` that returns something is
//! one frame of audio, so the buffer never has to compare the sender's clock with ours.
//!
//! How playout works:
//! - Packets are kept by extended sequence number (RFC 3550 §A.1 style, so 16-bit wrap
//!   is invisible) with an extended timestamp (32-bit wrap likewise). Capacity is bounded.
//! - A *sync point* starts a talkspurt: the first packet, a marker bit on a packet whose
//!   timestamp does not continue the previous one (some PBXes set M on every packet, so
//!   M alone is not trusted), a timestamp that disagrees with the sequence number by two
//!   frames or more (silence suppression without M, or the sender switched source), or a
//!   jump of more than `max_delay` (resync rather than play out a gap of Lost frames).
//! - At a sync point the buffer waits `target` after that packet's arrival, then plays
//!   from its timestamp. This is the only place the playout delay is reset to the target,
//!   i.e. the delay follows the target at talkspurt boundaries.
//! - A stream without talkspurts (most PBX G.711: no VAD) would never adapt that way, so
//!   two mid-talkspurt moves exist, both where they cost least: when the buffer runs dry
//!   the slot is concealed anyway, so the buffer holds its position (delay grows one
//!   frame, up to `max_delay`); and when every packet for `shrink_interval` arrived at
//!   least a frame earlier than the target needs, one frame is dropped.
//! - The target is `jitter_factor` × the RFC 3550 interarrival jitter, raised at once to
//!   cover any late packet, lowered by one frame per `shrink_interval` while stable,
//!   always a whole number of frames in `[min_delay, max_delay]`.
//! - A new SSRC, or a sequence jump confirmed by the next packet (RFC 3550 §A.1), starts
//!   a new numbering *behind* what is buffered: old frames play out, then the new stream
//!   starts as a talkspurt. Packets of the replaced SSRC are discarded from then on.
//! - After `underrun_limit` consecutive empty pops (the sender stopped: hold, DTX, end of
//!   call) the buffer goes idle and returns `None`; the next packet is a sync point.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// RFC 3550 §A.1: a forward jump of this many sequence numbers or more is a restart
/// (confirmed by the next packet), not loss.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 §A.1: this far back is reordering; further back is a jump too.
const MAX_MISORDER: u16 = 100;
/// Duplicate detection window, in packets (a bitmap).
const WINDOW: i64 = 64;

#[derive(Debug, Clone)]
pub struct JitterConfig {
    /// RTP clock rate (8000 for G.711).
    pub clock_rate: u32,
    /// Frame (packet) duration, which is also the driver's `pop` period. Must match ptime.
    pub frame: Duration,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Target delay before any jitter has been measured.
    pub initial_delay: Duration,
    /// Packets held at most (memory bound under hostile input).
    pub capacity: usize,
    /// Target = this × RFC 3550 jitter (before rounding up to a frame).
    pub jitter_factor: f64,
    /// Stable time before the target may shrink by one frame, and before a continuous
    /// talkspurt may drop one frame.
    pub shrink_interval: Duration,
    /// Consecutive empty pops before the buffer goes idle.
    pub underrun_limit: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            clock_rate: 8000,
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            initial_delay: Duration::from_millis(60),
            capacity: 64,
            jitter_factor: 4.0,
            shrink_interval: Duration::from_secs(2),
            underrun_limit: 10,
        }
    }
}

/// What one `pop` plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<P> {
    Frame {
        ts: u32,
        payload: P,
    },
    /// One frame's worth of nothing: conceal it. While the buffer is stretching its delay
    /// (ran dry mid-talkspurt) the same `ts` is reported again by the next `Lost` or `Frame`.
    Lost {
        ts: u32,
    },
}

/// What `push` did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Buffered,
    Duplicate,
    /// Its slot had already been played (or skipped).
    Late,
    /// The buffer was full and this was the oldest packet.
    Overflow,
    /// Not used: a lone sequence jump awaiting confirmation, or the SSRC we switched from.
    Discarded,
}

/// Counters since creation (they survive SSRC changes and resyncs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    /// Sequence numbers that were missing when playout passed them (late ones included).
    pub lost: u64,
    /// Arrived after their slot was played.
    pub late: u64,
    pub duplicate: u64,
    /// Arrived after a higher sequence number, still in time.
    pub reordered: u64,
    /// Dropped to stay within capacity.
    pub overflow: u64,
    /// Lone sequence jumps and packets of a replaced SSRC.
    pub discarded: u64,
    /// Talkspurts started (sync points), including the first.
    pub talkspurts: u64,
    pub ssrc_changes: u64,
    /// Confirmed sequence jumps that restarted the stream.
    pub restarts: u64,
    /// `Lost` frames returned.
    pub concealed: u64,
    /// Frames of delay added mid-talkspurt because the buffer ran dry.
    pub stretched: u64,
    /// Frames dropped mid-talkspurt to shrink the delay.
    pub compressed: u64,
}

#[derive(Debug)]
struct Entry<P> {
    ts: i64,
    arrival: Instant,
    sync: bool,
    payload: P,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Waiting { until: Instant },
    Playing,
}

/// The stream's reference point for extending sequence numbers and timestamps: the
/// highest sequence number seen, and its timestamp.
#[derive(Debug, Clone, Copy)]
struct Newest {
    seq16: u16,
    seq: i64,
    ts32: u32,
    ts: i64,
}

#[derive(Debug)]
pub struct JitterBuffer<P> {
    cfg: JitterConfig,
    frame_ts: i64,
    ssrc: Option<u32>,
    prev_ssrc: Option<u32>,
    newest: Option<Newest>,
    /// Bit i set: sequence `newest.seq - i` was received.
    window: u64,
    bad_seq: Option<u16>,
    entries: BTreeMap<i64, Entry<P>>,
    phase: Phase,
    /// Extended timestamp of the next slot to play.
    cursor: i64,
    last_played_seq: Option<i64>,
    /// Extended sequence numbers at or below this belong to the numbering before the
    /// last rebase (new SSRC, restart).
    floor: Option<i64>,
    /// Current playout delay and target, in timestamp units (whole frames).
    delay: i64,
    target: i64,
    epoch: Option<Instant>,
    last_transit: Option<i64>,
    /// RFC 3550 interarrival jitter, timestamp units.
    jitter: f64,
    stable_since: Option<Instant>,
    talkspurt_since: Option<Instant>,
    /// Smallest (timestamp − cursor) seen at arrival since `slack_since`.
    min_slack: Option<i64>,
    slack_since: Option<Instant>,
    compress_pending: bool,
    underruns: u32,
    stats: JitterStats,
}

fn ts_units(d: Duration, rate: u32) -> i64 {
    (d.as_nanos() * u128::from(rate) / 1_000_000_000).min(i64::MAX as u128) as i64
}

impl<P> JitterBuffer<P> {
    pub fn new(cfg: JitterConfig) -> Self {
        let frame_ts = ts_units(cfg.frame, cfg.clock_rate).max(1);
        let mut jb = JitterBuffer {
            frame_ts,
            ssrc: None,
            prev_ssrc: None,
            newest: None,
            window: 0,
            bad_seq: None,
            entries: BTreeMap::new(),
            phase: Phase::Idle,
            cursor: 0,
            last_played_seq: None,
            floor: None,
            delay: 0,
            target: 0,
            epoch: None,
            last_transit: None,
            jitter: 0.0,
            stable_since: None,
            talkspurt_since: None,
            min_slack: None,
            slack_since: None,
            compress_pending: false,
            underruns: 0,
            stats: JitterStats::default(),
            cfg,
        };
        jb.target = jb.clamp_frames(ts_units(jb.cfg.initial_delay, jb.cfg.clock_rate));
        jb.delay = jb.target;
        jb
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn target_delay(&self) -> Duration {
        self.to_duration(self.target)
    }

    /// The delay playout is running at now (target at the last sync point, plus
    /// stretches, minus compressions).
    pub fn current_delay(&self) -> Duration {
        self.to_duration(self.delay)
    }

    /// RFC 3550 interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64((self.jitter / f64::from(self.cfg.clock_rate.max(1))).max(0.0))
    }

    fn to_duration(&self, ts: i64) -> Duration {
        let nanos = ts.max(0) as u128 * 1_000_000_000 / u128::from(self.cfg.clock_rate.max(1));
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }

    /// Rounds up to whole frames within [min_delay, max_delay].
    fn clamp_frames(&self, ts: i64) -> i64 {
        let f = self.frame_ts;
        let lo = ts_units(self.cfg.min_delay, self.cfg.clock_rate).max(f);
        let hi = ts_units(self.cfg.max_delay, self.cfg.clock_rate).max(lo);
        let up = |v: i64| v.div_euclid(f) * f + if v.rem_euclid(f) > 0 { f } else { 0 };
        let hi = hi.div_euclid(f) * f;
        up(ts.clamp(lo, hi)).min(hi.max(f))
    }

    fn max_delay_ts(&self) -> i64 {
        ts_units(self.cfg.max_delay, self.cfg.clock_rate)
    }

    /// Forgets the stream and what is buffered (re-INVITE to a new source, hold).
    /// Counters and the target delay stay: the network path is usually the same.
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.prev_ssrc = None;
        self.newest = None;
        self.window = 0;
        self.bad_seq = None;
        self.entries.clear();
        self.phase = Phase::Idle;
        self.last_played_seq = None;
        self.floor = None;
        self.last_transit = None;
        self.min_slack = None;
        self.slack_since = None;
        self.compress_pending = false;
        self.underruns = 0;
    }

    /// One arriving RTP packet's fields; the payload is stored as given.
    pub fn push(
        &mut self,
        ssrc: u32,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: P,
        now: Instant,
    ) -> Push {
        self.stats.received += 1;
        if self.ssrc != Some(ssrc) {
            if self.prev_ssrc == Some(ssrc) {
                // a straggler of the stream we switched away from must not switch us back
                self.stats.discarded += 1;
                return Push::Discarded;
            }
            if self.ssrc.is_some() {
                self.stats.ssrc_changes += 1;
                self.prev_ssrc = self.ssrc;
            }
            self.ssrc = Some(ssrc);
            return self.rebase(seq, ts, payload, now);
        }
        let Some(newest) = self.newest else {
            return self.rebase(seq, ts, payload, now);
        };
        let udelta = seq.wrapping_sub(newest.seq16);
        let ext_seq = if udelta < MAX_DROPOUT {
            newest.seq + i64::from(udelta)
        } else if udelta > u16::MAX - MAX_MISORDER + 1 {
            newest.seq - (65536 - i64::from(udelta))
        } else if self.bad_seq == Some(seq) {
            // two sequential packets after a big jump: the sender restarted (§A.1)
            self.stats.restarts += 1;
            return self.rebase(seq, ts, payload, now);
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            self.stats.discarded += 1;
            return Push::Discarded;
        };
        let ext_ts = newest.ts + i64::from(ts.wrapping_sub(newest.ts32) as i32);
        let arrival = self.arrival_ts(now);

        if ext_seq <= newest.seq {
            return self.push_older(ext_seq, ext_ts, payload, now);
        }

        // A newer packet: is it a sync point?
        let expected_ts = newest.ts + (ext_seq - newest.seq) * self.frame_ts;
        let off = ext_ts - expected_ts;
        let sync = self.phase == Phase::Idle
            || (marker && off != 0)
            || off.abs() >= 2 * self.frame_ts
            || ext_ts - newest.ts > self.max_delay_ts();

        let shift = ext_seq - newest.seq;
        self.window = if shift >= WINDOW {
            0
        } else {
            self.window << shift
        };
        self.window |= 1;
        self.newest = Some(Newest {
            seq16: seq,
            seq: ext_seq,
            ts32: ts,
            ts: ext_ts,
        });

        if sync {
            // transit across a discontinuity says nothing about the network
            self.last_transit = Some(arrival - ext_ts);
            self.stats.talkspurts += 1;
            if self.phase == Phase::Idle {
                self.phase = Phase::Waiting {
                    until: now + self.to_duration(self.target),
                };
            }
        } else {
            self.observe_jitter(arrival - ext_ts, now);
            self.observe_slack(ext_seq, ext_ts, now);
        }
        self.insert(ext_seq, ext_ts, sync, payload, now)
    }

    fn arrival_ts(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        ts_units(now.saturating_duration_since(epoch), self.cfg.clock_rate)
    }

    /// Starts a new numbering (first packet, new SSRC, confirmed sequence restart) behind
    /// whatever is still buffered: extended sequence numbers continue above everything
    /// held or played, so old frames play out first and the new stream starts as a
    /// talkspurt. Nothing already received is thrown away.
    fn rebase(&mut self, seq: u16, ts: u32, payload: P, now: Instant) -> Push {
        let after = self.newest.map(|n| n.seq).max(self.last_played_seq);
        let ext_seq = after.map_or(i64::from(seq), |a| a + 1);
        let ext_ts = i64::from(ts);
        let arrival = self.arrival_ts(now);
        self.floor = after;
        self.bad_seq = None;
        self.newest = Some(Newest {
            seq16: seq,
            seq: ext_seq,
            ts32: ts,
            ts: ext_ts,
        });
        self.window = 1;
        self.last_transit = Some(arrival - ext_ts);
        self.stats.talkspurts += 1;
        if self.phase == Phase::Idle {
            self.phase = Phase::Waiting {
                until: now + self.to_duration(self.target),
            };
        }
        self.insert(ext_seq, ext_ts, true, payload, now)
    }

    /// A packet at or below the highest sequence number: duplicate, late, or reordered.
    fn push_older(&mut self, ext_seq: i64, ext_ts: i64, payload: P, now: Instant) -> Push {
        let Some(newest) = self.newest else {
            return Push::Discarded;
        };
        let back = newest.seq - ext_seq;
        if back < WINDOW && self.window & (1 << back) != 0 {
            self.stats.duplicate += 1;
            return Push::Duplicate;
        }
        if self.floor.is_some_and(|f| ext_seq <= f) {
            // a packet of the new numbering from before its first arrival: it would land
            // among the old stream's packets, so it is too late to place
            self.stats.late += 1;
            return Push::Late;
        }
        if back >= WINDOW || self.last_played_seq.is_some_and(|p| ext_seq <= p) {
            self.late(ext_ts);
            return Push::Late;
        }
        // Which talkspurt is it in? The next buffered packet above it tells.
        let mut sync = false;
        if let Some((&next_seq, next)) = self.entries.range(ext_seq..).next() {
            if next.sync {
                if next.ts - (next_seq - ext_seq) * self.frame_ts == ext_ts {
                    // the talkspurt's real first packet, overtaken: it becomes the sync point
                    sync = true;
                } else if self.phase != Phase::Playing {
                    // previous talkspurt, which has been played out already
                    self.late(ext_ts);
                    return Push::Late;
                }
            }
        }
        if !sync {
            let in_current = !self.entries.range(..ext_seq).any(|(_, e)| e.sync);
            if in_current && self.phase == Phase::Playing && ext_ts < self.cursor {
                self.late(ext_ts);
                return Push::Late;
            }
        }
        self.window |= 1 << back;
        self.stats.reordered += 1;
        if sync {
            if let Some(next) = self.entries.range_mut(ext_seq..).next() {
                next.1.sync = false;
            }
        }
        self.insert(ext_seq, ext_ts, sync, payload, now)
    }

    fn late(&mut self, ext_ts: i64) {
        self.stats.late += 1;
        // It needed this much more delay than it got: cover it from now on. A packet
        // later than any delay could cover (a straggler from long ago) says nothing.
        let lateness = self.cursor - ext_ts;
        if (0..=self.max_delay_ts()).contains(&lateness) {
            self.raise_target(self.delay + lateness + self.frame_ts);
        }
    }

    fn raise_target(&mut self, needed: i64) {
        let t = self.clamp_frames(needed);
        if t > self.target {
            self.target = t;
        }
        // any sign of trouble restarts the wait before shrinking
        self.stable_since = None;
    }

    fn observe_jitter(&mut self, transit: i64, _now: Instant) {
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
            // hostile timestamps: keep the estimate finite and meaningful
            self.jitter = self.jitter.min(1e9);
            let needed = (self.jitter * self.cfg.jitter_factor) as i64;
            if self.clamp_frames(needed) > self.target {
                self.raise_target(needed);
            }
        }
        self.last_transit = Some(transit);
    }

    fn observe_slack(&mut self, ext_seq: i64, ext_ts: i64, now: Instant) {
        let in_current = !self.entries.range(..ext_seq).any(|(_, e)| e.sync);
        if self.phase == Phase::Playing && in_current {
            let slack = ext_ts - self.cursor;
            self.min_slack = Some(self.min_slack.map_or(slack, |m| m.min(slack)));
            self.slack_since.get_or_insert(now);
        }
    }

    fn insert(&mut self, ext_seq: i64, ts: i64, sync: bool, payload: P, now: Instant) -> Push {
        if self.entries.len() >= self.cfg.capacity.max(1) {
            let oldest = self.entries.keys().next().copied();
            if oldest.is_some_and(|o| ext_seq < o) {
                self.stats.overflow += 1;
                return Push::Overflow;
            }
            if let Some((_, dropped)) = self.entries.pop_first() {
                self.stats.overflow += 1;
                if dropped.sync {
                    // keep the talkspurt boundary on what is now its first packet
                    if let Some(mut first) = self.entries.first_entry() {
                        first.get_mut().sync = true;
                    }
                }
            }
        }
        match self.entries.entry(ext_seq) {
            std::collections::btree_map::Entry::Occupied(_) => {
                self.stats.duplicate += 1;
                Push::Duplicate
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Entry {
                    ts,
                    arrival: now,
                    sync,
                    payload,
                });
                Push::Buffered
            }
        }
    }

    /// Called once per frame tick. `None`: nothing to play (not started, waiting out the
    /// delay at a talkspurt start, or idle after the sender stopped).
    pub fn pop(&mut self, now: Instant) -> Option<Playout<P>> {
        self.maybe_lower_target(now);
        self.check_compress(now);
        match self.phase {
            Phase::Idle => return None,
            Phase::Waiting { until } => {
                if now < until {
                    return None;
                }
                // whatever is first now starts the talkspurt
                let Some(mut first) = self.entries.first_entry() else {
                    self.phase = Phase::Idle;
                    return None;
                };
                first.get_mut().sync = true;
                self.phase = Phase::Playing;
            }
            Phase::Playing => {}
        }
        self.play(now)
    }

    fn play(&mut self, now: Instant) -> Option<Playout<P>> {
        loop {
            let Some((&seq, front)) = self.entries.first_key_value() else {
                return self.underrun();
            };
            let (ts, sync, arrival) = (front.ts, front.sync, front.arrival);
            if sync {
                let until = arrival + self.to_duration(self.target);
                if now < until {
                    self.phase = Phase::Waiting { until };
                    return None;
                }
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.sync = false;
                }
                self.cursor = ts;
                self.delay = self.target;
                self.talkspurt_since = Some(now);
                self.min_slack = None;
                self.slack_since = None;
                self.compress_pending = false;
            }
            if ts < self.cursor {
                // overtaken by the playout point (timestamps that go backwards in a talkspurt)
                self.entries.remove(&seq);
                self.note_played(seq);
                self.stats.late += 1;
                continue;
            }
            if ts >= self.cursor + self.frame_ts {
                self.underruns = 0;
                return Some(self.lost_slot());
            }
            if self.compress_pending && self.entries.len() >= 2 {
                // drop this frame and play the next one: one frame less delay
                self.entries.remove(&seq);
                self.note_played(seq);
                self.cursor += self.frame_ts;
                self.delay -= self.frame_ts;
                self.stats.compressed += 1;
                self.compress_pending = false;
                continue;
            }
            let Some(entry) = self.entries.remove(&seq) else {
                continue;
            };
            self.note_played(seq);
            self.cursor += self.frame_ts;
            self.underruns = 0;
            self.stats.played += 1;
            return Some(Playout::Frame {
                ts: entry.ts as u32,
                payload: entry.payload,
            });
        }
    }

    fn lost_slot(&mut self) -> Playout<P> {
        let ts = self.cursor as u32;
        self.cursor += self.frame_ts;
        self.stats.concealed += 1;
        Playout::Lost { ts }
    }

    fn underrun(&mut self) -> Option<Playout<P>> {
        self.underruns += 1;
        if self.underruns > self.cfg.underrun_limit {
            self.phase = Phase::Idle;
            return None;
        }
        // The target is not raised here: running dry is also what the end of every
        // talkspurt looks like. Late packets and jitter raise it.
        if self.delay + self.frame_ts <= self.max_delay_ts() {
            // hold the playout point: this slot is concealed either way, and waiting
            // one frame more is what a delay spike needs
            self.delay += self.frame_ts;
            self.stats.stretched += 1;
            self.stats.concealed += 1;
            return Some(Playout::Lost {
                ts: self.cursor as u32,
            });
        }
        Some(self.lost_slot())
    }

    fn note_played(&mut self, seq: i64) {
        if let Some(last) = self.last_played_seq {
            if seq > last + 1 {
                self.stats.lost += (seq - last - 1) as u64;
            }
        }
        self.last_played_seq = Some(self.last_played_seq.map_or(seq, |l| l.max(seq)));
    }

    /// Mid-talkspurt shrink, decided once per observation window (a quarter of
    /// `shrink_interval`): only in a talkspurt older than `shrink_interval`, and only when
    /// every packet in the window had at least a frame more slack than the target needs.
    fn check_compress(&mut self, now: Instant) {
        let window = self.cfg.shrink_interval / 4;
        let Some(since) = self.slack_since else {
            return;
        };
        if now.saturating_duration_since(since) < window {
            return;
        }
        let long = self
            .talkspurt_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.shrink_interval);
        if long
            && self.phase == Phase::Playing
            && self.delay > self.target
            && self
                .min_slack
                .is_some_and(|s| s >= self.target + self.frame_ts)
        {
            self.compress_pending = true;
        }
        self.min_slack = None;
        self.slack_since = None;
    }

    fn maybe_lower_target(&mut self, now: Instant) {
        let since = *self.stable_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.cfg.shrink_interval {
            return;
        }
        self.stable_since = Some(now);
        let from_jitter = self.clamp_frames((self.jitter * self.cfg.jitter_factor) as i64);
        if self.target > from_jitter {
            self.target = self
                .clamp_frames(self.target - self.frame_ts)
                .max(from_jitter);
        }
    }
}

/// Turns `Lost` frames into PCM: the last good frame repeated with a linear fade to
/// silence over `fade_frames` frames, then silence. Enough for the odd lost packet in a
/// recording or a transcript; not G.711 Appendix I.
#[derive(Debug, Clone)]
pub struct Concealer {
    last: Vec<i16>,
    run: u32,
    fade_frames: u32,
}

impl Concealer {
    /// Fades over 3 frames (60 ms at 20 ms frames).
    pub fn new(frame_samples: usize) -> Self {
        Concealer::with_fade(frame_samples, 3)
    }

    pub fn with_fade(frame_samples: usize, fade_frames: u32) -> Self {
        Concealer {
            last: Vec::with_capacity(frame_samples),
            run: 0,
            fade_frames: fade_frames.max(1),
        }
    }

    /// A good frame was played: remember it and end any concealment run.
    pub fn good(&mut self, pcm: &[i16]) {
        self.last.clear();
        self.last.extend_from_slice(pcm);
        self.run = 0;
    }

    /// Fills `out` for one lost frame.
    pub fn conceal(&mut self, out: &mut [i16]) {
        self.run = self.run.saturating_add(1);
        if self.run > self.fade_frames || self.last.is_empty() {
            out.fill(0);
            return;
        }
        // gain falls linearly from (1 - (run-1)/F) to (1 - run/F) across this frame, Q16
        let f = i64::from(self.fade_frames);
        let n = out.len().max(1) as i64;
        let start = (f - i64::from(self.run) + 1) << 16;
        for (i, (o, s)) in out.iter_mut().zip(self.last.iter().cycle()).enumerate() {
            let gain = (start - ((i as i64) << 16) / n) / f;
            *o = ((i64::from(*s) * gain) >> 16) as i16;
        }
    }
}

#[cfg(test)]
mod tests;
