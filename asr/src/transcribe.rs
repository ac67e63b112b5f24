//! Batch transcription of a whole recording: front end, voice-activity segmentation,
//! one decode per segment, timestamps relative to the recording.

use serde::Serialize;

use crate::audio::Audio;
use crate::engine::{DecodeOptions, Decoder, EngineError};
use crate::vad::{self, SegmenterConfig, Span};
use crate::WHISPER_RATE;

#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    pub decode: DecodeOptions,
    /// Pass the audio through an 8 kHz G.711 µ-law leg first, as a phone call would.
    pub telephone: bool,
    /// Split on voice activity; without it whisper sees the recording in 30 s windows.
    pub vad: bool,
    pub segmenter: SegmenterConfig,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            decode: DecodeOptions::default(),
            telephone: false,
            vad: true,
            segmenter: SegmenterConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// The 16 kHz samples the recognizer will see for this audio.
pub fn front_end(audio: &Audio, telephone: bool) -> Vec<f32> {
    if telephone {
        audio.through_telephone()
    } else {
        audio.to_whisper_rate()
    }
}

/// The spans that will be decoded: voice-active stretches, or the whole recording.
pub fn plan(samples: &[f32], opts: &TranscribeOptions) -> Vec<Span> {
    if opts.vad {
        vad::segment(samples, &opts.segmenter)
    } else if samples.is_empty() {
        Vec::new()
    } else {
        vec![Span {
            start_ms: 0,
            end_ms: samples.len() as u64 * 1000 / WHISPER_RATE as u64,
        }]
    }
}

/// Transcribes 16 kHz samples. `progress(done_ms, total_ms)` is called after each span.
pub fn transcribe(
    decoder: &mut Decoder,
    samples: &[f32],
    opts: &TranscribeOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Segment>, EngineError> {
    let spans = plan(samples, opts);
    let total_ms = samples.len() as u64 * 1000 / WHISPER_RATE as u64;
    let mut out = Vec::new();
    for span in spans {
        let range = span.samples(WHISPER_RATE, samples.len());
        let started = std::time::Instant::now();
        let pieces = decoder.decode(&samples[range], &opts.decode)?;
        tracing::debug!(
            start_ms = span.start_ms,
            end_ms = span.end_ms,
            decode_ms = started.elapsed().as_millis() as u64,
            "decoded span"
        );
        for piece in pieces {
            let start_ms = span.start_ms + piece.start_ms;
            let end_ms = (span.start_ms + piece.end_ms.max(piece.start_ms)).min(span.end_ms);
            out.push(Segment {
                start_ms,
                end_ms: end_ms.max(start_ms),
                text: piece.text,
            });
        }
        progress(span.end_ms, total_ms);
    }
    progress(total_ms, total_ms);
    Ok(out)
}

/// Formats milliseconds as an SRT timestamp `HH:MM:SS,mmm`.
pub fn srt_time(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Renders segments as SubRip subtitles.
pub fn to_srt(segments: &[Segment]) -> String {
    let mut s = String::new();
    for (i, seg) in segments.iter().enumerate() {
        s.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            srt_time(seg.start_ms),
            srt_time(seg.end_ms),
            seg.text
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_format() {
        assert_eq!(srt_time(3_723_004), "01:02:03,004");
        let srt = to_srt(&[Segment {
            start_ms: 0,
            end_ms: 1500,
            text: "您好".into(),
        }]);
        assert_eq!(srt, "1\n00:00:00,000 --> 00:00:01,500\n您好\n\n");
    }

    #[test]
    fn without_vad_the_whole_recording_is_one_span() {
        let opts = TranscribeOptions {
            vad: false,
            ..Default::default()
        };
        let spans = plan(&vec![0.0; 32_000], &opts);
        assert_eq!(
            spans,
            vec![Span {
                start_ms: 0,
                end_ms: 2000
            }]
        );
        assert!(plan(&vec![0.0; 32_000], &TranscribeOptions::default()).is_empty());
    }
}
