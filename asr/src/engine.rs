//! The whisper engine: one loaded model, and decoders (whisper states) that turn a
//! 16 kHz utterance into text.
//!
//! Decoding policy lives here so batch and live transcription share it: the encoder
//! window is sized to the audio (`audio_ctx`), Mandarin gets a Simplified-Chinese prompt
//! and conversion, and output that looks like a decoder loop or a known silence
//! hallucination is retried with the full window or dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::text;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: cannot load whisper model (is it a ggml whisper file?)")]
    Load { path: PathBuf },
    #[error("cannot create a whisper state: {0}")]
    State(String),
    #[error("whisper decode failed: {0}")]
    Decode(String),
    #[error("model {path} is English-only; it cannot transcribe language {language}")]
    EnglishOnly { path: PathBuf, language: String },
}

/// Which language to recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Zh,
    En,
    Auto,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
            Language::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zh" => Ok(Language::Zh),
            "en" => Ok(Language::En),
            "auto" => Ok(Language::Auto),
            other => Err(format!("unknown language {other:?} (zh, en, auto)")),
        }
    }
}

/// A Simplified-Chinese prompt, available with `--prompt`. Off by default: on the shared
/// Mandarin clips with base it raised CER (beam 8: 0.390 without, 0.451 with; see
/// docs/PERFORMANCE.md), and Traditional output is converted to Simplified anyway.
pub const ZH_PROMPT: &str = "以下是普通话的句子。";

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub language: Language,
    /// Beam width; 1 is greedy.
    pub beam: u32,
    /// Size the encoder window to the audio instead of always encoding 30 s.
    pub fit_audio_ctx: bool,
    pub threads: u32,
    /// Prompt for Mandarin ([`ZH_PROMPT`] or your own); `None` for none.
    pub zh_prompt: Option<String>,
    /// Re-decode at higher temperatures when the result is unlikely or repetitive.
    pub temperature_fallback: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            language: Language::Zh,
            beam: 8,
            fit_audio_ctx: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2),
            zh_prompt: None,
            temperature_fallback: true,
        }
    }
}

/// One piece of decoded text, times relative to the start of the decoded audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub no_speech_prob: f32,
    pub avg_logprob: f32,
}

pub struct Engine {
    ctx: Arc<WhisperContext>,
    path: PathBuf,
    multilingual: bool,
}

/// whisper.cpp refuses audio shorter than 1 s; shorter utterances are padded with silence.
const MIN_SAMPLES: usize = 16_000 + 1_600;
/// Encoder frames per second of audio (20 ms each).
const CTX_PER_SECOND: f64 = 50.0;
/// Extra encoder frames (2.56 s of the silence whisper.cpp pads with) beyond the audio.
/// With too little the decoder does not see the speech end: at 64 it repeated or cut the
/// last sentence of a window (en_osr_us_0034_8k), and zh CER was 0.390/0.481 clean/telephone
/// against 0.371/0.449 at 128 (docs/PERFORMANCE.md).
const CTX_MARGIN: i32 = 128;
const FULL_CTX: i32 = 1500;

/// Tokens one decode pass may produce for `samples` of audio: fast Mandarin is about
/// 8 characters a second and a character is one or two tokens, so more than this is a
/// loop, and cutting it bounds what a loop costs (each fallback pass, each beam).
pub fn max_tokens_for(samples: usize) -> i32 {
    let secs = samples as f64 / 16_000.0;
    (24.0 + 16.0 * secs).ceil().min(220.0) as i32
}

/// The encoder window is a multiple of this. ggml hands a matrix product to its tiled
/// GEMM (tinyBLAS) only when the rows of the left operand, and for f16 also the shared
/// dimension, divide evenly into the GEMM's tiles (16 floats with AVX-512); otherwise it
/// falls back to one dot product per output element. The encoder's self-attention
/// products have the window as those dimensions, so an odd window cost them that path.
const CTX_ALIGN: i32 = 16;

/// The encoder window used for `samples` of 16 kHz audio.
pub fn audio_ctx_for(samples: usize) -> i32 {
    let secs = samples.max(MIN_SAMPLES) as f64 / 16_000.0;
    let frames = (secs * CTX_PER_SECOND).ceil() as i32 + CTX_MARGIN;
    let aligned = (frames + CTX_ALIGN - 1) / CTX_ALIGN * CTX_ALIGN;
    aligned.min(FULL_CTX)
}

