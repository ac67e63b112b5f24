//! Front-end throughput: resampling, G.711 and VAD segmentation over 10 s of audio.
//! `cargo bench --bench frontend`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hotline_asr::{g711, resample, vad};

fn speechlike(rate: u32, secs: f32) -> Vec<f32> {
    let n = (rate as f32 * secs) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let env = (std::f32::consts::PI * 3.0 * t).sin().abs();
            0.3 * env
                * ((2.0 * std::f32::consts::PI * 180.0 * t).sin()
                    + 0.4 * (2.0 * std::f32::consts::PI * 1250.0 * t).sin())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let secs = 10.0;
    let x8 = speechlike(8000, secs);
    let x16 = speechlike(16000, secs);
    let x44 = speechlike(44100, secs);
    let mut g = c.benchmark_group("frontend_10s");
    g.throughput(Throughput::Elements(1));
    g.bench_function("resample_8k_to_16k", |b| {
        b.iter(|| resample::resample(black_box(&x8), 8000, 16000))
    });
    g.bench_function("resample_44k1_to_16k", |b| {
        b.iter(|| resample::resample(black_box(&x44), 44100, 16000))
    });
    let pcm: Vec<i16> = x8.iter().map(|s| (s * 32767.0) as i16).collect();
    g.bench_function("g711_ulaw_encode_decode_8k", |b| {
        b.iter(|| {
            let mut acc = 0i32;
            for s in black_box(&pcm) {
                acc += g711::ulaw_decode(g711::ulaw_encode(*s)) as i32;
            }
            acc
        })
    });
    g.bench_function("vad_segment_16k", |b| {
        b.iter(|| vad::segment(black_box(&x16), &vad::SegmenterConfig::default()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
