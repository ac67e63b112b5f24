//! Voice activity detection and utterance end-pointing, sans-IO.
//!
//! [`Vad`] labels fixed 16 ms frames of 16 kHz audio as speech or not. The speech score
//! comes from earshot's small streaming neural detector (pure Rust, ~8 KiB of state per
//! stream), which holds up in the babble and street noise that sinks an energy threshold;
//! an absolute level gate keeps digital silence and faint line hiss out whatever the
//! score. The detector also scores steady telephone-band hiss as speech (a −50 dBFS trunk
//! hiss is "speech" in nearly every frame), so steadiness tells that noise apart: [`Vad`]
//! takes a steady, quiet sound for the line's noise floor and wants speech above it.
//! [`Endpointer`] turns the frame stream into utterances: an onset needs a few speech
//! frames in a row and a level that moves as speech does, an utterance ends after a
//! configurable silence, and one that runs too long is split at its quietest frame. Both
//! take samples only; time is the frame index.

/// Samples per VAD frame at 16 kHz (16 ms), as the detector requires.
pub const FRAME: usize = 256;
pub const FRAME_MS: u64 = 16;

#[derive(Debug, Clone)]
pub struct VadConfig {
    /// Detector score that starts speech…
    pub threshold: f32,
    /// …and the lower score that keeps it going (hysteresis against flicker).
    pub continue_threshold: f32,
    /// Frames quieter than this (dBFS; a ±1.0 square wave is 0 dB) are never speech.
    pub min_level_dbfs: f32,
    /// Speech must be this far above the line's noise floor.
    pub snr_margin_db: f32,
    /// A sound whose frames stay within this range for [`STEADY_FRAMES`] is noise…
    pub steady_range_db: f32,
    /// …when it is no louder than this: a held vowel can be as steady, but not this quiet
    /// on a telephone line.
    pub noise_max_dbfs: f32,
}

/// Frames (400 ms) a steady sound must last before it counts as the line's noise. Band-
/// limited hiss stays within ±1 dB frame to frame; quiet speech can hold within 4 dB for
/// 300 ms, but not within 3 dB for 400.
pub const STEADY_FRAMES: usize = 25;

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold: 0.5,
            continue_threshold: 0.35,
            min_level_dbfs: -55.0,
            snr_margin_db: 4.0,
            steady_range_db: 3.0,
            noise_max_dbfs: -40.0,
        }
    }
}

/// Energy of a frame in dBFS.
pub fn frame_db(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let power = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    10.0 * (power + 1e-10).log10()
}

pub struct Vad {
    cfg: VadConfig,
    detector: Box<earshot::Detector>,
    in_speech: bool,
    padded: Vec<f32>,
    highpass: [Biquad; 2],
    filtered: Vec<f32>,
    /// Levels of the last [`STEADY_FRAMES`] frames, oldest first.
    recent: std::collections::VecDeque<f32>,
    /// The line's noise floor (dBFS): the level of the last steady quiet stretch, or the
    /// quietest frame since, whichever is lower.
    floor_db: f32,
}

