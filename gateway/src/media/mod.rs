//! The media plane's audio ends: prompt audio decoded once and cached
//! ([`prompt_cache`]), paced 20 ms playback frames for RTP ([`player`], sans-IO), and call
//! recording to stereo WAV with crash repair ([`recorder`]).
//!
//! Everything here works on 8 kHz mono `i16` PCM, the G.711 rate: the RTP layer encodes
//! and decodes µ-law/A-law at the socket and hands PCM to and from these modules.
//!
//! Wiring in a call's media task: the call timeline starts at answer (`t0`). The player
//! is created with `start = t0`, so a sent frame's recording position is
//! `frame.slot * samples_per_frame`; it goes to [`RecordingHandle::push`] on
//! [`Channel::GATEWAY`]. Caller audio goes on [`Channel::CALLER`] at its playout position
//! (the jitter buffer's output clock, also counted from `t0`), concealed or not. Prompts
//! come from one process-wide [`PromptCache`] (blocking on a miss: preload at start-up or
//! use `spawn_blocking`); recordings from one process-wide [`RecorderPool`], opened at
//! [`recording_path`], after [`repair_dir`] has run over `<data_dir>/recordings` at start-up.

pub mod pacer;
pub mod player;
pub mod prompt_cache;
pub mod recorder;

/// Sample rate of everything in this module (G.711's).
pub const SAMPLE_RATE: u32 = 8_000;

pub use player::{
    BadPtime, DoneReason, OutFrame, PlayOptions, Player, PlayerConfig, PlayerEvent, PlayerStats,
    PromptId, RtpStart, SilenceMode,
};
pub use prompt_cache::{CacheStats, Pcm, PromptCache, PromptError};
pub use recorder::{
    recording_path, repair, repair_dir, Channel, RecordError, Recorder, RecorderConfig,
    RecorderPool, RecorderPoolStats, RecorderStats, RecordingHandle, RecordingSummary,
    RepairOutcome, RepairReport,
};
