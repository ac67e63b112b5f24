//! Accuracy evaluation against a manifest of clips with reference transcripts:
//! CER for Mandarin, WER for English, and the real-time factor.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::Language;
use crate::text;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read manifest: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Bad {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Clip {
    /// Resolved against the manifest's directory.
    pub file: PathBuf,
    pub language: Language,
    pub transcript: String,
}

/// Reads a tab-separated manifest with a header naming at least `file`, `language` and
/// `transcript` columns.
pub fn read_manifest(path: &Path) -> Result<Vec<Clip>, ManifestError> {
    let body = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, reason: String| ManifestError::Bad {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = body.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(bad(1, "empty manifest".into()));
    };
    let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| bad(1, format!("header has no `{name}` column")))
    };
    let (fc, lc, tc) = (col("file")?, col("language")?, col("transcript")?);
    let base = path.parent().unwrap_or(Path::new("."));
    let mut clips = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let get = |c: usize, name: &str| {
            fields
                .get(c)
                .map(|s| s.trim())
                .ok_or_else(|| bad(i + 1, format!("missing `{name}` field")))
        };
        let language = match get(lc, "language")? {
            "zh" => Language::Zh,
            "en" => Language::En,
            other => return Err(bad(i + 1, format!("language {other:?} is not zh or en"))),
        };
        clips.push(Clip {
            file: base.join(get(fc, "file")?),
            language,
            transcript: get(tc, "transcript")?.to_string(),
        });
    }
    Ok(clips)
}

/// Edits and reference length: characters for zh, words for en.
pub fn score(language: Language, reference: &str, hypothesis: &str) -> (usize, usize) {
    match language {
        Language::En => {
            let r = text::normalize_en(reference);
            let h = text::normalize_en(hypothesis);
            (text::edit_distance(&r, &h), r.len())
        }
        _ => {
            let r = text::normalize_zh(reference);
            let h = text::normalize_zh(hypothesis);
            (text::edit_distance(&r, &h), r.len())
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    pub file: String,
    pub language: &'static str,
    pub reference: String,
    pub hypothesis: String,
    pub errors: usize,
    pub reference_len: usize,
    /// CER (zh) or WER (en) of this clip.
    pub error_rate: f64,
    pub audio_s: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub zh_cer: f64,
    pub zh_clips: usize,
    pub en_wer: f64,
    pub en_clips: usize,
    pub rtf: f64,
    pub audio_s: f64,
    pub seconds: f64,
}

pub fn summarize(results: &[ClipResult]) -> Summary {
    let mut s = Summary::default();
    let (mut zh_e, mut zh_n, mut en_e, mut en_n) = (0, 0, 0, 0);
    for r in results {
        if r.language == "en" {
            en_e += r.errors;
            en_n += r.reference_len;
            s.en_clips += 1;
        } else {
            zh_e += r.errors;
            zh_n += r.reference_len;
            s.zh_clips += 1;
        }
        s.audio_s += r.audio_s;
        s.seconds += r.seconds;
    }
    s.zh_cer = zh_e as f64 / zh_n.max(1) as f64;
    s.en_wer = en_e as f64 / en_n.max(1) as f64;
    s.rtf = s.seconds / s.audio_s.max(1e-9);
    s
}

impl Summary {
    /// The closing line of `hotline eval`.
    pub fn line(&self) -> String {
        format!(
            "zh CER {:.3} over {} clips; en WER {:.3} over {} clips; RTF {:.3}",
            self.zh_cer, self.zh_clips, self.en_wer, self.en_clips, self.rtf
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tsv");
        std::fs::write(
            &p,
            "file\tlanguage\ttranscript\na.wav\tzh\t你好\nb.wav\tfr\tbonjour\n",
        )
        .unwrap();
        let e = read_manifest(&p).unwrap_err().to_string();
        assert!(e.contains("m.tsv:3") && e.contains("fr"), "{e}");
        std::fs::write(&p, "file\tlang\n").unwrap();
        let e = read_manifest(&p).unwrap_err().to_string();
        assert!(e.contains("m.tsv:1") && e.contains("language"), "{e}");
    }

    #[test]
    fn reads_the_shared_manifest_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tsv");
        std::fs::write(
            &p,
            "file\tlanguage\tduration_s\ttranscript\nx.wav\ten\t1.0\tHello there.\n",
        )
        .unwrap();
        let clips = read_manifest(&p).unwrap();
        assert_eq!(clips.len(), 1);
        assert_eq!(clips[0].file, dir.path().join("x.wav"));
        assert_eq!(clips[0].language, Language::En);
    }

    #[test]
    fn scoring() {
        assert_eq!(score(Language::Zh, "您好，請講。", "您好请讲"), (0, 4));
        assert_eq!(score(Language::Zh, "您好请讲", "你好请"), (2, 4));
        assert_eq!(score(Language::En, "Ask not what", "ask what"), (1, 3));
        let s = summarize(&[
            ClipResult {
                file: "a".into(),
                language: "zh",
                reference: String::new(),
                hypothesis: String::new(),
                errors: 1,
                reference_len: 10,
                error_rate: 0.1,
                audio_s: 10.0,
                seconds: 1.0,
            },
            ClipResult {
                file: "b".into(),
                language: "zh",
                reference: String::new(),
                hypothesis: String::new(),
                errors: 3,
                reference_len: 10,
                error_rate: 0.3,
                audio_s: 10.0,
                seconds: 3.0,
            },
        ]);
        assert_eq!(
            s.line(),
            "zh CER 0.200 over 2 clips; en WER 0.000 over 0 clips; RTF 0.200"
        );
    }
}