/// A second-order IIR section (direct form I).
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Biquad {
    /// Butterworth-family high-pass at `cutoff` Hz with quality `q` (RBJ cookbook).
    fn highpass(cutoff: f32, q: f32, rate: f32) -> Self {
        let w = 2.0 * std::f32::consts::PI * cutoff / rate;
        let (sin, cos) = w.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        Biquad {
            b: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
            ],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn run(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// Mains hum and rumble live below this; speech carries its energy well above it (the
/// telephone band starts at 300 Hz). The detector scores a 50 Hz hum over line hiss as
/// speech, so it only ever sees audio with this band removed.
const HIGHPASS_HZ: f32 = 120.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameLabel {
    pub speech: bool,
    pub db: f32,
}

impl Vad {
    pub fn new(cfg: VadConfig) -> Self {
        // Two sections with the Q of a 4th-order Butterworth: 50 Hz is ~30 dB down.
        let rate = crate::WHISPER_RATE as f32;
        Vad {
            cfg,
            detector: earshot::Detector::default_boxed(),
            in_speech: false,
            padded: vec![0.0; FRAME],
            highpass: [
                Biquad::highpass(HIGHPASS_HZ, 0.541_196_1, rate),
                Biquad::highpass(HIGHPASS_HZ, 1.306_563, rate),
            ],
            filtered: vec![0.0; FRAME],
            recent: std::collections::VecDeque::with_capacity(STEADY_FRAMES + 1),
            floor_db: -100.0,
        }
    }

    /// The noise floor the next frame is judged against.
    pub fn floor_db(&self) -> f32 {
        self.floor_db
    }

    fn track_floor(&mut self, db: f32) {
        self.recent.push_back(db);
        if self.recent.len() > STEADY_FRAMES {
            self.recent.pop_front();
        }
        // A quieter frame means the noise dropped (or never was as loud): follow at once.
        self.floor_db = self.floor_db.min(db);
        if self.recent.len() == STEADY_FRAMES {
            let (lo, hi, sum) = self
                .recent
                .iter()
                .fold((f32::MAX, f32::MIN, 0.0), |(lo, hi, sum), &d| {
                    (lo.min(d), hi.max(d), sum + d)
                });
            let mean = sum / STEADY_FRAMES as f32;
            if hi - lo < self.cfg.steady_range_db && mean <= self.cfg.noise_max_dbfs {
                self.floor_db = mean;
            }
        }
    }

    /// Labels one frame of [`FRAME`] samples (a shorter last frame is zero-padded).
    pub fn push(&mut self, frame: &[f32]) -> FrameLabel {
        let frame = if frame.len() == FRAME {
            frame
        } else {
            let n = frame.len().min(FRAME);
            self.padded.fill(0.0);
            self.padded[..n].copy_from_slice(&frame[..n]);
            &self.padded[..]
        };
        for (dst, &x) in self.filtered.iter_mut().zip(frame) {
            let y = self.highpass[0].run(x);
            *dst = self.highpass[1].run(y);
        }
        let frame = &self.filtered[..];
        let db = frame_db(frame);
        let score = self.detector.predict_f32(frame);
        let threshold = if self.in_speech {
            self.cfg.continue_threshold
        } else {
            self.cfg.threshold
        };
        // Judged against the floor before this frame: a steady stretch becomes the floor
        // only once it has lasted, and speech must then rise above it.
        let speech = score >= threshold
            && db >= self.cfg.min_level_dbfs
            && db >= self.floor_db + self.cfg.snr_margin_db;
        self.track_floor(db);
        self.in_speech = speech;
        FrameLabel { speech, db }
    }
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Speech frames in a row that open an utterance.
    pub onset_frames: u64,
    /// Silence that closes an utterance.
    pub end_silence_ms: u64,
    /// Longest utterance; a longer one is split at its quietest frame.
    pub max_utterance_ms: u64,
    /// Once an utterance is this long, `long_end_silence_ms` of silence closes it
    /// (0: never). A caller describing a problem talks for 20 s with short breaths in
    /// between; cutting at a breath rather than at `max_utterance_ms` gives the reader
    /// text sooner and the decoder less audio at once (a 15 s utterance was 1.7 s of
    /// decode on these 2 cores), and a breath is a better cut than the quietest frame.
    pub long_after_ms: u64,
    pub long_end_silence_ms: u64,
    /// Utterances with less speech than this are dropped (clicks, coughs).
    pub min_speech_ms: u64,
    /// An onset is only tentative until its speech frames' levels (past the first two,
    /// which a step in the line's noise can make look like a rise) span `confirm_range_db`, or
    /// one reaches `confirm_loud_dbfs`; one still steady after `confirm_ms` was a noise
    /// that the detector scored as speech, and is dropped.
    pub confirm_ms: u64,
    pub confirm_range_db: f32,
    pub confirm_loud_dbfs: f32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            onset_frames: 3,
            end_silence_ms: 600,
            max_utterance_ms: 25_000,
            long_after_ms: 0,
            long_end_silence_ms: 300,
            min_speech_ms: 200,
            confirm_ms: 320,
            confirm_range_db: 6.0,
            confirm_loud_dbfs: -40.0,
        }
    }
}

impl EndpointConfig {
    /// How far back (in frames) an onset's start can lie when it is announced.
    pub fn onset_reach_frames(&self) -> u64 {
        self.onset_frames + self.confirm_ms.div_ceil(FRAME_MS)
    }

    /// Whether an utterance whose speech spans `frames` (start to last speech frame) is
    /// long, so that `long_end_silence_ms` ends it.
    pub fn is_long(&self, frames: u64) -> bool {
        let long_after = self.long_after_ms / FRAME_MS;
        long_after > 0 && frames >= long_after
    }
}

/// An utterance in frames: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utterance {
    pub start_frame: u64,
    pub end_frame: u64,
}

