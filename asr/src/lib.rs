//! hotline's speech side: audio front end (decode, resample, G.711 line simulation, VAD),
//! the whisper engine, whisper model import, batch transcription and accuracy evaluation.

pub mod audio;
pub mod engine;
pub mod eval;
pub mod g711;
pub mod model;
pub mod pool;
pub mod resample;
pub mod stream;
pub mod text;
pub mod transcribe;
pub mod vad;

/// Sample rate whisper consumes.
pub const WHISPER_RATE: u32 = 16_000;
/// Sample rate of a G.711 telephone channel.
pub const TELEPHONE_RATE: u32 = 8_000;