impl Engine {
    pub fn load(path: &Path) -> Result<Engine, EngineError> {
        whisper_rs::install_logging_hooks();
        let path_str = path.to_str().ok_or_else(|| EngineError::Load {
            path: path.to_path_buf(),
        })?;
        let ctx = WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
            .map_err(|_| EngineError::Load {
                path: path.to_path_buf(),
            })?;
        let multilingual = ctx.is_multilingual();
        Ok(Engine {
            ctx: Arc::new(ctx),
            path: path.to_path_buf(),
            multilingual,
        })
    }

    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A decoder with its own whisper state; several may run in parallel on one engine.
    pub fn decoder(&self) -> Result<Decoder, EngineError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| EngineError::State(e.to_string()))?;
        Ok(Decoder {
            ctx: Arc::clone(&self.ctx),
            state,
            sampled: false,
            multilingual: self.multilingual,
            path: self.path.clone(),
            abort: Arc::new(AtomicBool::new(false)),
        })
    }
}

pub struct Decoder {
    ctx: Arc<WhisperContext>,
    state: whisper_rs::WhisperState,
    /// A decode that draws random numbers has run on `state`: sampling at a
    /// temperature above 0, or beam search, whose candidates whisper.cpp draws from the
    /// token distribution (`whisper_sample_token_topk`) rather than taking the top k.
    /// whisper.cpp seeds the first decoder's RNG once per state, so such a decode
    /// depended on every one before it on that state (which worker, which calls): the
    /// same clip read 「他走在椅子上」 alone and 「他走在一字闪」 after three others. A
    /// fresh state (3 to 25 ms) makes each decode a function of its audio alone.
    sampled: bool,
    multilingual: bool,
    path: PathBuf,
    /// Set from another thread to stop the decode in progress (it then fails with
    /// [`EngineError::Decode`]); cleared when the next decode starts.
    abort: Arc<AtomicBool>,
}