impl Utterance {
    pub fn start_ms(&self) -> u64 {
        self.start_frame * FRAME_MS
    }
    pub fn end_ms(&self) -> u64 {
        self.end_frame * FRAME_MS
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Speech began at this frame (an utterance is now open).
    Start { frame: u64 },
    /// An utterance is complete.
    End(Utterance),
}

enum State {
    /// `run` holds the levels of the speech frames in a row so far.
    Idle {
        run: Vec<f32>,
    },
    /// Opened but not yet announced: the level has not moved like speech yet.
    Tentative(Open),
    Open(Open),
}

struct Open {
    start: u64,
    last_speech: u64,
    speech_frames: u64,
    /// Energy of every frame since `start`, for choosing a split point.
    energies: Vec<f32>,
    /// Quietest and loudest speech frame since `start`, past the first two. Frames that
    /// are not speech do not count: a noise that stops is not speech that moved.
    level_lo: f32,
    level_hi: f32,
    /// A cut offered by [`Endpointer::offer_split`]: (end of its speech, frame where the
    /// next part would begin).
    offered: Option<(u64, u64)>,
}

impl Open {
    /// Pushes the level of the next frame.
    fn push_level(&mut self, label: FrameLabel) {
        self.energies.push(label.db);
        if label.speech && self.energies.len() > 2 {
            self.level_lo = self.level_lo.min(label.db);
            self.level_hi = self.level_hi.max(label.db);
        }
    }
}

pub struct Endpointer {
    cfg: EndpointConfig,
    state: State,
    frame: u64,
}

impl Endpointer {
    pub fn new(cfg: EndpointConfig) -> Self {
        Endpointer {
            cfg,
            state: State::Idle { run: Vec::new() },
            frame: 0,
        }
    }

    /// Frames seen so far.
    pub fn frames(&self) -> u64 {
        self.frame
    }

    /// Whether an utterance is open, and since which frame.
    pub fn open_since(&self) -> Option<u64> {
        match &self.state {
            State::Open(o) => Some(o.start),
            State::Idle { .. } | State::Tentative(_) => None,
        }
    }

    /// The open utterance's last speech frame. After a split it is the last one before
    /// the split if the speaker had stopped by then, not the split frame.
    pub fn last_speech(&self) -> Option<u64> {
        match &self.state {
            State::Open(o) => Some(o.last_speech),
            State::Idle { .. } | State::Tentative(_) => None,
        }
    }

    fn min_speech_frames(&self) -> u64 {
        self.cfg.min_speech_ms.div_ceil(FRAME_MS)
    }

    /// Feeds the label of the next frame.
    pub fn push(&mut self, label: FrameLabel, events: &mut Vec<EndpointEvent>) {
        let now = self.frame;
        self.frame += 1;
        let end_silence = self.cfg.end_silence_ms.div_ceil(FRAME_MS).max(1);
        let long_silence = self
            .cfg
            .long_end_silence_ms
            .div_ceil(FRAME_MS)
            .clamp(1, end_silence);
        let max_frames = (self.cfg.max_utterance_ms / FRAME_MS).max(2);
        let min_speech = self.min_speech_frames();
        match &mut self.state {
            State::Idle { run } => {
                if label.speech {
                    run.push(label.db);
                    if run.len() as u64 >= self.cfg.onset_frames {
                        let n = run.len() as u64;
                        let mut open = Open {
                            start: now + 1 - n,
                            last_speech: now,
                            speech_frames: n,
                            energies: Vec::new(),
                            level_lo: f32::MAX,
                            level_hi: f32::MIN,
                            offered: None,
                        };
                        for &db in run.iter() {
                            open.push_level(FrameLabel { speech: true, db });
                        }
                        run.clear();
                        self.state = State::Tentative(open);
                        self.confirm(events);
                    }
                } else {
                    run.clear();
                }
            }
            State::Tentative(open) => {
                open.push_level(label);
                if label.speech {
                    open.last_speech = now;
                    open.speech_frames += 1;
                }
                if now - open.last_speech >= end_silence {
                    self.state = State::Idle { run: Vec::new() };
                } else {
                    self.confirm(events);
                }
            }
            State::Open(open) => {
                open.energies.push(label.db);
                if label.speech {
                    open.last_speech = now;
                    open.speech_frames += 1;
                }
                // Length up to the last speech: the silence being waited out does not count.
                let long = self.cfg.is_long(open.last_speech + 1 - open.start);
                let needed = if long { long_silence } else { end_silence };
                if now - open.last_speech >= needed {
                    let utt = Utterance {
                        start_frame: open.start,
                        end_frame: open.last_speech + 1,
                    };
                    if open.speech_frames >= min_speech {
                        events.push(EndpointEvent::End(utt));
                    }
                    self.state = State::Idle { run: Vec::new() };
                } else if now + 1 - open.start >= max_frames {
                    // Split in the second half, so neither part is tiny: at the offered
                    // cut if there is one there, else at the quietest frame.
                    let half = open.energies.len() / 2;
                    let (end, resume) = match open.offered.filter(|&(end, resume)| {
                        end > open.start && resume >= open.start + half as u64 && resume <= now
                    }) {
                        Some(cut) => cut,
                        None => {
                            let split = quietest_from(open, half).max(open.start + 1);
                            (split, split)
                        }
                    };
                    events.push(EndpointEvent::End(Utterance {
                        start_frame: open.start,
                        end_frame: end,
                    }));
                    let rel = ((resume - open.start) as usize).min(open.energies.len());
                    open.energies.drain(..rel);
                    open.start = resume;
                    open.last_speech = open.last_speech.max(resume);
                    open.speech_frames = open.energies.len() as u64;
                    open.offered = None;
                    events.push(EndpointEvent::Start { frame: resume });
                }
            }
        }
    }

