//! How the VAD behaves on telephone line noise, the measurement behind
//! docs/PERFORMANCE.md "VAD on line noise":
//!
//!   cargo run --release -p hotline-asr --example vad_line_noise [FIXTURES_DIR]
//!
//! 1. Noise alone, as a call leg delivers it: 5 s of digital silence, then 20 s of hiss
//!    (white in the 4 kHz band) at each level, with and without 50 Hz hum at -45 dBFS,
//!    µ-law, fed to a live `Stream` at 40 alignments (0-156 samples of lead). Counted:
//!    alignments that gave the recogniser any job, and the share of noise frames the
//!    VAD labelled speech.
//! 2. Speech over noise: every fixture clip at 8 kHz after 1 s of digital silence, with
//!    hiss at each level from the first sample of the clip, segmented as batch
//!    transcription does. Counted: speech kept (the clean segmentation's time that the
//!    noisy one covers) and noise taken (time the noisy segmentation adds).
//! 3. The clips' own silences: frames of a clip (telephone path) more than 30 dB below
//!    its loud frames (95th percentile of frame level) are taken as silence; counted is
//!    the share of them the VAD labels speech, without and with -50 dBFS hiss. The
//!    frames just after speech are left out (200 ms): the detector's hysteresis holds
//!    speech there by design.

use hotline_asr::stream::{Stream, StreamConfig};
use hotline_asr::vad::{self, SegmenterConfig, Span, Vad, VadConfig, FRAME};
use hotline_asr::{audio, g711, resample};
use std::path::{Path, PathBuf};

struct Lcg(u64);