/// whisper.cpp's abort hook: polled between graph computations.
unsafe extern "C" fn abort_requested(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` is the `AtomicBool` inside the decoder's `Arc`, which the decoder
    // holds for the whole `full()` call that polls this.
    unsafe { (*(data as *const AtomicBool)).load(Ordering::Relaxed) }
}

struct RawResult {
    pieces: Vec<Piece>,
    lang: Option<&'static str>,
    /// Mean log probability of every token of the decode, as whisper.cpp ranks them.
    avg_logprob: f32,
    tokens: usize,
    /// Entropy of the last 32 token ids: low means the decoder went round in a loop.
    entropy: f64,
    no_speech_prob: f32,
}

/// whisper.cpp's (and OpenAI's) thresholds for a failed decode at one temperature.
const LOGPROB_THOLD: f32 = -1.0;
const ENTROPY_THOLD: f32 = 2.4;
const NO_SPEECH_THOLD: f32 = 0.6;
/// The temperature the fallback pass starts at, and its step up to 1.0.
const FALLBACK_STEP: f32 = 0.2;
/// Samples drawn at each fallback temperature, the likeliest kept (OpenAI's and
/// faster-whisper's best_of). whisper.cpp's beam-search parameters leave it at one,
/// and one sample is a coin toss (zh telephone CER 0.595 with one, 0.468 with five,
/// on the same draws).
const FALLBACK_BEST_OF: i32 = 5;

impl RawResult {
    /// The decoder went round in a loop (whisper.cpp's entropy test).
    fn looped(&self) -> bool {
        self.tokens > 32 && self.entropy < f64::from(ENTROPY_THOLD)
    }

    /// The decode fails whisper's own tests: a loop, or an unlikely text over audio
    /// that is not silence.
    fn failed(&self) -> bool {
        self.looped() || (self.avg_logprob < LOGPROB_THOLD && self.no_speech_prob < NO_SPEECH_THOLD)
    }

    /// Of two failed decodes, whether `self` is the better: not a loop, then the more
    /// probable (faster-whisper's choice when every temperature fails).
    fn beats(&self, other: &RawResult) -> bool {
        match (self.looped(), other.looped()) {
            (false, true) => true,
            (true, false) => false,
            _ => self.avg_logprob > other.avg_logprob,
        }
    }
}

impl Decoder {
    /// A handle that stops this decoder's decode in progress when set to `true`.
    pub fn abort_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.abort)
    }

    /// Decodes one utterance (16 kHz mono). Returns the pieces that survive the guards.
    pub fn decode(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
    ) -> Result<Vec<Piece>, EngineError> {
        if !self.multilingual && opts.language != Language::En {
            if opts.language == Language::Auto {
                // An English-only model can only answer in English.
                return self.decode(
                    audio,
                    &DecodeOptions {
                        language: Language::En,
                        ..opts.clone()
                    },
                );
            }
            return Err(EngineError::EnglishOnly {
                path: self.path.clone(),
                language: opts.language.code().to_string(),
            });
        }
        if audio.is_empty() {
            return Ok(Vec::new());
        }
        let padded;
        let audio = if audio.len() < MIN_SAMPLES {
            let mut v = audio.to_vec();
            v.resize(MIN_SAMPLES, 0.0);
            padded = v;
            &padded[..]
        } else {
            audio
        };
        let ctx = if opts.fit_audio_ctx {
            audio_ctx_for(audio.len())
        } else {
            0
        };
        let prompt = if opts.language == Language::Zh {
            opts.zh_prompt.as_deref()
        } else {
            None
        };
        self.decode_window(audio, opts, ctx, prompt)
    }

    /// One decode at the given window size, retried with the full window if it loops.
    fn decode_window(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
        ctx: i32,
        prompt: Option<&str>,
    ) -> Result<Vec<Piece>, EngineError> {
        let raw = self.run_with_fallback(audio, opts, ctx, prompt)?;
        let first = self.clean(raw, audio.len(), opts);
        if ctx == 0 || ctx >= FULL_CTX || !suspicious(&joined(&first), audio.len()) {
            return Ok(first);
        }
        tracing::debug!(text = %joined(&first), ctx, "short window looks looped; retrying with the full window");
        let raw = self.run_with_fallback(audio, opts, 0, prompt)?;
        let second = self.clean(raw, audio.len(), opts);
        // Keep whichever is less loop-like; of two bad ones, the shorter inserts less.
        let rank = |p: &[Piece]| {
            let t = joined(p);
            (suspicious(&t, audio.len()), t.chars().count())
        };
        Ok(if rank(&second) < rank(&first) {
            second
        } else {
            first
        })
    }

    /// One decode at temperature 0 and, if it fails whisper's tests and `opts` allow
    /// it, a second that samples at 0.2, 0.4 … 1.0 (whisper.cpp's own fallback, from
    /// 0.2, with [`FALLBACK_BEST_OF`] samples each). whisper.cpp keeps the last
    /// temperature's text when every one fails, and at 1.0 that is noise:
    /// zh_qwen3asr_voice_dialing (22.8 s of digits through G.711) came out as 「小小」,
    /// CER 1.0, against 0.566 at temperature 0. So when the second pass fails too, the
    /// better of the two is kept ([`RawResult::beats`]), as faster-whisper does. The
    /// second pass drops the prompt (faster-whisper's `prompt_reset_on_temperature`):
    /// sampled with it, the likeliest of five samples was often the prompt's own
    /// world (「我们在上次认识了一些普通话的句子。」 for a Hunan-accented clip), and
    /// base-q8_0 greedy with the zh prompt through G.711 read CER 0.640 with it against
    /// 0.465 without (0.518 with no fallback at all). The second pass encodes the
    /// audio again; only audio that fails pays for it.
    fn run_with_fallback(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
        audio_ctx: i32,
        prompt: Option<&str>,
    ) -> Result<RawResult, EngineError> {
        let first = self.run(audio, opts, audio_ctx, prompt, 0.0)?;
        if !opts.temperature_fallback || !first.failed() {
            return Ok(first);
        }
        let second = self.run(audio, opts, audio_ctx, None, FALLBACK_STEP)?;
        tracing::debug!(
            first = first.avg_logprob,
            second = second.avg_logprob,
            second_failed = second.failed(),
            "temperature fallback"
        );
        if !second.failed() || second.beats(&first) {
            Ok(second)
        } else {
            Ok(first)
        }
    }

    /// One `whisper_full` call. At `temperature` > 0 it samples, and whisper.cpp falls
    /// back on its own to higher temperatures up to 1.0.
    fn run(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
        audio_ctx: i32,
        prompt: Option<&str>,
        temperature: f32,
    ) -> Result<RawResult, EngineError> {
        let strategy = if temperature > 0.0 {
            SamplingStrategy::Greedy {
                best_of: FALLBACK_BEST_OF,
            }
        } else if opts.beam > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: opts.beam as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(opts.threads.max(1) as i32);
        params.set_language(Some(opts.language.code()));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_temperature(temperature);
        params.set_temperature_inc(if temperature > 0.0 {
            FALLBACK_STEP
        } else {
            0.0
        });
        // Beam search draws its candidates at random too (whisper_sample_token_topk).
        if temperature > 0.0 || opts.beam > 1 {
            if self.sampled {
                self.state = self
                    .ctx
                    .create_state()
                    .map_err(|e| EngineError::State(e.to_string()))?;
            }
            self.sampled = true;
        }
        params.set_entropy_thold(ENTROPY_THOLD);
        params.set_logprob_thold(LOGPROB_THOLD);
        params.set_no_speech_thold(NO_SPEECH_THOLD);
        params.set_audio_ctx(audio_ctx);
        params.set_max_tokens(max_tokens_for(audio.len()));
        if let Some(p) = prompt {
            params.set_initial_prompt(p);
        }
        // SAFETY: the callback only reads the AtomicBool, which `self.abort` keeps alive
        // until after `full()` returns.
        unsafe {
            params.set_abort_callback(Some(abort_requested));
            params.set_abort_callback_user_data(Arc::as_ptr(&self.abort) as *mut std::ffi::c_void);
        }
        self.state
            .full(params, audio)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        let lang = whisper_rs::get_lang_str(self.state.full_lang_id_from_state());
        let mut pieces = Vec::new();
        let (mut sum_all, mut ids) = (0.0f64, Vec::new());
        let mut no_speech_prob = 0.0f32;
        for seg in self.state.as_iter() {
            no_speech_prob = seg.no_speech_probability();
            let text = match seg.to_str_lossy() {
                Ok(t) => t.trim().to_string(),
                Err(_) => continue,
            };
            let n = seg.n_tokens();
            let mut sum = 0.0f32;
            let mut count = 0;
            for i in 0..n {
                if let Some(tok) = seg.get_token(i) {
                    let d = tok.token_data();
                    sum += d.plog;
                    count += 1;
                    sum_all += f64::from(d.plog);
                    ids.push(d.id);
                }
            }
            pieces.push(Piece {
                start_ms: (seg.start_timestamp().max(0) as u64) * 10,
                end_ms: (seg.end_timestamp().max(0) as u64) * 10,
                text,
                no_speech_prob: seg.no_speech_probability(),
                avg_logprob: if count > 0 { sum / count as f32 } else { 0.0 },
            });
        }
        Ok(RawResult {
            pieces,
            lang,
            avg_logprob: if ids.is_empty() {
                0.0
            } else {
                (sum_all / ids.len() as f64) as f32
            },
            tokens: ids.len(),
            entropy: entropy_of_tail(&ids),
            no_speech_prob,
        })
    }

    fn clean(&self, raw: RawResult, samples: usize, opts: &DecodeOptions) -> Vec<Piece> {
        let zh = opts.language == Language::Zh || raw.lang == Some("zh");
        let prompt_norm: Vec<char> = opts
            .zh_prompt
            .as_deref()
            .map(text::normalize_zh)
            .unwrap_or_default();
        let duration_ms = samples as u64 * 1000 / 16_000;
        let mut out: Vec<Piece> = Vec::new();
        for mut p in raw.pieces {
            tracing::debug!(text = %p.text, no_speech = p.no_speech_prob, logprob = p.avg_logprob, "decoded piece");
            if zh {
                p.text = text::to_simplified(&p.text);
            }
            // whisper's own rule for "this window was silence".
            if p.no_speech_prob > 0.6 && p.avg_logprob < -1.0 {
                continue;
            }
            if text::is_hallucination(&p.text) {
                continue;
            }
            let norm = text::normalize_zh(&p.text);
            if norm.is_empty() {
                continue;
            }
            // An echo of the prompt is not speech.
            if zh && norm.len() >= 4 && is_subsequence_run(&norm, &prompt_norm) {
                continue;
            }
            p.text = text::collapse_repeats(&p.text);
            // A loop can also repeat whole segments: keep at most two identical in a row.
            let n = out.len();
            if n >= 2 && out[n - 1].text == p.text && out[n - 2].text == p.text {
                continue;
            }
            p.end_ms = p.end_ms.min(duration_ms);
            p.start_ms = p.start_ms.min(p.end_ms);
            out.push(p);
        }
        out
    }
}

/// Entropy of the last 32 token ids, as whisper.cpp scores a sequence.
fn entropy_of_tail(ids: &[i32]) -> f64 {
    let tail = &ids[ids.len().saturating_sub(32)..];
    if tail.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::new();
    for id in tail {
        *counts.entry(*id).or_insert(0u32) += 1;
    }
    let n = tail.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.ln()
        })
        .sum()
}

fn joined(pieces: &[Piece]) -> String {
    pieces.iter().map(|p| p.text.as_str()).collect()
}

/// Text that is a loop, or far denser than speech can be (≈ 8 syllables/s at most).
fn suspicious(text: &str, samples: usize) -> bool {
    let secs = samples as f64 / 16_000.0;
    let chars = text.chars().filter(|c| !c.is_whitespace()).count() as f64;
    text::looks_looped(text) || chars > 12.0 * secs + 20.0
}

/// True when `needle` occurs contiguously in `hay`.
fn is_subsequence_run(needle: &[char], hay: &[char]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_is_sized_to_the_audio() {
        // 150 frames of audio and the margin, rounded up to the GEMM tile.
        assert_eq!(audio_ctx_for(16_000 * 3), 288);
        assert_eq!(audio_ctx_for(16_000 * 3 + 16 * 20 * 10), 288);
        assert_eq!(audio_ctx_for(16_000 * 3 + 16 * 20 * 11), 304);
        assert_eq!(audio_ctx_for(100), audio_ctx_for(MIN_SAMPLES));
        assert_eq!(audio_ctx_for(16_000 * 40), FULL_CTX);
    }

    #[test]
    fn a_loop_has_low_tail_entropy() {
        let varied: Vec<i32> = (0..40).collect();
        assert!((entropy_of_tail(&varied) - 32f64.ln()).abs() < 1e-9);
        let looped: Vec<i32> = (0..40).map(|i| 100 + i % 3).collect();
        assert!(entropy_of_tail(&looped) < f64::from(ENTROPY_THOLD));
        assert_eq!(entropy_of_tail(&[]), 0.0);
    }

    fn raw(avg_logprob: f32, tokens: usize, entropy: f64, no_speech_prob: f32) -> RawResult {
        RawResult {
            pieces: Vec::new(),
            lang: None,
            avg_logprob,
            tokens,
            entropy,
            no_speech_prob,
        }
    }

    #[test]
    fn whispers_failure_tests() {
        assert!(!raw(-0.4, 40, 3.0, 0.0).failed());
        assert!(raw(-0.4, 40, 1.0, 0.0).failed(), "a loop");
        assert!(
            !raw(-0.4, 20, 1.0, 0.0).failed(),
            "too short to call a loop"
        );
        assert!(raw(-1.5, 20, 3.0, 0.1).failed(), "unlikely text");
        assert!(
            !raw(-1.5, 20, 3.0, 0.9).failed(),
            "unlikely, but over silence"
        );
    }

    #[test]
    fn of_two_failures_the_likelier_non_loop_wins() {
        let noise = raw(-2.5, 10, 2.0, 0.1);
        let digits = raw(-1.2, 60, 3.0, 0.1);
        let looped = raw(-0.2, 60, 1.0, 0.1);
        assert!(digits.beats(&noise) && !noise.beats(&digits));
        assert!(noise.beats(&looped) && !looped.beats(&noise));
    }

    #[test]
    fn density_guard() {
        assert!(suspicious(&"的".repeat(80), 16_000 * 2));
        assert!(!suspicious("我想咨询一下社保的问题", 16_000 * 3));
    }
}
