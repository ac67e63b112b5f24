//! The media plane's audio ends: prompt audio decoded once and cached
//! ([`prompt_cache`]), paced 20 ms playback frames for RTP ([`player`], sans-IO), and call
//! recording to stereo WAV with crash repair ([`recorder`]).
//!
//! Everything here works on 8 kHz mono `i16` PCM, the G.711 rate: the RTP layer encodes
//! and decodes µ-law/A-law at the socket and hands PCM to and from these modules.

pub mod player;
pub mod prompt_cache;
pub mod recorder;

/// Sample rate of everything in this module (G.711's).
pub const SAMPLE_RATE: u32 = 8_000;

pub use player::{
    DoneReason, OutFrame, PlayOptions, Player, PlayerConfig, PlayerEvent, PlayerStats, PromptId,
    RtpStart, SilenceMode,
};
pub use prompt_cache::{CacheStats, Pcm, PromptCache, PromptError};
pub use recorder::{
    recording_path, repair, repair_dir, Channel, RecordError, Recorder, RecorderConfig,
    RecorderPool, RecorderPoolStats, RecorderStats, RecordingHandle, RecordingSummary,
    RepairOutcome, RepairReport,
};