impl Lcg {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// `pcm` (8 kHz, ±1.0) with hiss and hum added from `from` on, through µ-law.
fn line(pcm: &[f32], from: usize, hiss_db: f64, hum_db: f64, seed: u64) -> Vec<i16> {
    let mut rng = Lcg(seed);
    let hiss = 10f64.powf(hiss_db / 20.0) * 3f64.sqrt();
    let hum = 10f64.powf(hum_db / 20.0) * 2f64.sqrt();
    pcm.iter()
        .enumerate()
        .map(|(i, &x)| {
            let t = i as f64 / 8000.0;
            let noise = if i >= from {
                rng.next() * hiss + (2.0 * std::f64::consts::PI * 50.0 * t).sin() * hum
            } else {
                0.0
            };
            let v = ((f64::from(x) + noise) * 32767.0)
                .round()
                .clamp(-32768.0, 32767.0) as i16;
            g711::ulaw_decode(g711::ulaw_encode(v))
        })
        .collect()
}

fn to_16k(pcm: &[i16]) -> Vec<f32> {
    let x: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    resample::resample(&x, 8000, 16000)
}

fn overlap(a: &[Span], b: &[Span]) -> u64 {
    let mut total = 0;
    for x in a {
        for y in b {
            let (s, e) = (x.start_ms.max(y.start_ms), x.end_ms.min(y.end_ms));
            total += e.saturating_sub(s);
        }
    }
    total
}

fn length(spans: &[Span]) -> u64 {
    spans.iter().map(|s| s.end_ms - s.start_ms).sum()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/audio")
        });
    println!("| hiss dBFS | hum | alignments with a job | noise frames labelled speech |");
    println!("|---|---|---|---|");
    for hiss in [-60.0, -55.0, -50.0, -45.0, -42.0, -40.0, -35.0] {
        for hum in [-200.0, -45.0] {
            let mut with_jobs = 0;
            let (mut speech, mut frames) = (0u64, 0u64);
            for lead in (0..160).step_by(4) {
                let silent = 5 * 8000 + lead;
                let pcm = line(&vec![0.0; silent + 20 * 8000], silent, hiss, hum, 12345);
                let mut stream = Stream::new(StreamConfig::default());
                let mut jobs = 0;
                for chunk in pcm.chunks(160) {
                    stream.push_8k(chunk);
                    while stream.poll().is_some() {
                        jobs += 1;
                    }
                }
                stream.finish();
                while stream.poll().is_some() {
                    jobs += 1;
                }
                with_jobs += usize::from(jobs > 0);
                let mut v = Vad::new(VadConfig::default());
                let x = to_16k(&pcm);
                for (i, f) in x.chunks_exact(FRAME).enumerate() {
                    let label = v.push(f);
                    if i * FRAME >= 2 * silent {
                        frames += 1;
                        speech += u64::from(label.speech);
                    }
                }
            }
            let hum = if hum > -100.0 { "-45 dBFS" } else { "none" };
            println!(
                "| {hiss} | {hum} | {with_jobs}/40 | {:.2} % |",
                100.0 * speech as f64 / frames as f64
            );
        }
    }
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    clips.retain(|p| p.extension().is_some_and(|x| x == "wav"));
    clips.sort();
    println!();
    println!("| hiss dBFS | clips | speech kept | noise taken |");
    println!("|---|---|---|---|");
    let cfg = SegmenterConfig::default();
    let mut clean = Vec::new();
    for hiss in [-200.0, -50.0, -45.0, -40.0] {
        let (mut kept, mut reference, mut added) = (0, 0, 0);
        for (i, p) in clips.iter().enumerate() {
            let Ok(a) = audio::decode_file(p) else {
                if hiss < -100.0 {
                    clean.push(Vec::new());
                }
                continue;
            };
            let x8 = resample::resample(&a.to_whisper_rate(), 16000, 8000);
            let mut pcm = vec![0.0f32; 8000];
            pcm.extend(x8);
            pcm.extend(std::iter::repeat_n(0.0, 2 * 8000));
            let spans = vad::segment(&to_16k(&line(&pcm, 8000, hiss, -200.0, 7)), &cfg);
            if hiss < -100.0 {
                clean.push(spans);
                continue;
            }
            kept += overlap(&clean[i], &spans);
            reference += length(&clean[i]);
            added += length(&spans) - overlap(&clean[i], &spans);
        }
        if hiss > -100.0 {
            println!(
                "| {hiss} | {} | {:.1} % | {:.1} s |",
                clips.len(),
                100.0 * kept as f64 / reference as f64,
                added as f64 / 1000.0
            );
        }
    }
    println!();
    println!("| hiss dBFS | clips | silent frames | labelled speech |");
    println!("|---|---|---|---|");
    for hiss in [-200.0, -50.0] {
        let (mut silent, mut false_speech) = (0u64, 0u64);
        for p in &clips {
            let Ok(a) = audio::decode_file(p) else {
                continue;
            };
            let x8 = resample::resample(&a.to_whisper_rate(), 16000, 8000);
            let x = to_16k(&line(&x8, 0, hiss, -200.0, 11));
            let clean = to_16k(&line(&x8, 0, -200.0, -200.0, 11));
            let mut v = Vad::new(VadConfig::default());
            let labels: Vec<bool> = x.chunks_exact(FRAME).map(|f| v.push(f).speech).collect();
            let levels: Vec<f32> = clean.chunks_exact(FRAME).map(vad::frame_db).collect();
            let mut sorted = levels.clone();
            sorted.sort_by(f32::total_cmp);
            let Some(&loud) = sorted.get(sorted.len() * 95 / 100) else {
                continue;
            };
            let mut since_loud = usize::MAX;
            for (db, speech) in levels.iter().zip(&labels) {
                since_loud = if *db >= loud - 30.0 {
                    0
                } else {
                    since_loud.saturating_add(1)
                };
                if since_loud > 12 {
                    silent += 1;
                    false_speech += u64::from(*speech);
                }
            }
        }
        let hiss = if hiss > -100.0 {
            format!("{hiss}")
        } else {
            "none".into()
        };
        println!(
            "| {hiss} | {} | {silent} | {:.2} % |",
            clips.len(),
            100.0 * false_speech as f64 / silent.max(1) as f64
        );
    }
}
