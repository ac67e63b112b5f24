//! `hotline transcribe` end to end: real models, real audio, every output format.

mod common;

use common::*;
use hotline_asr::engine::Language;
use hotline_asr::{eval, text};

#[test]
fn english_text_output_is_the_transcript_alone() {
    let clip = shared_audio().join("en_jfk.wav");
    let out = run(hotline()
        .args(["transcribe", "--model", "tiny.en", "--language", "en"])
        .arg(&clip));
    let text = stdout(&out);
    assert!(!text.trim().is_empty(), "no transcript");
    // Nothing but transcript lines on stdout: no logs, no timestamps.
    for line in text.lines() {
        assert!(!line.trim().is_empty(), "blank line in {text:?}");
        assert!(
            !line.contains("whisper") && !line.contains("-->") && !line.contains("INFO"),
            "{line}"
        );
    }
    let (errors, words) = eval::score(Language::En, &reference("en_jfk.wav"), &text);
    assert!(errors * 10 <= words, "WER {errors}/{words}: {text}");
}

#[test]
fn mandarin_json_has_timed_simplified_segments() {
    let clip = repo().join("fixtures/audio/demo_zh_aishell1.wav");
    let out = run(hotline()
        .args(["transcribe", "--format", "json"])
        .arg(&clip));
    let doc: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("one JSON document");
    let duration = doc["duration_ms"].as_u64().unwrap();
    assert!((4200..4400).contains(&duration), "{duration}");
    let segs = doc["segments"].as_array().unwrap();
    assert!(!segs.is_empty());
    let mut last_end = 0;
    let mut all = String::new();
    for s in segs {
        let (a, b) = (
            s["start_ms"].as_u64().unwrap(),
            s["end_ms"].as_u64().unwrap(),
        );
        assert!(a <= b && b <= duration && a >= last_end, "{s}");
        last_end = b;
        all.push_str(s["text"].as_str().unwrap());
    }
    assert!(
        !text::has_traditional(&all),
        "Traditional characters in {all}"
    );
    let (errors, chars) = eval::score(Language::Zh, "广州市房地产中介协会分析", &all);
    assert!(errors * 4 <= chars, "CER {errors}/{chars}: {all}");
}

#[test]
fn srt_output_and_other_containers() {
    let dir = tempfile::tempdir().unwrap();
    let wav = repo().join("fixtures/audio/demo_en_jfk.wav");
    let mut files = vec![wav.clone()];
    for ext in ["flac", "ogg", "mp3"] {
        let p = dir.path().join(format!("jfk.{ext}"));
        let st = std::process::Command::new("sox")
            .arg(&wav)
            .arg(&p)
            .status()
            .expect("sox is installed");
        assert!(st.success(), "sox could not write {ext}");
        files.push(p);
    }
    for f in files {
        let out = run(hotline()
            .args([
                "transcribe",
                "--model",
                "tiny.en",
                "--language",
                "en",
                "--format",
                "srt",
            ])
            .arg(&f));
        let srt = stdout(&out);
        let mut lines = srt.lines();
        assert_eq!(lines.next(), Some("1"), "{f:?}: {srt}");
        let times = lines.next().unwrap();
        assert!(
            times.starts_with("00:00:0") && times.contains(" --> "),
            "{times}"
        );
        let body: String = srt
            .lines()
            .filter(|l| l.chars().any(|c| c.is_alphabetic()))
            .collect::<Vec<_>>()
            .join(" ");
        let (errors, words) = eval::score(Language::En, &reference("en_jfk.wav"), &body);
        assert!(errors * 5 <= words, "{f:?}: WER {errors}/{words}: {body}");
    }
}

#[test]
fn silence_and_line_noise_produce_no_text() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("quiet.wav");
    let rate = 8000;
    let mut x = vec![0.0f32; rate as usize * 5];
    // Line hiss at -50 dBFS and 50 Hz hum, as on a quiet phone line.
    let mut seed = 12345u64;
    for i in 0..rate as usize * 10 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.006;
        let hum = 0.003 * (2.0 * std::f32::consts::PI * 50.0 * i as f32 / rate as f32).sin();
        x.push(noise + hum);
    }
    write_wav(&p, rate, &x);
    for lang in ["zh", "auto"] {
        let out = run(hotline()
            .args(["transcribe", "--language", lang, "--telephone"])
            .arg(&p));
        assert_eq!(stdout(&out), "", "text from silence ({lang})");
    }
}

#[test]
fn telephone_path_still_recognises_mandarin() {
    let clip = shared_audio().join("zh_funasr_asr_example.wav");
    let out = run(hotline().args(["transcribe", "--telephone"]).arg(&clip));
    let hyp = stdout(&out);
    assert!(!text::has_traditional(&hyp), "{hyp}");
    let (errors, chars) = eval::score(Language::Zh, &reference("zh_funasr_asr_example.wav"), &hyp);
    assert!(errors * 3 <= chars, "CER {errors}/{chars}: {hyp}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus-model.bin");
    std::fs::write(&bogus, b"not a ggml file at all").unwrap();
    let clip = repo().join("fixtures/audio/demo_en_jfk.wav");
    let out = hotline()
        .args(["transcribe", "--model"])
        .arg(&bogus)
        .arg(&clip)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus-model.bin"), "{err}");

    let out = hotline()
        .args(["transcribe", "--model", "tiny.en"])
        .arg(dir.path().join("nope.wav"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.wav"));

    let out = hotline()
        .args(["transcribe", "--model", "no-such-model"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-model"));
}
