//! Recognizer options shared by `transcribe` and `eval`.

use anyhow::Context;
use clap::Args;
use hotline_asr::engine::{DecodeOptions, Engine, Language, ZH_PROMPT};
use hotline_asr::model;
use hotline_asr::transcribe::TranscribeOptions;
use hotline_asr::vad::SegmenterConfig;

#[derive(Args, Clone)]
pub struct RecognizerArgs {
    /// Model name (tiny.en, base: fetched with `hotline model fetch`) or path to a ggml file.
    #[arg(long, default_value = "base")]
    pub model: String,
    /// Pass audio through 8 kHz G.711 µ-law and back first, as a phone call would.
    #[arg(long)]
    pub telephone: bool,
    /// Beam width for decoding; 1 is greedy.
    #[arg(long, default_value_t = 8)]
    pub beam: u32,
    /// Decoder threads (default: all cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Decode the recording in whisper's 30 s windows instead of voice-activity segments.
    #[arg(long)]
    pub no_vad: bool,
    /// Always encode a full 30 s window instead of sizing it to the audio (audio_ctx).
    #[arg(long)]
    pub full_window: bool,
    /// Initial prompt for Mandarin (default: none; "zh" = the built-in Simplified prompt).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Disable temperature fallback (one greedy/beam pass at temperature 0).
    #[arg(long)]
    pub no_fallback: bool,
    /// Voice-activity segments closer than this are decoded together.
    #[arg(long, default_value_t = SegmenterConfig::default().merge_gap_ms)]
    pub merge_gap_ms: u64,
    /// Longest stretch of audio decoded at once.
    #[arg(long, default_value_t = SegmenterConfig::default().max_segment_ms)]
    pub max_segment_ms: u64,
}

impl RecognizerArgs {
    pub fn load_engine(&self) -> anyhow::Result<Engine> {
        let path = model::resolve(&self.model)?;
        Engine::load(&path).with_context(|| format!("loading model {}", self.model))
    }

    pub fn options(&self, language: Language) -> TranscribeOptions {
        let mut decode = DecodeOptions {
            language,
            beam: self.beam.max(1),
            fit_audio_ctx: !self.full_window,
            temperature_fallback: !self.no_fallback,
            ..DecodeOptions::default()
        };
        if let Some(t) = self.threads {
            decode.threads = t.max(1);
        }
        decode.zh_prompt = match self.prompt.as_deref() {
            None | Some("") => None,
            Some("zh") => Some(ZH_PROMPT.to_string()),
            Some(p) => Some(p.to_string()),
        };
        TranscribeOptions {
            decode,
            telephone: self.telephone,
            vad: !self.no_vad,
            segmenter: SegmenterConfig::with_limits(self.merge_gap_ms, self.max_segment_ms),
        }
    }
}
