//! In-band DTMF detection: Goertzel filters over 8 kHz PCM, for trunks that send the tones
//! in the audio instead of (or as well as) RFC 4733.
//!
//! # Design
//!
//! The detector looks at windows of [`BLOCK`] = 102 samples (12.75 ms), one every [`HOP`] =
//! 51 samples (half overlapping). Each window runs eight Goertzel filters at the row
//! (697/770/852/941 Hz) and column (1209/1336/1477/1633 Hz) frequencies and is a *hit* for
//! a key when all of these hold:
//!
//! - **relative peak**: in each group the strongest tone is `relative_peak_db` (8 dB) above
//!   the other three;
//! - **level**: each of the two tones is at least `min_level_dbm0` (−32 dBm0);
//! - **twist**: the column tone is at most 8 dB above the row tone (normal twist) and at most
//!   4 dB below it (reverse twist), the limits ITU-T Q.24 gives for most networks (each
//!   measured with 1 dB of allowance: a press at the limit must not fail on noise);
//! - **energy share**: the two tones carry at least `tone_share` (80 %) of the window's
//!   (DC-free) energy: speech and music spread their energy over many frequencies;
//! - **harmonics**: neither tone has a second or third harmonic within `harmonic_db` (15 dB)
//!   of itself. Voices and instruments are harmonic (a clarinet-like timbre has no second
//!   harmonic but a strong third); a DTMF generator is not (Q.23 asks for distortion
//!   products 20 dB under the tones), and G.711 adds nothing near that level. These
//!   filters use a Hann window, so the other tone does not leak in, and run only on windows
//!   that passed everything else; a harmonic that falls within the window's main lobe of
//!   the other tone (the second harmonic of the row for keys 2, 3, 6, B, C) is not measured.
//!
//! Level, twist and share use each tone's power measured where it is: a tone 1.5 % off
//! (Q.24's acceptance limit) reads up to 1.5 dB low in a 78 Hz-wide filter at the nominal
//! frequency, so for the two chosen tones the detector also runs filters at ±1.5 % and
//! takes the largest. Without that, a press at the edge of the tolerance with 7 dB of
//! twist fails either the share or the twist limit.
//!
//! Consecutive hits for one key form a *run* only if the tones are where and as steady as a
//! key press's: the phase advance of each filter's output from one window to the next
//! measures the tone's actual frequency, which must lie within ±(1.5 % + 7 Hz) of nominal
//! (Q.24 rejects beyond ±3.5 %) and wander less than 10 Hz over the run. A key press is
//! crystal-steady; a voice glides (a synthetic high-pitched vowel with two formants on
//! 852/1209 Hz, found by the espeak-ng test, swept 40 Hz in 25 ms). A press starts when a
//! run reaches `hits_to_begin` (4) windows and ends after `misses_to_end` (5) consecutive
//! windows that are not hits for it.
//!
//! # Timing (Q.24: accept tones and pauses of 40 ms, do not split a tone on a 10 ms break)
//!
//! A window hits when the tone covers about 86 of its 102 samples (the 80 % share), so:
//!
//! - a 40 ms tone (320 samples) leaves 250 samples of qualifying window starts, at least
//!   four windows: detected. Four hits need starts 153 samples apart, so a tone must last
//!   about 28 ms to count: shorter bursts are rejected;
//! - a gap of g samples spoils about (g + 70) / 51 consecutive windows: a 40 ms pause at
//!   least seven, so the press ends and a repeat of the same key counts again; a 10 ms
//!   drop-out at most three (four with noise), so one press is not split in two.
//!
//! **Why 102-sample windows and not the classic 205.** 205 samples (25.6 ms, 39 Hz bins)
//! separates the frequencies more sharply, but a 40 ms tone holds at most one such window
//! and a 40 ms pause can vanish in one; 102 samples (78 Hz bins, the block size of spandsp
//! and Asterisk) with half overlap times presses to ~6 ms. The coarser bins cost
//! selectivity, which the relative-peak, share, harmonic and frequency checks make up for:
//! the neighbouring row tone leaks ~20 dB down into a row filter, well under the 8 dB
//! relative-peak limit. Cost: one 102-sample eight-filter pass per 51 samples (see
//! `benches/dtmf.rs`).

use std::f32::consts::PI;

use super::DigitEvent;

/// Samples per analysis window (12.75 ms at 8 kHz).
pub const BLOCK: usize = 102;

/// Samples from one window to the next (windows overlap by half).
pub const HOP: usize = BLOCK / 2;

/// The rate the detector works at.
pub const SAMPLE_RATE: u32 = 8000;

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Frequency deviation a key press may have (ITU-T Q.24: accept ±1.5 %, the usual figure).
pub const FREQ_TOLERANCE: f32 = 0.015;

/// How far a tone's frequency, measured from its phase advance between windows, may be from
/// nominal: Q.24's ±1.5 % ± 2 Hz acceptance plus 5 Hz for the measurement (noise and the
/// other tone's leakage move it by a few Hz). Q.24's must-reject limit, ±3.5 %, lies beyond.
fn freq_limit_hz(freq: f32) -> f32 {
    FREQ_TOLERANCE * freq + 2.0 + 5.0
}

/// How far the measured frequency of a tone may wander within one run of hits (Hz): a key
/// press is crystal-steady; voices glide.
const MAX_FREQ_SPREAD_HZ: f32 = 10.0;

/// Allowance on the twist limits for the measurement: a tone between the ±1.5 % filters
/// reads up to ~0.3 dB low and noise moves a 12.75 ms measurement by a few tenths of a dB,
/// so a press at Q.24's limit must not be judged against it to the hundredth.
const TWIST_MEASUREMENT_DB: f32 = 1.0;