    /// Where the open utterance would be split if it reached `max_utterance_ms` now: the
    /// quietest of its frames from half that length on. `None` before it is that long.
    pub fn split_candidate(&self) -> Option<u64> {
        let State::Open(open) = &self.state else {
            return None;
        };
        let half = (self.cfg.max_utterance_ms / FRAME_MS).max(2) as usize / 2;
        (open.energies.len() > half).then(|| quietest_from(open, half))
    }

    /// Offers a cut of the open utterance that the caller has already prepared a final
    /// for: its speech up to frame `end` (exclusive) and, after it, silence up to frame
    /// `resume`, where the next part would begin. Should the utterance reach
    /// `max_utterance_ms` with this the latest offer and in its second half, it is split
    /// there, into `[start, end)` and an utterance from `resume`, instead of at the
    /// quietest frame: a pause the speaker really made, and a final already decoded.
    pub fn offer_split(&mut self, end: u64, resume: u64) {
        if let State::Open(open) = &mut self.state {
            if open.start < end && end <= resume && resume <= self.frame {
                open.offered = Some((end, resume));
            }
        }
    }

    /// Announces a tentative utterance whose level moves like speech, and drops one that
    /// has stayed steady for `confirm_ms`.
    fn confirm(&mut self, events: &mut Vec<EndpointEvent>) {
        let State::Tentative(open) = &self.state else {
            return;
        };
        if moves_like_speech(&self.cfg, open) {
            let start = open.start;
            let idle = State::Idle { run: Vec::new() };
            if let State::Tentative(open) = std::mem::replace(&mut self.state, idle) {
                self.state = State::Open(open);
            }
            events.push(EndpointEvent::Start { frame: start });
        } else if open.energies.len() as u64 >= self.cfg.confirm_ms.div_ceil(FRAME_MS) {
            self.state = State::Idle { run: Vec::new() };
        }
    }

