//! DTMF costs per call: the in-band detector per 20 ms frame (the gateway runs it on every
//! call's caller audio), and the RFC 4733 receiver per packet.
//! `cargo bench --bench dtmf`

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotline_asr::{audio, g711, resample};
use hotline_gateway::dtmf::{InbandDetector, Rfc4733Receiver, Rfc4733Sender};

const FRAME: usize = 160;

/// The demo Mandarin clip at 8 kHz through µ-law: what the detector mostly sees.
fn speech() -> Vec<i16> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio/demo_zh_aishell1.wav");
    let a = audio::decode_file(&p).expect("fixtures/audio/demo_zh_aishell1.wav decodes");
    let n = resample::resample(&a.samples, a.rate, 8000);
    n.iter()
        .map(|&s| g711::ulaw_decode(g711::ulaw_encode(audio::f32_to_i16(s))))
        .collect()
}

/// Key presses back to back (80 ms tone, 80 ms pause), −10 dBm0 per tone: the slow path
/// (every window passes the cheap checks and runs the refinement, harmonic and phase
/// filters).
fn tones() -> Vec<i16> {
    let keys = [
        (697.0f32, 1209.0f32),
        (770.0, 1336.0),
        (852.0, 1477.0),
        (941.0, 1633.0),
    ];
    let a = 7160.0; // −10 dBm0
    let mut v = Vec::new();
    for i in 0..200 {
        let (fr, fc) = keys[i % 4];
        for n in 0..640 {
            let t = n as f32 / 8000.0;
            let x = a
                * ((2.0 * std::f32::consts::PI * fr * t).sin()
                    + (2.0 * std::f32::consts::PI * fc * t).sin());
            v.push(g711::ulaw_decode(g711::ulaw_encode(x as i16)));
        }
        v.extend(std::iter::repeat_n(0i16, 640));
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtmf");
    g.throughput(Throughput::Elements(1));
    let signals = [
        ("speech", speech()),
        ("tones", tones()),
        ("silence", vec![0i16; 80_000]),
    ];
    for (name, pcm) in &signals {
        let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME).collect();
        let mut det = InbandDetector::default();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("inband_per_20ms_frame", name), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(det.push(black_box(frames[i])))
            })
        });
    }

    // RFC 4733: a stream of presses, one packet per iteration.
    let tx = Rfc4733Sender::default();
    let mut packets = Vec::new();
    for k in 0..100u32 {
        let key = ['1', '5', '9', '#'][k as usize % 4];
        let start = k * 2400;
        for p in tx.packets(key, start, 800).into_iter().flatten() {
            packets.push((start + p.send_at, p));
        }
    }
    let base = Instant::now();
    let mut rx = Rfc4733Receiver::default();
    let mut i = 0usize;
    let mut lap = 0u32;
    g.bench_function("rfc4733_receive_per_packet", |b| {
        b.iter(|| {
            i += 1;
            if i == packets.len() {
                i = 0;
                lap += 1;
                rx = Rfc4733Receiver::default();
            }
            let (at, p) = packets[i];
            let now = base + Duration::from_micros(u64::from(at) * 125 + u64::from(lap));
            black_box(rx.on_packet(p.ts, p.marker, black_box(&p.payload), now))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
