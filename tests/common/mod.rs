//! Helpers for the CLI integration tests: they run the real `hotline` binary with real
//! whisper models (fetched by scripts/setup.sh) on real audio.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn hotline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared clips with reference transcripts (`../shared/fixtures/audio`).
pub fn shared_audio() -> PathBuf {
    let p = repo().join("../shared/fixtures/audio");
    assert!(
        p.join("manifest.tsv").is_file(),
        "shared fixtures missing at {}: clone the project next to shared/",
        p.display()
    );
    p
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("hotline binary runs");
    assert!(
        out.status.success(),
        "hotline failed: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// The reference transcript of a shared clip.
pub fn reference(file: &str) -> String {
    let manifest = std::fs::read_to_string(shared_audio().join("manifest.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .find(|l| l.split('\t').next() == Some(file))
        .and_then(|l| l.split('\t').nth(4))
        .unwrap_or_else(|| panic!("{file} not in manifest"))
        .to_string()
}

/// Writes 16-bit mono PCM as a WAV file.
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let bytes = (samples.len() * 2) as u32;
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + bytes).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap();
    f.write_all(&rate.to_le_bytes()).unwrap();
    f.write_all(&(rate * 2).to_le_bytes()).unwrap();
    f.write_all(&2u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&bytes.to_le_bytes()).unwrap();
    for s in samples {
        let v = (s * 32767.0).clamp(-32768.0, 32767.0) as i16;
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}
