//! G.711 per 20 ms frame (160 samples), both laws, both directions: the reference
//! per-sample encoders of `hotline_asr::g711` (µ-law: leading-zero count; A-law: segment
//! scan) against the gateway's 64 KiB lookup tables, and the table decode.
//! `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotline_asr::g711 as reference;
use hotline_gateway::codec::{g711, Codec};

const FRAME: usize = 160;

/// 10 s of 8 kHz test signal: speech-like (a 180 Hz voice with a 1250 Hz formant and a
/// syllable envelope) or full-scale pseudo-random (every table line equally likely).
fn signal(kind: &str) -> Vec<i16> {
    let n = 80_000;
    let mut x = 0x2545_F491u32;
    (0..n)
        .map(|i| {
            let t = i as f32 / 8000.0;
            match kind {
                "speech" => {
                    let env = (std::f32::consts::PI * 3.0 * t).sin().abs();
                    let v = 0.3
                        * env
                        * ((2.0 * std::f32::consts::PI * 180.0 * t).sin()
                            + 0.4 * (2.0 * std::f32::consts::PI * 1250.0 * t).sin());
                    (v * 32767.0) as i16
                }
                _ => {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as i16
                }
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    g711::warm_up();
    let mut g = c.benchmark_group("g711_frame_160");
    g.throughput(Throughput::Elements(1));
    for kind in ["speech", "random"] {
        let pcm = signal(kind);
        let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME).collect();
        let mut codes = vec![0u8; pcm.len()];
        g711::ulaw_encode_into(&pcm, &mut codes);
        let ulaw_frames: Vec<&[u8]> = codes.chunks_exact(FRAME).collect();
        let mut acodes = vec![0u8; pcm.len()];
        g711::alaw_encode_into(&pcm, &mut acodes);
        let alaw_frames: Vec<&[u8]> = acodes.chunks_exact(FRAME).collect();

        let mut out = [0u8; FRAME];
        let mut i = 0usize;
        let mut next = |n: usize| {
            i = (i + 1) % n;
            i
        };
        g.bench_function(BenchmarkId::new("ulaw_encode_reference", kind), |b| {
            b.iter(|| {
                let f = frames[next(frames.len())];
                for (o, &s) in out.iter_mut().zip(black_box(f)) {
                    *o = reference::ulaw_encode(s);
                }
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("ulaw_encode_table", kind), |b| {
            b.iter(|| {
                let f = frames[next(frames.len())];
                g711::ulaw_encode_into(black_box(f), &mut out);
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("alaw_encode_reference", kind), |b| {
            b.iter(|| {
                let f = frames[next(frames.len())];
                for (o, &s) in out.iter_mut().zip(black_box(f)) {
                    *o = reference::alaw_encode(s);
                }
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("alaw_encode_table", kind), |b| {
            b.iter(|| {
                let f = frames[next(frames.len())];
                g711::alaw_encode_into(black_box(f), &mut out);
                black_box(&out);
            })
        });
        let mut pcm_out = [0i16; FRAME];
        g.bench_function(BenchmarkId::new("ulaw_decode_table", kind), |b| {
            b.iter(|| {
                let f = ulaw_frames[next(ulaw_frames.len())];
                g711::ulaw_decode_into(black_box(f), &mut pcm_out);
                black_box(&pcm_out);
            })
        });
        g.bench_function(BenchmarkId::new("alaw_decode_table", kind), |b| {
            b.iter(|| {
                let f = alaw_frames[next(alaw_frames.len())];
                g711::alaw_decode_into(black_box(f), &mut pcm_out);
                black_box(&pcm_out);
            })
        });
        // Through the codec seam, into reused Vecs, as the RTP path calls it.
        let mut payload = Vec::with_capacity(FRAME);
        let mut decoded = Vec::with_capacity(FRAME);
        for codec in Codec::ALL {
            let name = codec.encoding_name();
            g.bench_function(BenchmarkId::new(format!("{name}_seam_encode"), kind), |b| {
                b.iter(|| {
                    payload.clear();
                    codec.encode(black_box(frames[next(frames.len())]), &mut payload);
                    black_box(&payload);
                })
            });
            let enc = if codec == Codec::Pcmu {
                &ulaw_frames
            } else {
                &alaw_frames
            };
            g.bench_function(BenchmarkId::new(format!("{name}_seam_decode"), kind), |b| {
                b.iter(|| {
                    decoded.clear();
                    codec.decode(black_box(enc[next(enc.len())]), &mut decoded);
                    black_box(&decoded);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
