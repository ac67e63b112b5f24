//! The converted ggml model must transcribe like faster-whisper on the same CTranslate2
//! weights. Both decode the whole clip greedily at temperature 0 with no prompt and no
//! VAD; faster-whisper computes in float32 on the float16 weights, whisper.cpp in f16.
//! Skipped (with a message) when the faster-whisper venv from scripts/setup.sh is absent.

mod common;

use common::*;
use hotline_asr::engine::Language;
use hotline_asr::eval;

fn python() -> Option<std::path::PathBuf> {
    let py = repo().join(".venv-bench/bin/python");
    let ok = py.is_file()
        && std::process::Command::new(&py)
            .args(["-c", "import faster_whisper"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    ok.then_some(py)
}

fn faster_whisper(py: &std::path::Path, model: &str, clip: &std::path::Path, lang: &str) -> String {
    let ct2 = stdout(&run(hotline().args(["model", "ct2", model])));
    let out = run(std::process::Command::new(py)
        .arg(repo().join("benches/fw_bench.py"))
        .args(["transcribe", ct2.trim()])
        .arg(clip)
        .args([
            "--language",
            lang,
            "--beam",
            "1",
            "--compute-type",
            "float32",
            "--warmup",
            "none",
        ]));
    let line = stdout(&out);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).expect("fw_bench prints one JSON line");
    v["text"].as_str().unwrap().to_string()
}

fn hotline_plain(model: &str, clip: &std::path::Path, lang: &str) -> String {
    let out = run(hotline()
        .args(["transcribe", "--model", model, "--language", lang])
        .args([
            "--beam",
            "1",
            "--no-vad",
            "--full-window",
            "--no-fallback",
            "--prompt",
            "",
        ])
        .arg(clip));
    stdout(&out)
}

#[test]
fn converted_models_transcribe_like_faster_whisper() {
    let Some(py) = python() else {
        eprintln!("skipped: no faster-whisper in .venv-bench (run scripts/setup.sh)");
        return;
    };
    // Edits allowed between the two transcripts. English must match exactly. For Mandarin
    // the two front ends differ (faster-whisper zero-pads the normalised log-mel, whisper.cpp
    // pads the audio with 30 s of silence; ../shared/notes/whisper-models.md, pitfall 9),
    // which flips a few homophones on greedy paths (达摩院/打模院); a wrong vocabulary or
    // tensor mapping would garble the whole line instead.
    let cases = [
        ("tiny.en", "en_jfk.wav", Language::En, 0),
        ("tiny.en", "en_librivox_sas_0870.wav", Language::En, 0),
        ("base", "en_jfk.wav", Language::En, 0),
        ("base", "en_librivox_sas_0870.wav", Language::En, 0),
        ("base", "zh_funasr_asr_example.wav", Language::Zh, 4),
    ];
    for (model, file, lang, allowed) in cases {
        let clip = shared_audio().join(file);
        let theirs = faster_whisper(&py, model, &clip, lang.code());
        let ours = hotline_plain(model, &clip, lang.code());
        let (errors, len) = eval::score(lang, &theirs, &ours);
        assert!(
            len > 0 && errors <= allowed,
            "{model} {file}: {errors} edits: faster-whisper {theirs:?} vs hotline {ours:?}"
        );
    }
}