/// Mean square of a 0 dBm0 sine in 16-bit linear PCM: the G.711 digital milliwatt is
/// 3.17 dB below a full-scale sine (amplitude ≈ 22 700).
const DBM0_POWER: f32 = 2.58e8;

/// Detector thresholds (see the module docs). The defaults are the tested ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InbandConfig {
    /// Lowest level of each tone, dBm0.
    pub min_level_dbm0: f32,
    /// How far the column (high) tone may be above the row (low) tone, dB (the detector
    /// allows 1 dB more for measurement error).
    pub normal_twist_db: f32,
    /// How far the row tone may be above the column tone, dB (plus 1 dB, as above).
    pub reverse_twist_db: f32,
    /// How far each tone must be above the other tones of its group, dB.
    pub relative_peak_db: f32,
    /// Share of the window energy the two tones must carry (0–1).
    pub tone_share: f32,
    /// How far each tone's second and third harmonics must be below the tone, dB.
    pub harmonic_db: f32,
    /// Consecutive hit windows (51 samples apart) that start a press.
    pub hits_to_begin: u32,
    /// Consecutive windows without a hit for the key that end it.
    pub misses_to_end: u32,
}

impl Default for InbandConfig {
    fn default() -> Self {
        InbandConfig {
            min_level_dbm0: -32.0,
            normal_twist_db: 8.0,
            reverse_twist_db: 4.0,
            relative_peak_db: 8.0,
            tone_share: 0.8,
            harmonic_db: 15.0,
            hits_to_begin: 4,
            misses_to_end: 5,
        }
    }
}

fn db_to_ratio(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

fn coef(freq: f32) -> f32 {
    2.0 * (2.0 * PI * freq / SAMPLE_RATE as f32).cos()
}

/// Power of one Goertzel filter's output, scaled to the mean square of the sinusoid it
/// measures (a sine of amplitude A gives A²/2).
fn goertzel_power(s1: f32, s2: f32, c: f32) -> f32 {
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    (2.0 * p / (BLOCK * BLOCK) as f32).max(0.0)
}

/// Power at `freq` of the window, scaled like [`goertzel_power`].
fn goertzel(block: &[f32; BLOCK], freq: f32) -> f32 {
    let c = coef(freq);
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    goertzel_power(s1, s2, c)
}

/// The output of a Goertzel filter at `freq` over the Hann-windowed samples, as a complex
/// number (up to a factor that depends only on `freq`): its magnitude squared is the
/// power at `freq` (unscaled: only ratios of two are used), its phase advances from one
/// window to the next by the tone's actual frequency times [`HOP`].
fn goertzel_windowed(block: &[f32; BLOCK], window: &[f32; BLOCK], freq: f32) -> (f32, f32) {
    let w = 2.0 * PI * freq / SAMPLE_RATE as f32;
    let (cos, sin) = (w.cos(), w.sin());
    let c = 2.0 * cos;
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for (&x, &h) in block.iter().zip(window) {
        let s0 = x * h + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 - cos * s2, sin * s2)
}

fn norm_sq((re, im): (f32, f32)) -> f32 {
    re * re + im * im
}

/// Whether a tone's harmonic can be measured beside the other tone: the Hann
/// window's main lobe is ±2 bins (±157 Hz); beyond it the other tone leaks in at −31 dB or
/// less. The second harmonics of the rows of keys 2, 3, 6, B and C fall inside it (58–93 Hz
/// from the column tone); the other harmonics below 3.9 kHz (third harmonics of the rows,
/// 2091–2823 Hz; second harmonics of the columns, 2418–3266 Hz; third of 1209 Hz, 3627 Hz)
/// never do.
fn harmonic_measurable(harmonic: f32, other: f32) -> bool {
    (harmonic - other).abs() >= 2.0 * SAMPLE_RATE as f32 / BLOCK as f32
}

/// What one window holds: a key's tone pair that passed every check.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hit {
    key: char,
    /// Mean square of the two tones together.
    power: f32,
    /// Row and column filter indices (0–3 each).
    row: usize,
    col: usize,
    /// The row and column tones' windowed filter outputs, for the phase advance to the
    /// next window.
    phase: [(f32, f32); 2],
}

/// Consecutive hit windows for one key that agree on the tones' frequencies.
#[derive(Debug, Clone, Copy)]
struct Run {
    hits: u32,
    start: u64,
    last: Hit,
    /// Lowest and highest frequency deviation seen (Hz) for the row and the column tone.
    spread: [(f32, f32); 2],
}

