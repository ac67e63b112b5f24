//! Live transcription end to end with the real model: a call channel's 8 kHz audio in
//! 20 ms frames through `Stream`, its jobs through a one-worker `Pool`.
//!
//! Needs `ggml-tiny.en.bin` in the model cache (`hotline model fetch tiny.en`); without
//! it the test prints "skipped: ..." and passes.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hotline_asr::engine::{Engine, Language};
use hotline_asr::model::default_cache_dir;
use hotline_asr::pool::{Outcome, Pool, PoolConfig, WhisperOptions};
use hotline_asr::stream::{JobKind, Stream, StreamConfig};

fn words(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn jfk_streamed_through_the_pool() {
    let model = default_cache_dir().join("ggml-tiny.en.bin");
    if !model.exists() {
        println!("skipped: {} not found", model.display());
        return;
    }
    let clip = std::path::Path::new("/work/shared/fixtures/audio/en_jfk.wav");
    let clip = if clip.exists() {
        clip.to_path_buf()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/audio/demo_en_jfk.wav")
    };
    let audio = hotline_asr::audio::decode_file(&clip).unwrap();
    let narrow = hotline_asr::resample::resample(&audio.samples, audio.rate, 8000);
    let pcm: Vec<i16> = narrow
        .iter()
        .map(|&s| hotline_asr::audio::f32_to_i16(s))
        .collect();

    let t = Instant::now();
    let engine = Arc::new(Engine::load(&model).unwrap());
    let load = t.elapsed();
    let (tx, rx) = mpsc::channel::<Outcome>();
    let pool = Pool::whisper(
        PoolConfig {
            workers: 1,
            ..Default::default()
        },
        engine,
        WhisperOptions {
            language: Language::En,
            threads: 2,
            ..Default::default()
        },
        tx,
    )
    .unwrap();

    // Four times real time: fast enough for a test, slow enough that partials are
    // decoded while the utterance is still open, as on a live call.
    let t = Instant::now();
    let mut stream = Stream::new(StreamConfig::default());
    let mut jobs = Vec::new();
    for chunk in pcm.chunks(160) {
        stream.push_8k(chunk);
        while let Some(job) = stream.poll() {
            jobs.push((job.kind, job.utterance, job.revision));
            pool.submit(7, job);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stream.finish();
    while let Some(job) = stream.poll() {
        jobs.push((job.kind, job.utterance, job.revision));
        pool.submit(7, job);
    }
    let pushed = t.elapsed();
    let stats = pool.shutdown();
    let total = t.elapsed();

    let outcomes: Vec<Outcome> = rx.try_iter().collect();
    for o in &outcomes {
        println!(
            "{:?} u{} r{} {}..{} ms, audio {} ms: waited {} ms, decoded in {} ms: {:?}{}",
            o.kind,
            o.utterance,
            o.revision,
            o.start_ms,
            o.end_ms,
            o.audio_ms,
            (o.started_at - o.queued_at).as_millis(),
            (o.finished_at - o.started_at).as_millis(),
            o.text,
            o.error
                .as_deref()
                .map(|e| format!(" error {e}"))
                .unwrap_or_default(),
        );
    }
    println!(
        "model load {load:?}; {:.1} s of audio pushed in {pushed:?}; all done {total:?}; {stats:?}",
        pcm.len() as f64 / 8000.0
    );
    println!("jobs from the stream: {jobs:?}");

    assert!(outcomes.iter().all(|o| o.error.is_none()));
    let mut finals: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.kind == JobKind::Final)
        .collect();
    finals.sort_by_key(|o| o.utterance);
    let text = finals
        .iter()
        .map(|o| o.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words(&text).contains("ask not what your country can do for you"),
        "{text:?}"
    );
    assert!(
        outcomes.iter().any(|o| o.kind == JobKind::Partial),
        "no partial decoded: {stats:?}"
    );
    assert_eq!(stats.finals_dropped, 0);
    assert_eq!(
        finals.len(),
        jobs.iter().filter(|j| j.0 == JobKind::Final).count()
    );
}