    /// Closes an open utterance at end of input.
    pub fn finish(&mut self, events: &mut Vec<EndpointEvent>) {
        let state = std::mem::replace(&mut self.state, State::Idle { run: Vec::new() });
        let open = match state {
            State::Open(open) => Some(open),
            // Cut short by the end of input: judged on what there is.
            State::Tentative(open) if moves_like_speech(&self.cfg, &open) => Some(open),
            _ => None,
        };
        if let Some(open) = open {
            if open.speech_frames >= self.min_speech_frames() {
                events.push(EndpointEvent::End(Utterance {
                    start_frame: open.start,
                    end_frame: open.last_speech + 1,
                }));
            }
        }
    }
}

/// The quietest frame of `open` from its `from`-th frame on (the first of equals).
fn quietest_from(open: &Open, from: usize) -> u64 {
    let rel = open
        .energies
        .get(from..)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(from, |(i, _)| from + i);
    open.start + rel as u64
}

/// Whether a tentative utterance's level has moved as speech does: its speech frames past
/// the first two span the confirm range, or one of them is loud.
fn moves_like_speech(cfg: &EndpointConfig, open: &Open) -> bool {
    let moved =
        open.level_hi >= open.level_lo && open.level_hi - open.level_lo >= cfg.confirm_range_db;
    moved || open.level_hi >= cfg.confirm_loud_dbfs
}

/// How whole recordings are cut for batch transcription.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    pub vad: VadConfig,
    pub endpoint: EndpointConfig,
    /// Audio kept before and after each utterance.
    pub pre_pad_ms: u64,
    /// Live transcripts start the final's decode once the trailing silence covers this,
    /// so end_silence - post_pad is the head start the decode gets (300 of the 600 ms).
    /// Batch zh CER over the fixtures (telephone, greedy, no fallback) was 0.518 / 0.525 /
    /// 0.516 at 300 / 200 / 150 ms, but the live Mandarin test (tests/asr_calls.rs) went
    /// from 0.268 to 0.310 at 200, so it stays 300.
    pub post_pad_ms: u64,
    /// Neighbouring utterances closer than this are decoded together while the result
    /// stays within `max_segment_ms`: whisper does better with a sentence of context.
    pub merge_gap_ms: u64,
    pub max_segment_ms: u64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            vad: VadConfig::default(),
            endpoint: EndpointConfig::default(),
            pre_pad_ms: 200,
            post_pad_ms: 300,
            merge_gap_ms: 1000,
            max_segment_ms: 20_000,
        }
    }
}

impl SegmenterConfig {
    /// Defaults with another merge gap and longest merged segment.
    pub fn with_limits(merge_gap_ms: u64, max_segment_ms: u64) -> Self {
        SegmenterConfig {
            merge_gap_ms,
            max_segment_ms: max_segment_ms.max(1000),
            ..SegmenterConfig::default()
        }
    }
}

/// A stretch of a recording in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Span {
    pub fn samples(&self, rate: u32, len: usize) -> std::ops::Range<usize> {
        let s = (self.start_ms * rate as u64 / 1000) as usize;
        let e = (self.end_ms * rate as u64 / 1000) as usize;
        s.min(len)..e.min(len)
    }
}