impl Run {
    fn new(h: Hit, start: u64) -> Self {
        Run {
            hits: 1,
            start,
            last: h,
            spread: [(f32::INFINITY, f32::NEG_INFINITY); 2],
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Active {
    key: char,
    start: u64,
    /// End (exclusive sample index) of the last hit window.
    last_hit_end: u64,
    power: f32,
    misses: u32,
}

/// Streaming in-band DTMF detector for one audio direction of one call.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    coefs: [f32; 8],
    /// Each filter's own phase advance over HOP samples, and the frequency limit.
    nominal_advance: [f32; 8],
    freq_limit: [f32; 8],
    window: [f32; BLOCK],
    min_power: f32,
    normal_twist: f32,
    reverse_twist: f32,
    relative_peak: f32,
    tone_share: f32,
    harmonic: f32,
    hits_to_begin: u32,
    misses_to_end: u32,
    block: [f32; BLOCK],
    fill: usize,
    /// The current window's samples: `block[..fill]` holds samples, `block[0]` is sample
    /// number `block_start`.
    block_start: u64,
    /// The run of consecutive, frequency-consistent hit windows for one key.
    run: Option<Run>,
    active: Option<Active>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new(InbandConfig::default())
    }
}

impl InbandDetector {
    pub fn new(cfg: InbandConfig) -> Self {
        let mut coefs = [0.0; 8];
        let mut nominal_advance = [0.0; 8];
        let mut freq_limit = [0.0; 8];
        for (k, &f) in ROWS.iter().chain(&COLS).enumerate() {
            coefs[k] = coef(f);
            let w = 2.0 * PI * f / SAMPLE_RATE as f32;
            nominal_advance[k] = (w * HOP as f32).rem_euclid(2.0 * PI);
            freq_limit[k] = freq_limit_hz(f);
        }
        let mut window = [0.0; BLOCK];
        for (i, w) in window.iter_mut().enumerate() {
            *w = 0.5 - 0.5 * (2.0 * PI * i as f32 / (BLOCK - 1) as f32).cos();
        }
        InbandDetector {
            coefs,
            nominal_advance,
            freq_limit,
            window,
            min_power: DBM0_POWER * db_to_ratio(cfg.min_level_dbm0),
            normal_twist: db_to_ratio(cfg.normal_twist_db + TWIST_MEASUREMENT_DB),
            reverse_twist: db_to_ratio(cfg.reverse_twist_db + TWIST_MEASUREMENT_DB),
            relative_peak: db_to_ratio(cfg.relative_peak_db),
            tone_share: cfg.tone_share,
            harmonic: db_to_ratio(-cfg.harmonic_db),
            hits_to_begin: cfg.hits_to_begin.max(1),
            misses_to_end: cfg.misses_to_end.max(1),
            block: [0.0; BLOCK],
            fill: 0,
            block_start: 0,
            run: None,
            active: None,
        }
    }

    /// Samples consumed so far (the clock of `DigitEvent::start_ts`, before wrapping).
    pub fn samples(&self) -> u64 {
        self.block_start + self.fill as u64
    }

    /// Feeds 8 kHz PCM in chunks of any size; returns the start and end events of presses
    /// decided by these samples, in order.
    pub fn push(&mut self, pcm: &[i16]) -> Vec<DigitEvent> {
        let mut out = Vec::new();
        let mut rest = pcm;
        while !rest.is_empty() {
            let take = (BLOCK - self.fill).min(rest.len());
            let (now, later) = rest.split_at(take);
            for (dst, &s) in self.block[self.fill..self.fill + take].iter_mut().zip(now) {
                *dst = f32::from(s);
            }
            self.fill += take;
            rest = later;
            if self.fill == BLOCK {
                let hit = self.analyze();
                self.step(hit, &mut out);
                self.block.copy_within(HOP.., 0);
                self.fill = BLOCK - HOP;
                self.block_start += HOP as u64;
            }
        }
        out
    }

    /// Ends the stream (call over): a press still in progress ends at its last hit. The
    /// detector starts afresh after this, with its sample clock running on.
    pub fn finish(&mut self) -> Option<DigitEvent> {
        self.run = None;
        let a = self.active.take()?;
        Some(Self::event(&a, a.last_hit_end, true))
    }

    fn event(a: &Active, end: u64, ended: bool) -> DigitEvent {
        let dbm0 = 10.0 * (a.power.max(1.0) / DBM0_POWER).log10();
        DigitEvent {
            digit: a.key,
            start_ts: a.start as u32,
            duration: end.saturating_sub(a.start).min(u64::from(u32::MAX)) as u32,
            volume: (-dbm0).round().clamp(0.0, 63.0) as u8,
            ended,
        }
    }

    /// Adds the hit `h` (the window at `start`) to `run` if both tones advanced in phase
    /// as tones within the frequency tolerance do, and steadily; otherwise a new run starts
    /// at `h`.
    fn extend_run(&self, mut run: Run, h: Hit, start: u64) -> Run {
        let idx = [h.row, 4 + h.col];
        for (i, &k) in idx.iter().enumerate() {
            let (re0, im0) = run.last.phase[i];
            let (re1, im1) = h.phase[i];
            // arg(h · conj(last)): the phase advance over HOP samples.
            let advance = (im1 * re0 - re1 * im0).atan2(re1 * re0 + im1 * im0);
            let mut dev = (advance - self.nominal_advance[k]).rem_euclid(2.0 * PI);
            if dev > PI {
                dev -= 2.0 * PI;
            }
            let hz = dev * SAMPLE_RATE as f32 / (2.0 * PI * HOP as f32);
            let (lo, hi) = run.spread[i];
            let (lo, hi) = (lo.min(hz), hi.max(hz));
            if hz.abs() > self.freq_limit[k] || hi - lo > MAX_FREQ_SPREAD_HZ {
                return Run::new(h, start);
            }
            run.spread[i] = (lo, hi);
        }
        run.hits += 1;
        run.last = h;
        run
    }

    fn step(&mut self, hit: Option<Hit>, out: &mut Vec<DigitEvent>) {
        let start = self.block_start;
        let end = start + BLOCK as u64;
        self.run = hit.map(|h| match self.run {
            Some(run) if run.last.key == h.key => self.extend_run(run, h, start),
            _ => Run::new(h, start),
        });
        if let Some(a) = &mut self.active {
            match hit {
                Some(h) if h.key == a.key => {
                    a.last_hit_end = end;
                    a.misses = 0;
                    a.power = a.power.max(h.power);
                }
                _ => {
                    a.misses += 1;
                    if a.misses >= self.misses_to_end {
                        out.push(Self::event(a, a.last_hit_end, true));
                        self.active = None;
                    }
                }
            }
        }
        if self.active.is_none() {
            if let (Some(run), Some(h)) = (self.run, hit) {
                if run.hits >= self.hits_to_begin {
                    let a = Active {
                        key: h.key,
                        start: run.start,
                        last_hit_end: end,
                        power: h.power,
                        misses: 0,
                    };
                    out.push(Self::event(&a, end, false));
                    self.active = Some(a);
                }
            }
        }
    }

