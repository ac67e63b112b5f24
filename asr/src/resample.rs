//! Band-limited sample-rate conversion for rational ratios (8 k ↔ 16 k, 44.1 k → 16 k, …).
//!
//! A Kaiser-windowed sinc evaluated at the L polyphase offsets of the ratio L/M and
//! precomputed once. The cut-off sits below the lower of the two Nyquist frequencies,
//! so downsampling does not alias and upsampling does not image. Streaming: `process`
//! may be called with any chunk sizes and gives the same output as one call on the
//! concatenation; `finish` flushes the tail.

use std::collections::VecDeque;

/// Zero crossings of the sinc kept on each side of the centre (at the lower rate).
const ZERO_CROSSINGS: f64 = 16.0;
/// Kaiser β: ~80 dB stop band.
const KAISER_BETA: f64 = 8.0;
/// Cut-off as a fraction of the lower Nyquist frequency.
const ROLLOFF: f64 = 0.92;

pub struct Resampler {
    up: u64,
    down: u64,
    /// Taps per phase.
    taps: usize,
    /// `taps` weights for each of the `up` phases, phase-major.
    filter: Vec<f32>,
    /// Input not yet fully consumed; `history[0]` is absolute input index `history_start`.
    history: VecDeque<f32>,
    history_start: u64,
    /// Absolute input samples received.
    received: u64,
    /// Next output sample index.
    next_out: u64,
    /// Taps reach this many input samples back of the centre (and `taps - half - 1` ahead).
    half: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zeroth-order modified Bessel function of the first kind.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half_sq = (x / 2.0) * (x / 2.0);
    for k in 1..64 {
        term *= half_sq / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// Returns `None` when either rate is zero.
    pub fn new(from_rate: u32, to_rate: u32) -> Option<Self> {
        if from_rate == 0 || to_rate == 0 {
            return None;
        }
        let g = gcd(from_rate as u64, to_rate as u64);
        let up = to_rate as u64 / g;
        let down = from_rate as u64 / g;
        // Bandwidth relative to the input rate.
        let scale = (up as f64 / down as f64).min(1.0) * ROLLOFF;
        let reach = (ZERO_CROSSINGS / scale).ceil() as u64;
        let taps = (2 * reach) as usize;
        let mut filter = vec![0f32; taps * up as usize];
        for phase in 0..up {
            let frac = phase as f64 / up as f64;
            let row = &mut filter[phase as usize * taps..(phase as usize + 1) * taps];
            let mut sum = 0.0;
            let mut weights = vec![0f64; taps];
            for (k, w) in weights.iter_mut().enumerate() {
                // Input sample at offset (k - reach + 1) from the centre index.
                let offset = k as f64 - reach as f64 + 1.0;
                let t = frac - offset;
                let x = t / reach as f64;
                if x.abs() >= 1.0 {
                    continue;
                }
                let window = bessel_i0(KAISER_BETA * (1.0 - x * x).sqrt()) / bessel_i0(KAISER_BETA);
                let arg = std::f64::consts::PI * scale * t;
                let sinc = if arg.abs() < 1e-12 {
                    1.0
                } else {
                    arg.sin() / arg
                };
                *w = scale * sinc * window;
                sum += *w;
            }
            // Normalise each phase to unit DC gain so that interpolation adds no ripple at 0 Hz.
            for (dst, w) in row.iter_mut().zip(&weights) {
                *dst = (w / sum) as f32;
            }
        }
        Some(Resampler {
            up,
            down,
            taps,
            filter,
            history: VecDeque::new(),
            history_start: 0,
            received: 0,
            next_out: 0,
            half: reach - 1,
        })
    }

    /// Output samples that `n` input samples produce in total.
    pub fn output_len(&self, n: u64) -> u64 {
        (n * self.up).div_ceil(self.down)
    }

    /// Feeds input and appends every output sample that is now fully determined.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.history.extend(input.iter().copied());
        self.received += input.len() as u64;
        self.drain(out, false);
    }

    /// Flushes the tail (the filter's look-ahead is zero-padded).
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        self.drain(out, true);
    }

    fn drain(&mut self, out: &mut Vec<f32>, finishing: bool) {
        let total_out = self.output_len(self.received);
        let ahead = self.taps as u64 - self.half - 1;
        loop {
            if self.next_out >= total_out {
                break;
            }
            let pos = self.next_out * self.down;
            let centre = pos / self.up;
            let phase = (pos % self.up) as usize;
            if !finishing && centre + ahead >= self.received {
                break;
            }
            let first = centre as i64 - self.half as i64;
            let row = &self.filter[phase * self.taps..(phase + 1) * self.taps];
            let mut acc = 0f32;
            for (k, w) in row.iter().enumerate() {
                let idx = first + k as i64;
                if idx < self.history_start as i64 {
                    continue;
                }
                let rel = (idx as u64 - self.history_start) as usize;
                if let Some(x) = self.history.get(rel) {
                    acc += x * w;
                }
            }
            out.push(acc);
            self.next_out += 1;
            // Drop input that no later output can reach.
            let next_first = ((self.next_out * self.down) / self.up).saturating_sub(self.half);
            while self.history_start < next_first && !self.history.is_empty() {
                self.history.pop_front();
                self.history_start += 1;
            }
        }
    }
}

/// Converts a whole buffer from one rate to another.
pub fn resample(input: &[f32], from_rate: u32, to_rate: u32) -> Vec<f32> {
    if from_rate == to_rate {
        return input.to_vec();
    }
    let Some(mut r) = Resampler::new(from_rate, to_rate) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(r.output_len(input.len() as u64) as usize);
    r.process(input, &mut out);
    r.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| {
                (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() as f32 * 0.5
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn lengths_follow_the_ratio() {
        assert_eq!(resample(&vec![0.0; 8000], 8000, 16000).len(), 16000);
        assert_eq!(resample(&vec![0.0; 16000], 16000, 8000).len(), 8000);
        assert_eq!(resample(&vec![0.0; 44100], 44100, 16000).len(), 16000);
        assert_eq!(resample(&vec![0.0; 441], 44100, 16000).len(), 160);
    }

    #[test]
    fn passband_tone_keeps_its_level() {
        let x = tone(1000.0, 8000, 1.0);
        let y = resample(&x, 8000, 16000);
        let mid = &y[2000..14000];
        let ratio = rms(mid) / rms(&x[1000..7000]);
        assert!((ratio - 1.0).abs() < 0.01, "gain {ratio}");
        // Upsampled tone matches the ideal 16 kHz tone sample by sample.
        let ideal = tone(1000.0, 16000, 1.0);
        let err: f64 = mid
            .iter()
            .zip(&ideal[2000..14000])
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .fold(0.0, f64::max);
        assert!(err < 2e-3, "max err {err}");
    }

    #[test]
    fn downsampling_removes_what_would_alias() {
        // 6 kHz cannot exist at 8 kHz; it must be filtered, not folded to 2 kHz.
        let x = tone(6000.0, 16000, 1.0);
        let y = resample(&x, 16000, 8000);
        assert!(rms(&y[500..7500]) < 0.5 * 0.707 * 1e-3, "leak {}", rms(&y));
    }

    #[test]
    fn chunked_equals_whole() {
        let x = tone(440.0, 44100, 0.5);
        let whole = resample(&x, 44100, 16000);
        let mut r = Resampler::new(44100, 16000).unwrap();
        let mut chunked = Vec::new();
        for c in x.chunks(333) {
            r.process(c, &mut chunked);
        }
        r.finish(&mut chunked);
        assert_eq!(whole.len(), chunked.len());
        for (a, b) in whole.iter().zip(&chunked) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