/// Finds the speech in a whole 16 kHz recording.
pub fn segment(samples: &[f32], cfg: &SegmenterConfig) -> Vec<Span> {
    let mut vad = Vad::new(cfg.vad.clone());
    let mut ep = Endpointer::new(cfg.endpoint.clone());
    let mut events = Vec::new();
    for frame in samples.chunks(FRAME) {
        let label = vad.push(frame);
        ep.push(label, &mut events);
    }
    ep.finish(&mut events);
    let total_ms = samples.len() as u64 * 1000 / crate::WHISPER_RATE as u64;
    let mut spans: Vec<Span> = Vec::new();
    for ev in events {
        let EndpointEvent::End(u) = ev else { continue };
        let span = Span {
            start_ms: u.start_ms().saturating_sub(cfg.pre_pad_ms),
            end_ms: (u.end_ms() + cfg.post_pad_ms).min(total_ms),
        };
        if let Some(last) = spans.last_mut() {
            let close = span.start_ms <= last.end_ms + cfg.merge_gap_ms;
            if close && span.end_ms - last.start_ms <= cfg.max_segment_ms {
                last.end_ms = span.end_ms;
                continue;
            }
            // Padding must not make neighbours overlap.
            if span.start_ms < last.end_ms {
                let mid = (span.start_ms + last.end_ms) / 2;
                last.end_ms = mid;
                spans.push(Span {
                    start_ms: mid,
                    end_ms: span.end_ms,
                });
                continue;
            }
        }
        spans.push(span);
    }
    spans.retain(|s| s.end_ms > s.start_ms);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f32, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 2.0 * amp
            })
            .collect()
    }

    /// Real Mandarin speech from the repository's demo clip, at 16 kHz.
    fn speech() -> Vec<f32> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/audio/demo_zh_aishell1.wav");
        crate::audio::decode_file(&p).unwrap().to_whisper_rate()
    }

    #[test]
    fn silence_and_steady_noise_give_nothing() {
        let mut seed = 1;
        assert!(segment(&vec![0.0; 16000 * 5], &SegmenterConfig::default()).is_empty());
        // Line hiss at about -45 dBFS.
        let hiss = noise(16000 * 10, 0.01, &mut seed);
        assert!(segment(&hiss, &SegmenterConfig::default()).is_empty());
        let hum: Vec<f32> = (0..16000 * 5)
            .map(|i| 0.1 * (2.0 * std::f32::consts::PI * 50.0 * i as f32 / 16000.0).sin())
            .collect();
        assert!(segment(&hum, &SegmenterConfig::default()).is_empty());
        // Quiet line: 50 Hz hum under hiss, the mix the detector alone calls speech.
        let line: Vec<f32> = noise(16000 * 10, 0.006, &mut seed)
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                n + 0.003 * (2.0 * std::f32::consts::PI * 50.0 * i as f32 / 16000.0).sin()
            })
            .collect();
        assert!(segment(&line, &SegmenterConfig::default()).is_empty());
    }

    #[test]
    fn finds_speech_between_silences() {
        let mut seed = 7;
        let s = speech();
        let speech_ms = s.len() as u64 / 16;
        let mut x = noise(16000 * 2, 0.001, &mut seed);
        x.extend(&s);
        x.extend(noise(16000 * 3, 0.001, &mut seed));
        x.extend(&s);
        x.extend(noise(16000, 0.001, &mut seed));
        let spans = segment(&x, &SegmenterConfig::default());
        assert_eq!(spans.len(), 2, "{spans:?}");
        // Each span covers the clip's speech and not much of the silence around it.
        let second = 2000 + speech_ms + 3000;
        assert!(
            spans[0].start_ms >= 1800 && spans[0].end_ms <= 2000 + speech_ms + 400,
            "{spans:?}"
        );
        assert!(
            spans[1].start_ms >= second - 200 && spans[1].end_ms <= second + speech_ms + 400,
            "{spans:?}"
        );
        let covered: u64 = spans.iter().map(|s| s.end_ms - s.start_ms).sum();
        assert!(covered >= speech_ms, "{spans:?}");
    }

    /// 16 kHz audio of a telephone line: `pcm` at 8 kHz with hiss (white in the 4 kHz
    /// band) at `hiss_dbfs` RMS and 50 Hz hum at `hum_dbfs`, through a µ-law round trip.
    fn telephone_line(pcm8k: &[f32], hiss_dbfs: f32, hum_dbfs: f32, seed: &mut u64) -> Vec<f32> {
        let hiss = noise(
            pcm8k.len(),
            10f32.powf(hiss_dbfs / 20.0) * 3f32.sqrt(),
            seed,
        );
        let hum = 10f32.powf(hum_dbfs / 20.0) * 2f32.sqrt();
        let mut line: Vec<i16> = pcm8k
            .iter()
            .zip(&hiss)
            .enumerate()
            .map(|(i, (&x, &n))| {
                let t = i as f32 / 8000.0;
                let v = x + n + hum * (2.0 * std::f32::consts::PI * 50.0 * t).sin();
                crate::audio::f32_to_i16(v)
            })
            .collect();
        crate::g711::ulaw_round_trip(&mut line);
        let line: Vec<f32> = line.iter().map(|&s| f32::from(s) / 32768.0).collect();
        crate::resample::resample(&line, 8000, 16000)
    }

    #[test]
    fn steady_line_hiss_after_digital_silence_is_not_speech() {
        // The detector scores telephone-band hiss as speech in nearly every frame; a call
        // leg's jitter buffer plays digital silence until the line's noise arrives.
        let mut seed = 3;
        for (hiss, hum) in [(-50.0, -45.0), (-45.0, -200.0), (-55.0, -40.0)] {
            for lead_samples in [0, 37, 80, 123] {
                let mut x = vec![0.0f32; 8000 * 2 + lead_samples];
                x.extend(std::iter::repeat_n(1.0, 8000 * 15));
                // The ones mark where the line is live; the line itself carries no speech.
                let live: Vec<f32> = x.iter().map(|_| 0.0).collect();
                let mut line = telephone_line(&live, hiss, hum, &mut seed);
                let silent = 2 * 16000 + 2 * lead_samples;
                line[..silent].fill(0.0);
                let spans = segment(&line, &SegmenterConfig::default());
                assert!(
                    spans.is_empty(),
                    "{hiss}/{hum} dBFS, lead {lead_samples}: {spans:?}"
                );
            }
        }
    }

    #[test]
    fn speech_over_line_hiss_ends_with_the_speech() {
        // Without a noise floor the hiss after the words kept the utterance open until
        // the end of the recording.
        let mut seed = 5;
        let s = crate::resample::resample(&speech(), 16000, 8000);
        let mut x = vec![0.0f32; 8000];
        x.extend(&s);
        x.extend(std::iter::repeat_n(0.0, 8000 * 6));
        let clean = segment(
            &telephone_line(&x, -200.0, -200.0, &mut seed),
            &SegmenterConfig::default(),
        );
        let mut line = telephone_line(&x, -50.0, -45.0, &mut seed);
        line[..16000].fill(0.0);
        let spans = segment(&line, &SegmenterConfig::default());
        assert_eq!(clean.len(), 1, "{clean:?}");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let (a, b) = (spans[0], clean[0]);
        assert!(
            a.start_ms.abs_diff(b.start_ms) <= 200 && a.end_ms.abs_diff(b.end_ms) <= 300,
            "with hiss {a:?}, without {b:?}"
        );
    }

    #[test]
    fn the_floor_follows_a_steady_quiet_line_and_drops_with_it() {
        let mut seed = 9;
        let line = telephone_line(&vec![0.0; 8000 * 2], -50.0, -200.0, &mut seed);
        let mut vad = Vad::new(VadConfig::default());
        let mut last = FrameLabel {
            speech: false,
            db: 0.0,
        };
        for f in line.chunks_exact(FRAME) {
            last = vad.push(f);
        }
        assert!(
            (vad.floor_db() - last.db).abs() < 1.5,
            "{} vs {}",
            vad.floor_db(),
            last.db
        );
        assert!(!last.speech);
        // The line goes digitally silent (what is left is the high-pass filter's tail).
        vad.push(&[0.0; FRAME]);
        assert!(vad.floor_db() < -75.0, "{}", vad.floor_db());
        // A loud steady sound is not taken for the floor: it may be a held vowel.
        let tone: Vec<f32> = (0..16000)
            .map(|i| 0.1 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin())
            .collect();
        for f in tone.chunks(FRAME) {
            vad.push(f);
        }
        assert!(vad.floor_db() < -75.0, "{}", vad.floor_db());
    }

    #[test]
    fn a_steady_quiet_onset_is_dropped_and_a_moving_one_announced_from_its_start() {
        let label = |speech, db| FrameLabel { speech, db };
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut ev = Vec::new();
        // 2 s of "speech" holding -50 ± 1 dB: never announced, never an utterance.
        for i in 0..125 {
            ep.push(label(true, -50.0 + (i % 3) as f32 - 1.0), &mut ev);
        }
        assert!(ev.is_empty(), "{ev:?}");
        // Quiet speech that moves: announced at once, from its first frame.
        for _ in 0..40 {
            ep.push(QUIET, &mut ev);
        }
        let onset = ep.frames();
        for i in 0..40 {
            ep.push(label(true, if i % 12 < 6 { -46.0 } else { -53.0 }), &mut ev);
        }
        assert_eq!(ev, vec![EndpointEvent::Start { frame: onset }]);
        // A steady but loud onset (a held vowel) is announced too.
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut ev = Vec::new();
        for _ in 0..40 {
            ep.push(label(true, -30.0), &mut ev);
        }
        assert_eq!(ev.first(), Some(&EndpointEvent::Start { frame: 0 }));
        // The end of input judges a tentative onset on what there is.
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut ev = Vec::new();
        for i in 0..15 {
            ep.push(label(true, -52.0 + (i % 2) as f32 * 8.0), &mut ev);
        }
        ep.finish(&mut ev);
        assert_eq!(ends(&ev).len(), 1, "{ev:?}");
    }

    const SPEECH: FrameLabel = FrameLabel {
        speech: true,
        db: -20.0,
    };
    const QUIET: FrameLabel = FrameLabel {
        speech: false,
        db: -70.0,
    };

    fn ends(ev: &[EndpointEvent]) -> Vec<Utterance> {
        ev.iter()
            .filter_map(|e| match e {
                EndpointEvent::End(u) => Some(*u),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn end_of_utterance_waits_for_the_configured_silence() {
        let cfg = EndpointConfig {
            end_silence_ms: 600,
            ..Default::default()
        };
        let mut ep = Endpointer::new(cfg);
        let mut ev = Vec::new();
        for _ in 0..50 {
            ep.push(SPEECH, &mut ev);
        }
        assert_eq!(ev, vec![EndpointEvent::Start { frame: 0 }]);
        // 600 ms is 37.5 frames of 16 ms: the 38th quiet frame closes the utterance.
        for _ in 0..37 {
            ep.push(QUIET, &mut ev);
        }
        assert_eq!(ev.len(), 1, "closed too early");
        ep.push(QUIET, &mut ev);
        assert_eq!(
            ev[1],
            EndpointEvent::End(Utterance {
                start_frame: 0,
                end_frame: 50
            })
        );
    }

    #[test]
    fn a_long_utterance_ends_at_a_shorter_pause() {
        let cfg = EndpointConfig {
            end_silence_ms: 600,
            long_after_ms: 8000,
            long_end_silence_ms: 320,
            ..Default::default()
        };
        let mut ep = Endpointer::new(cfg);
        let mut ev = Vec::new();
        // 4.8 s of speech, a 400 ms pause: short, so the pause does not end it.
        for _ in 0..300 {
            ep.push(SPEECH, &mut ev);
        }
        for _ in 0..25 {
            ep.push(QUIET, &mut ev);
        }
        assert!(ends(&ev).is_empty(), "{ev:?}");
        // Speech up to 8.8 s in all (550 frames), then the same pause: 320 ms is
        // 20 frames, and the 20th quiet frame closes it.
        for _ in 325..550 {
            ep.push(SPEECH, &mut ev);
        }
        for _ in 0..19 {
            ep.push(QUIET, &mut ev);
        }
        assert!(ends(&ev).is_empty(), "closed too early: {ev:?}");
        ep.push(QUIET, &mut ev);
        assert_eq!(
            ends(&ev),
            vec![Utterance {
                start_frame: 0,
                end_frame: 550
            }]
        );
        // The next utterance is short again: a 400 ms pause does not end it.
        for _ in 0..100 {
            ep.push(SPEECH, &mut ev);
        }
        for _ in 0..25 {
            ep.push(QUIET, &mut ev);
        }
        assert_eq!(ends(&ev).len(), 1, "{ev:?}");
    }

    #[test]
    fn long_utterance_is_split_at_its_quietest_frame() {
        let cfg = EndpointConfig {
            max_utterance_ms: 10_000,
            ..Default::default()
        };
        let mut ep = Endpointer::new(cfg);
        let mut ev = Vec::new();
        // 10 s is 625 frames; the split point is searched in the second half of those.
        for i in 0..800u64 {
            let db = if i == 500 { -45.0 } else { -20.0 };
            ep.push(FrameLabel { speech: true, db }, &mut ev);
        }
        ep.finish(&mut ev);
        let ends = ends(&ev);
        assert_eq!(
            ends[0],
            Utterance {
                start_frame: 0,
                end_frame: 500
            }
        );
        assert_eq!(
            ends[1],
            Utterance {
                start_frame: 500,
                end_frame: 800
            }
        );
    }

    #[test]
    fn a_long_utterance_is_split_at_the_offered_cut_in_its_second_half() {
        let cfg = EndpointConfig {
            max_utterance_ms: 10_000,
            ..Default::default()
        };
        // (frame the pause starts at, whether the cut is taken): 625 frames to the split,
        // so the cut must leave at least 312 frames before it.
        for (pause, taken) in [(450u64, true), (200, false)] {
            let mut ep = Endpointer::new(cfg.clone());
            let mut ev = Vec::new();
            for i in 0..800u64 {
                let quiet = (pause..pause + 8).contains(&i);
                let db = if i == 500 { -45.0 } else { -20.0 };
                ep.push(FrameLabel { speech: !quiet, db }, &mut ev);
                if i == pause + 7 {
                    ep.offer_split(pause, pause + 7);
                }
            }
            ep.finish(&mut ev);
            let (end, resume) = if taken {
                (pause, pause + 7)
            } else {
                (500, 500)
            };
            assert_eq!(
                ev,
                vec![
                    EndpointEvent::Start { frame: 0 },
                    EndpointEvent::End(Utterance {
                        start_frame: 0,
                        end_frame: end
                    }),
                    EndpointEvent::Start { frame: resume },
                    EndpointEvent::End(Utterance {
                        start_frame: resume,
                        end_frame: 800
                    }),
                ],
                "pause at {pause}"
            );
        }
    }

    #[test]
    fn clicks_are_not_utterances() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut ev = Vec::new();
        for i in 0..200 {
            let speech = (10..14).contains(&i);
            ep.push(FrameLabel { speech, db: -30.0 }, &mut ev);
        }
        ep.finish(&mut ev);
        assert!(
            !ev.iter().any(|e| matches!(e, EndpointEvent::End(_))),
            "{ev:?}"
        );
    }
}
