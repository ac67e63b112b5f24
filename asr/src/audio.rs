//! Decoding audio files (wav, mp3, flac, ogg/vorbis) to mono f32 with symphonia.

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::{g711, resample, TELEPHONE_RATE, WHISPER_RATE};

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a supported audio file (wav, mp3, flac, ogg): {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: decoding failed: {reason}")]
    Decode { path: PathBuf, reason: String },
}

/// Mono audio at some sample rate.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Audio {
    pub fn duration_s(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.samples.len() as f64 / self.rate as f64
        }
    }

    /// The same audio at 16 kHz, as whisper wants it.
    pub fn to_whisper_rate(&self) -> Vec<f32> {
        resample::resample(&self.samples, self.rate, WHISPER_RATE)
    }

    /// The audio as it arrives after a G.711 µ-law call leg: band-limited to 8 kHz sampling,
    /// companded, decoded, and brought back to 16 kHz.
    pub fn through_telephone(&self) -> Vec<f32> {
        let narrow = resample::resample(&self.samples, self.rate, TELEPHONE_RATE);
        let mut pcm: Vec<i16> = narrow.iter().map(|&s| f32_to_i16(s)).collect();
        g711::ulaw_round_trip(&mut pcm);
        let back: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
        resample::resample(&back, TELEPHONE_RATE, WHISPER_RATE)
    }
}

pub fn f32_to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Decodes the first audio track of a file and mixes it down to mono.
pub fn decode_file(path: &Path) -> Result<Audio, AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let format_err = |reason: String| AudioError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let decode_err = |reason: String| AudioError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| format_err(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| format_err("no audio track".into()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| format_err(e.to_string()))?;

    let mut samples = Vec::new();
    let mut bad_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(decode_err(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                rate = spec.rate;
                let channels = spec.channels.count().max(1);
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                let inv = 1.0 / channels as f32;
                samples.extend(
                    sb.samples()
                        .chunks_exact(channels)
                        .map(|frame| frame.iter().sum::<f32>() * inv),
                );
            }
            // A corrupt frame costs that frame, not the file.
            Err(SymphoniaError::DecodeError(_)) => bad_packets += 1,
            Err(e) => return Err(decode_err(e.to_string())),
        }
    }
    if bad_packets > 0 {
        tracing::warn!(path = %path.display(), bad_packets, "skipped undecodable packets");
    }
    if rate == 0 {
        return Err(format_err("unknown sample rate".into()));
    }
    Ok(Audio { samples, rate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_wav(path: &Path, rate: u32, channels: u16, data: &[i16]) {
        let mut f = File::create(path).unwrap();
        let bytes = (data.len() * 2) as u32;
        f.write_all(b"RIFF").unwrap();
        f.write_all(&(36 + bytes).to_le_bytes()).unwrap();
        f.write_all(b"WAVEfmt ").unwrap();
        f.write_all(&16u32.to_le_bytes()).unwrap();
        f.write_all(&1u16.to_le_bytes()).unwrap();
        f.write_all(&channels.to_le_bytes()).unwrap();
        f.write_all(&rate.to_le_bytes()).unwrap();
        f.write_all(&(rate * channels as u32 * 2).to_le_bytes())
            .unwrap();
        f.write_all(&(channels * 2).to_le_bytes()).unwrap();
        f.write_all(&16u16.to_le_bytes()).unwrap();
        f.write_all(b"data").unwrap();
        f.write_all(&bytes.to_le_bytes()).unwrap();
        for s in data {
            f.write_all(&s.to_le_bytes()).unwrap();
        }
    }

    #[test]
    fn stereo_wav_is_mixed_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        write_wav(&p, 8000, 2, &[1000, 3000, -2000, -4000]);
        let a = decode_file(&p).unwrap();
        assert_eq!(a.rate, 8000);
        assert_eq!(a.samples.len(), 2);
        assert!((a.samples[0] - 2000.0 / 32768.0).abs() < 1e-6);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        std::fs::write(&p, b"RIFF\x00\x00not really a wav").unwrap();
        let e = decode_file(&p).unwrap_err().to_string();
        assert!(e.contains("x.wav"), "{e}");
        let e = decode_file(&dir.path().join("missing.wav"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.wav") && e.contains("cannot open"),
            "{e}"
        );
    }

    #[test]
    fn telephone_path_keeps_length_and_band_limits() {
        let rate = 16000;
        let x: Vec<f32> = (0..rate)
            .map(|i| {
                let t = i as f32 / rate as f32;
                0.3 * (2.0 * std::f32::consts::PI * 500.0 * t).sin()
                    + 0.3 * (2.0 * std::f32::consts::PI * 6000.0 * t).sin()
            })
            .collect();
        let a = Audio { samples: x, rate };
        let y = a.through_telephone();
        assert_eq!(y.len(), 16000);
        // The 6 kHz component is gone, the 500 Hz one stays: total power halves.
        let p: f32 = y[2000..14000].iter().map(|v| v * v).sum::<f32>() / 12000.0;
        assert!((p - 0.045).abs() < 0.005, "power {p}");
    }
}