    /// Whether `tone` (whose windowed power is `fundamental`) has a second or third harmonic
    /// within `harmonic_db` of it (each measured where the `other` tone lets it be, see
    /// [`harmonic_measurable`], and below 3.9 kHz).
    fn strong_harmonic(&self, tone: f32, other: f32, fundamental: f32) -> bool {
        [2.0, 3.0].into_iter().any(|multiple| {
            let h = multiple * tone;
            h <= 3900.0
                && harmonic_measurable(h, other)
                && norm_sq(goertzel_windowed(&self.block, &self.window, h))
                    > fundamental * self.harmonic
        })
    }

    /// The power of a tone near `freq`: the largest of the filter at `freq` (`nominal`)
    /// and at `freq` ± [`FREQ_TOLERANCE`].
    fn tone_power(&self, freq: f32, nominal: f32) -> f32 {
        let lo = goertzel(&self.block, freq * (1.0 - FREQ_TOLERANCE));
        let hi = goertzel(&self.block, freq * (1.0 + FREQ_TOLERANCE));
        nominal.max(lo).max(hi)
    }

    fn analyze(&self) -> Option<Hit> {
        let c = self.coefs;
        let mut s1 = [0.0f32; 8];
        let mut s2 = [0.0f32; 8];
        let mut sum = 0.0f32;
        let mut sum_sq = 0.0f32;
        for &x in &self.block {
            for k in 0..8 {
                let s0 = x + c[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
            sum += x;
            sum_sq += x * x;
        }
        let n = BLOCK as f32;
        let total = (sum_sq - sum * sum / n) / n;
        if total <= 0.0 {
            return None;
        }
        let mut p = [0.0f32; 8];
        for k in 0..8 {
            p[k] = goertzel_power(s1[k], s2[k], c[k]);
        }
        let (rows, cols) = p.split_at(4);
        let r = argmax(rows);
        let col = argmax(cols);
        let peaks_stand_out = |group: &[f32], best: usize| {
            group
                .iter()
                .enumerate()
                .all(|(i, &q)| i == best || q * self.relative_peak <= group[best])
        };
        if !peaks_stand_out(rows, r) || !peaks_stand_out(cols, col) {
            return None;
        }
        // A tone off frequency measures low in its filter; a cheap bound first (1.5 %
        // costs at most 1.5 dB), then the level where it is, for the level, twist and share.
        let floor = self.min_power * db_to_ratio(-2.0);
        if rows[r] < floor || cols[col] < floor {
            return None;
        }
        let pr = self.tone_power(ROWS[r], rows[r]);
        let pc = self.tone_power(COLS[col], cols[col]);
        if pr < self.min_power || pc < self.min_power {
            return None;
        }
        if pc > pr * self.normal_twist || pr > pc * self.reverse_twist {
            return None;
        }
        if pr + pc < self.tone_share * total {
            return None;
        }
        // The tones through the Hann window: for the harmonic check, and for the phase
        // (the rectangular filters let the other tone leak in ~20 dB down, enough to move
        // the measured frequency by 10 Hz; through the window it is under 40 dB).
        let yr = goertzel_windowed(&self.block, &self.window, ROWS[r]);
        let yc = goertzel_windowed(&self.block, &self.window, COLS[col]);
        if self.strong_harmonic(ROWS[r], COLS[col], norm_sq(yr))
            || self.strong_harmonic(COLS[col], ROWS[r], norm_sq(yc))
        {
            return None;
        }
        Some(Hit {
            key: KEYPAD[r][col],
            power: pr + pc,
            row: r,
            col,
            phase: [yr, yc],
        })
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711;
    use std::f32::consts::PI;
    use std::path::{Path, PathBuf};

    /// xorshift64*: reproducible noise and phases without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next_f32(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (x >> 40) as f32 / (1u64 << 24) as f32
        }

        /// Approximately standard normal (sum of 12 uniforms).
        fn gauss(&mut self) -> f32 {
            (0..12).map(|_| self.next_f32()).sum::<f32>() - 6.0
        }
    }

    fn amplitude(dbm0: f32) -> f32 {
        (2.0 * DBM0_POWER * db_to_ratio(dbm0)).sqrt()
    }

    fn freqs(key: char) -> (f32, f32) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, &k) in row.iter().enumerate() {
                if k == key {
                    return (ROWS[r], COLS[c]);
                }
            }
        }
        panic!("not a key: {key}")
    }

    /// A tone pair: row at `row_dbm0`, column at `col_dbm0`, frequencies scaled by
    /// `1 + offset`.
    fn tone_pair(
        key: char,
        row_dbm0: f32,
        col_dbm0: f32,
        offset: f32,
        ms: u32,
        rng: &mut Rng,
    ) -> Vec<f32> {
        let (fr, fc) = freqs(key);
        let (fr, fc) = (fr * (1.0 + offset), fc * (1.0 + offset));
        let (ar, ac) = (amplitude(row_dbm0), amplitude(col_dbm0));
        let (pr, pc) = (rng.next_f32() * 2.0 * PI, rng.next_f32() * 2.0 * PI);
        (0..ms * 8)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                ar * (2.0 * PI * fr * t + pr).sin() + ac * (2.0 * PI * fc * t + pc).sin()
            })
            .collect()
    }

    fn tone(key: char, dbm0: f32, ms: u32, rng: &mut Rng) -> Vec<f32> {
        tone_pair(key, dbm0, dbm0, 0.0, ms, rng)
    }

    fn silence(ms: u32) -> Vec<f32> {
        vec![0.0; (ms * 8) as usize]
    }

    /// Key sequence with `on`/`off` ms timing, at `dbm0` per tone.
    fn sequence(keys: &str, dbm0: f32, on: u32, off: u32, rng: &mut Rng) -> Vec<f32> {
        let mut v = silence(off);
        for k in keys.chars() {
            v.extend(tone(k, dbm0, on, rng));
            v.extend(silence(off));
        }
        v
    }

    fn add_noise(v: &mut [f32], dbm0: f32, rng: &mut Rng) {
        let sigma = (DBM0_POWER * db_to_ratio(dbm0)).sqrt();
        for s in v {
            *s += sigma * rng.gauss();
        }
    }

    fn pcm(v: &[f32]) -> Vec<i16> {
        v.iter()
            .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    fn ulaw(v: &[i16]) -> Vec<i16> {
        v.iter()
            .map(|&s| g711::ulaw_decode(g711::ulaw_encode(s)))
            .collect()
    }

    fn alaw(v: &[i16]) -> Vec<i16> {
        v.iter()
            .map(|&s| g711::alaw_decode(g711::alaw_encode(s)))
            .collect()
    }

    fn detect_chunked(pcm: &[i16], chunk: usize) -> Vec<DigitEvent> {
        let mut d = InbandDetector::default();
        let mut out = Vec::new();
        for c in pcm.chunks(chunk.max(1)) {
            out.extend(d.push(c));
        }
        out.extend(d.finish());
        out
    }

    fn detect(pcm: &[i16]) -> Vec<DigitEvent> {
        detect_chunked(pcm, 160)
    }

    /// The keys pressed, checking that each press has exactly one start and one end, in
    /// that order.
    fn keys(evs: &[DigitEvent]) -> String {
        let mut open: Option<DigitEvent> = None;
        let mut s = String::new();
        for e in evs {
            match (open, e.ended) {
                (None, false) => {
                    open = Some(*e);
                    s.push(e.digit);
                }
                (Some(o), true) => {
                    assert_eq!((o.digit, o.start_ts), (e.digit, e.start_ts), "{evs:?}");
                    open = None;
                }
                _ => panic!("start/end out of order: {evs:?}"),
            }
        }
        assert!(open.is_none(), "press without end: {evs:?}");
        s
    }

    const ALL: &str = "0123456789*#ABCD";

    #[test]
    fn every_key_at_every_level() {
        let mut rng = Rng(1);
        for dbm0 in [-3.0, -10.0, -20.0, -28.0] {
            let v = sequence(ALL, dbm0, 60, 60, &mut rng);
            let evs = detect(&pcm(&v));
            assert_eq!(keys(&evs), ALL, "{dbm0} dBm0");
            for (i, e) in evs.iter().filter(|e| e.ended).enumerate() {
                // Onset at 60 ms + i * 120 ms, 60 ms long: within one block.
                let start = 480 + i as u32 * 960;
                assert!(e.start_ts.abs_diff(start) <= BLOCK as u32, "{e:?}");
                assert!(e.duration.abs_diff(480) <= BLOCK as u32, "{e:?}");
                // Volume: the two tones together are 3 dB above each.
                let want = -(dbm0 + 3.0);
                assert!((f32::from(e.volume) - want).abs() <= 2.0, "{e:?} {want}");
            }
        }
    }

    #[test]
    fn too_quiet_is_not_a_digit() {
        let mut rng = Rng(2);
        let v = sequence("159", -40.0, 100, 60, &mut rng);
        assert_eq!(keys(&detect(&pcm(&v))), "");
    }

    #[test]
    fn twist_within_q24_limits_only() {
        let mut rng = Rng(3);
        let case = |row: f32, col: f32, rng: &mut Rng| {
            let mut v = silence(50);
            for k in "3690".chars() {
                v.extend(tone_pair(k, row, col, 0.0, 80, rng));
                v.extend(silence(50));
            }
            keys(&detect(&ulaw(&pcm(&v))))
        };
        // Normal twist (column louder) up to 8 dB, reverse up to 4 dB.
        assert_eq!(case(-17.0, -10.0, &mut rng), "3690", "normal 7 dB");
        assert_eq!(case(-10.0, -13.5, &mut rng), "3690", "reverse 3.5 dB");
        assert_eq!(case(-20.0, -10.0, &mut rng), "", "normal 10 dB");
        assert_eq!(case(-10.0, -16.0, &mut rng), "", "reverse 6 dB");
        // One tone alone is no digit.
        assert_eq!(case(-10.0, -80.0, &mut rng), "");
        assert_eq!(case(-80.0, -10.0, &mut rng), "");
    }

    #[test]
    fn tones_in_noise() {
        let mut rng = Rng(4);
        for (tone_dbm0, noise_dbm0) in [(-10.0, -30.0), (-20.0, -38.0), (-6.0, -22.0)] {
            let mut v = sequence(ALL, tone_dbm0, 70, 70, &mut rng);
            add_noise(&mut v, noise_dbm0, &mut rng);
            assert_eq!(
                keys(&detect(&ulaw(&pcm(&v)))),
                ALL,
                "tones {tone_dbm0} noise {noise_dbm0}"
            );
        }
        // Noise alone, loud or soft: nothing.
        for noise_dbm0 in [-5.0, -20.0, -40.0] {
            let mut v = silence(3000);
            add_noise(&mut v, noise_dbm0, &mut rng);
            assert_eq!(keys(&detect(&pcm(&v))), "");
        }
    }

    #[test]
    fn minimum_tone_and_pause() {
        let mut rng = Rng(5);
        // 40 ms tones with 40 ms pauses, the Q.24 minimums, repeated keys included.
        for offset_ms in 0..13 {
            let mut v = silence(offset_ms);
            v.extend(sequence("11112580##", -12.0, 40, 40, &mut rng));
            assert_eq!(
                keys(&detect(&ulaw(&pcm(&v)))),
                "11112580##",
                "offset {offset_ms} ms"
            );
        }
        // Bursts of 15 ms are not presses, whatever their alignment.
        for offset_ms in 0..13 {
            let mut v = silence(offset_ms);
            v.extend(sequence("123456", -10.0, 15, 60, &mut rng));
            assert_eq!(keys(&detect(&pcm(&v))), "", "offset {offset_ms} ms");
        }
        // A 10 ms drop-out inside a tone does not split the press.
        for offset_ms in 0..13 {
            let mut v = silence(offset_ms + 20);
            v.extend(tone('5', -10.0, 60, &mut rng));
            v.extend(silence(10));
            v.extend(tone('5', -10.0, 60, &mut rng));
            v.extend(silence(60));
            assert_eq!(keys(&detect(&pcm(&v))), "5", "offset {offset_ms} ms");
        }
    }

    /// 600 presses with everything drawn at random inside the acceptance ranges: 40–150 ms
    /// tones and pauses, row tone −26…−3 dBm0, twist from 3.5 dB reverse to 7 dB normal,
    /// frequencies off by up to ±1.5 %, white noise 15–30 dB under the weaker tone, PCMU.
    #[test]
    fn random_presses_inside_the_acceptance_ranges() {
        let mut rng = Rng(12);
        let mut v = silence(50);
        let mut want = String::new();
        for _ in 0..600 {
            let key = ALL
                .chars()
                .nth((rng.next_f32() * 16.0) as usize % 16)
                .unwrap();
            want.push(key);
            let twist = -3.5 + rng.next_f32() * 10.5;
            let row = -26.0 + rng.next_f32() * 23.0;
            let (row, col) = if row + twist > -3.0 {
                (-3.0 - twist, -3.0)
            } else {
                (row, row + twist)
            };
            let offset = (rng.next_f32() * 2.0 - 1.0) * 0.015;
            let on = 40 + (rng.next_f32() * 110.0) as u32;
            let mut t = tone_pair(key, row, col, offset, on, &mut rng);
            t.extend(silence(40 + (rng.next_f32() * 110.0) as u32));
            add_noise(
                &mut t,
                row.min(col) - 15.0 - rng.next_f32() * 15.0,
                &mut rng,
            );
            v.extend(t);
        }
        let got = keys(&detect(&ulaw(&pcm(&v))));
        let missed = want.len() as i64 - got.len() as i64;
        eprintln!(
            "random presses: {} sent, {} detected, exact sequence: {}",
            want.len(),
            got.len(),
            got == want
        );
        assert_eq!(got, want, "{missed} fewer");
    }

    #[test]
    fn off_frequency_and_gliding_tones_are_rejected() {
        let mut rng = Rng(13);
        // Q.24: tones 3.5 % off must not be accepted.
        for offset in [-0.035, 0.035] {
            let mut v = silence(40);
            for k in ALL.chars() {
                v.extend(tone_pair(k, -10.0, -10.0, offset, 80, &mut rng));
                v.extend(silence(60));
            }
            assert_eq!(keys(&detect(&pcm(&v))), "", "offset {offset}");
        }
        // A pair sweeping through the key's frequencies, as a voice glides: -3 % to +3 % in
        // 40 ms (15 % per 100 ms; the run's 10 Hz steadiness limit rejects glides faster
        // than ~0.8 Hz/ms, 11 % per 100 ms at 697 Hz). Level, twist and share pass while
        // the pair is near the key; the frequency never holds still.
        for k in ALL.chars() {
            let (fr, fc) = freqs(k);
            let a = amplitude(-10.0);
            let n = 320;
            let (mut pr, mut pc) = (0.0f32, 0.0f32);
            let mut v = silence(40);
            for i in 0..n {
                let glide = 1.0 - 0.03 + 0.06 * i as f32 / n as f32;
                pr += 2.0 * PI * fr * glide / 8000.0;
                pc += 2.0 * PI * fc * glide / 8000.0;
                v.push(a * (pr.sin() + pc.sin()));
            }
            v.extend(silence(60));
            assert_eq!(keys(&detect(&pcm(&v))), "", "glide on {k}");
        }
    }

    #[test]
    fn short_dropout_in_noise_does_not_split_a_press() {
        let mut rng = Rng(14);
        for offset_ms in 0..13 {
            let mut v = silence(offset_ms + 20);
            v.extend(tone('9', -12.0, 60, &mut rng));
            v.extend(silence(10));
            v.extend(tone('9', -12.0, 60, &mut rng));
            v.extend(silence(60));
            add_noise(&mut v, -27.0, &mut rng);
            assert_eq!(keys(&detect(&ulaw(&pcm(&v)))), "9", "offset {offset_ms} ms");
        }
    }

    #[test]
    fn g711_both_laws_with_noise() {
        let mut rng = Rng(6);
        let mut v = sequence(ALL, -15.0, 50, 50, &mut rng);
        add_noise(&mut v, -35.0, &mut rng);
        let p = pcm(&v);
        assert_eq!(keys(&detect(&ulaw(&p))), ALL);
        assert_eq!(keys(&detect(&alaw(&p))), ALL);
    }

    #[test]
    fn frequency_tolerance() {
        let mut rng = Rng(7);
        for offset in [-0.015, 0.015] {
            let mut v = silence(40);
            for k in ALL.chars() {
                v.extend(tone_pair(k, -10.0, -10.0, offset, 60, &mut rng));
                v.extend(silence(60));
            }
            assert_eq!(keys(&detect(&pcm(&v))), ALL, "offset {offset}");
        }
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let mut rng = Rng(8);
        let mut v = sequence("147*2580369#", -12.0, 45, 45, &mut rng);
        add_noise(&mut v, -40.0, &mut rng);
        let p = ulaw(&pcm(&v));
        let want = detect_chunked(&p, p.len());
        assert_eq!(keys(&want), "147*2580369#");
        for chunk in [1, 7, 80, 101, 102, 103, 160, 161, 4096] {
            assert_eq!(detect_chunked(&p, chunk), want, "chunk {chunk}");
        }
        // Empty pushes change nothing.
        let mut d = InbandDetector::default();
        assert!(d.push(&[]).is_empty());
        assert_eq!(d.samples(), 0);
    }

    #[test]
    fn a_press_still_down_ends_at_finish() {
        let mut rng = Rng(9);
        let mut v = silence(20);
        v.extend(tone('D', -10.0, 200, &mut rng));
        let mut d = InbandDetector::default();
        let mut evs = Vec::new();
        let mut reported_at = None;
        for frame in pcm(&v).chunks(160) {
            evs.extend(d.push(frame));
            if reported_at.is_none() && !evs.is_empty() {
                reported_at = Some(d.samples());
            }
        }
        assert_eq!(evs.len(), 1);
        assert!(!evs[0].ended && evs[0].digit == 'D');
        // The IVR hears of the press within 40 ms of the tone's onset (at sample 160),
        // in the 20 ms frame that completes the fourth hit window.
        let latency = reported_at.unwrap() - 160;
        assert!(latency <= 320, "{latency} samples");
        let end = d.finish().unwrap();
        assert!(end.ended);
        assert!(end.duration.abs_diff(1600) <= BLOCK as u32);
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn hostile_pcm_never_panics() {
        let mut d = InbandDetector::default();
        let extremes: Vec<i16> = (0..10_000)
            .map(|i| match i % 4 {
                0 => i16::MIN,
                1 => i16::MAX,
                2 => 0,
                _ => -1,
            })
            .collect();
        let _ = d.push(&extremes);
        let _ = d.push(&vec![i16::MIN; 5000]);
        let _ = d.push(&vec![i16::MAX; 5000]);
        let mut rng = Rng(10);
        let random: Vec<i16> = (0..50_000)
            .map(|_| (rng.next_f32() * 65535.0 - 32768.0) as i16)
            .collect();
        assert_eq!(keys(&detect(&random)), "");
        let _ = d.finish();
    }

    /// A sox-made file: `gateway/tests/data/dtmf/README.md` has the command.
    #[test]
    fn sox_generated_tones() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dtmf/sox_159star_hash_d.wav");
        let audio = hotline_asr::audio::decode_file(&path).unwrap();
        assert_eq!(audio.rate, SAMPLE_RATE);
        let p: Vec<i16> = audio
            .samples
            .iter()
            .map(|&s| hotline_asr::audio::f32_to_i16(s))
            .collect();
        assert_eq!(keys(&detect(&ulaw(&p))), "159*#D");
    }

    // ---------------------------------------------------------------------------------
    // No false digits on speech and music
    // ---------------------------------------------------------------------------------

    fn clips() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shared = root.join("../shared/fixtures/audio");
        assert!(
            shared.join("manifest.tsv").is_file(),
            "shared fixtures missing at {}: clone the project next to shared/",
            shared.display()
        );
        let mut v = Vec::new();
        for dir in [shared, root.join("fixtures/audio")] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "wav") {
                    v.push(p);
                }
            }
        }
        v.sort();
        v
    }

    fn telephone(path: &Path) -> Vec<i16> {
        let a = hotline_asr::audio::decode_file(path).unwrap();
        let narrow = hotline_asr::resample::resample(&a.samples, a.rate, SAMPLE_RATE);
        narrow
            .iter()
            .map(|&s| hotline_asr::audio::f32_to_i16(s))
            .collect()
    }

    /// Chords of harmonic notes, biased towards the notes nearest the DTMF frequencies
    /// (F5 ≈ 697, A♯5 ≈ 941, E6 ≈ 1336, F♯6 ≈ 1477 Hz, all within 1.5 %), with vibrato and
    /// a plucked/bowed envelope, in four timbres: all harmonics falling as 1/k (strings,
    /// brass), odd harmonics only (clarinet), weak harmonics (flute: −12 dB, −20 dB), and
    /// octave-doubled organ. (Two *pure* sines on a row/column pair are DTMF by definition;
    /// no detector can tell them from a key press.)
    fn music(seconds: u32, rng: &mut Rng) -> Vec<f32> {
        const RISKY: [i32; 4] = [77, 82, 88, 90]; // MIDI F5, A#5, E6, F#6
        let chord_ms = 250u32;
        let mut out = vec![0.0f32; (seconds * 8000) as usize];
        let n_chords = seconds * 1000 / chord_ms;
        for c in 0..n_chords {
            let timbre = (rng.next_f32() * 4.0) as u32;
            let harmonics: &[f32] = match timbre {
                0 => &[1.0, 0.5, 0.33, 0.25, 0.2, 0.17],
                1 => &[1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14],
                2 => &[1.0, 0.25, 0.1],
                _ => &[1.0, 0.7, 0.0, 0.5],
            };
            let voices = 2 + (rng.next_f32() * 3.0) as usize;
            let start = (c * chord_ms * 8) as usize;
            let len = (chord_ms * 8 * 3 / 2) as usize; // notes ring into the next chord
            let level = amplitude(-10.0 - rng.next_f32() * 15.0) / voices as f32;
            for v in 0..voices {
                let midi = if v < 2 && rng.next_f32() < 0.6 {
                    RISKY[(rng.next_f32() * 4.0) as usize % 4]
                } else {
                    55 + (rng.next_f32() * 45.0) as i32
                };
                let f0 = 440.0 * 2f32.powf((midi - 69) as f32 / 12.0);
                let vib_rate = 4.5 + rng.next_f32() * 2.0;
                let plucked = rng.next_f32() < 0.5;
                let mut phase = vec![rng.next_f32() * 2.0 * PI; harmonics.len()];
                for i in 0..len {
                    let Some(slot) = out.get_mut(start + i) else {
                        break;
                    };
                    let t = i as f32 / 8000.0;
                    let env = if plucked {
                        (t / 0.005).min(1.0) * (-t * 6.0).exp()
                    } else {
                        (t / 0.04).min(1.0) * (1.0 - (t - 0.3).max(0.0) / 0.075).max(0.0)
                    };
                    let f = f0 * (1.0 + 0.005 * (2.0 * PI * vib_rate * t).sin());
                    let mut x = 0.0;
                    for (k, (&a, ph)) in harmonics.iter().zip(phase.iter_mut()).enumerate() {
                        let fk = f * (k + 1) as f32;
                        *ph += 2.0 * PI * fk / 8000.0;
                        if a > 0.0 && fk < 3900.0 {
                            x += a * ph.sin();
                        }
                    }
                    *slot += level * env * x;
                }
            }
        }
        out
    }

    #[test]
    fn no_digits_on_music() {
        let mut rng = Rng(11);
        let m = music(120, &mut rng);
        let p = pcm(&m);
        let mut false_digits = Vec::new();
        for (variant, x) in [
            ("pcmu", ulaw(&p)),
            ("pcma", alaw(&p)),
            ("linear", p.clone()),
        ] {
            for e in detect(&x).iter().filter(|e| !e.ended) {
                false_digits.push(format!(
                    "{variant}: '{}' at {:.2} s",
                    e.digit,
                    e.start_ts as f64 / 8000.0
                ));
            }
        }
        eprintln!(
            "in-band detector over 120 s of synthetic music x 3 variants: {} false digits",
            false_digits.len()
        );
        assert!(false_digits.is_empty(), "{false_digits:#?}");
    }

    /// espeak-ng's formant voices are steadier and more periodic than people (the classic
    /// talk-off risk), at five pitches, in Mandarin and English, prompts full of digits.
    #[test]
    fn no_digits_on_synthetic_speech() {
        let dir = tempfile::tempdir().unwrap();
        let texts = [
            (
                "cmn",
                "您好，欢迎致电12345政务服务便民热线。咨询请按1，投诉请按2，举报请按3，\
                 建议请按4。跟您核实一下，您的电话是一三八零零一三八零零零，对吗？\
                 请问还有其他可以帮您的吗？感谢您的来电，再见。",
            ),
            (
                "en",
                "Thank you for calling the twelve three four five service hotline. Press one \
                 for consultation, two for complaints, or stay on the line. Your number is \
                 one three eight, zero zero one three, eight zero zero zero. Star, pound, \
                 nine. She sells sea shells by the sea shore.",
            ),
        ];
        let mut seconds = 0.0;
        let mut false_digits = Vec::new();
        for (voice, text) in texts {
            for pitch in [0, 25, 50, 75, 99] {
                let wav = dir.path().join(format!("{voice}_{pitch}.wav"));
                let status = std::process::Command::new("espeak-ng")
                    .args(["-v", voice, "-p", &pitch.to_string(), "-w"])
                    .arg(&wav)
                    .arg(text)
                    .status()
                    .expect("espeak-ng runs (scripts/setup.sh installs it)");
                assert!(status.success());
                let p = telephone(&wav);
                seconds += p.len() as f64 / 8000.0;
                for e in detect(&ulaw(&p)).iter().filter(|e| !e.ended) {
                    false_digits.push(format!("{voice} pitch {pitch}: '{}'", e.digit));
                }
            }
        }
        eprintln!(
            "in-band detector over {seconds:.1} s of espeak-ng speech: {} false digits",
            false_digits.len()
        );
        assert!(false_digits.is_empty(), "{false_digits:#?}");
    }

    #[test]
    fn no_digits_on_speech() {
        let clips = clips();
        assert!(clips.len() >= 25, "{} clips", clips.len());
        let mut seconds = 0.0;
        let mut false_digits = Vec::new();
        for path in &clips {
            let p = telephone(path);
            seconds += p.len() as f64 / 8000.0;
            // As it arrives over PCMU and PCMA, and 6 dB hotter (clipping) and 10 dB softer.
            let louder: Vec<i16> = p.iter().map(|&s| s.saturating_mul(2)).collect();
            let softer: Vec<i16> = p.iter().map(|&s| s / 3).collect();
            for (variant, x) in [
                ("pcmu", ulaw(&p)),
                ("pcma", alaw(&p)),
                ("pcmu+6dB", ulaw(&louder)),
                ("pcmu-10dB", ulaw(&softer)),
            ] {
                for e in detect(&x).iter().filter(|e| !e.ended) {
                    false_digits.push(format!(
                        "{} {variant}: '{}' at {:.2} s",
                        path.file_name().unwrap().to_string_lossy(),
                        e.digit,
                        e.start_ts as f64 / 8000.0
                    ));
                }
            }
        }
        eprintln!(
            "in-band detector over {} clips, {seconds:.1} s x 4 variants: {} false digits",
            clips.len(),
            false_digits.len()
        );
        assert!(false_digits.is_empty(), "{false_digits:#?}");
    }
}
