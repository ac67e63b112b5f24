//! Prompt audio, decoded once: any file `hotline_asr::audio` reads (wav, mp3, flac,
//! ogg/vorbis) is mixed to mono, resampled to 8 kHz with the band-limited polyphase
//! resampler (so a 44.1 kHz studio recording does not alias into the telephone band) and
//! kept as `i16` PCM behind an `Arc`, ready for the [`Player`](super::Player).
//!
//! [`PromptCache`] is shared by every call (clone it: it is one `Arc`). Entries are keyed by
//! the path as given plus the file's modification time and length, so editing a prompt
//! on disk takes effect on its next use without a restart. The cache is bounded by the
//! total number of cached samples and evicts the least recently used prompts first; a
//! prompt bigger than the whole budget is decoded for each use and never cached.
//!
//! [`PromptCache::get`] does blocking file I/O on a miss (and one `stat` on a hit): call
//! it at start-up to preload, or from `spawn_blocking`. The lock is not held while
//! decoding, so two calls that miss on the same file at once both decode it (the second
//! result replaces the first; both are correct).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use hotline_asr::audio::{self, AudioError};
use hotline_asr::resample;

use super::SAMPLE_RATE;

/// 8 kHz mono PCM, shared between the cache and every player using it.
pub type Pcm = Arc<[i16]>;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: cannot read prompt: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Decoding failed; the message names the file.
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{path}: prompt has no audio samples")]
    Empty { path: PathBuf },
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Prompts larger than the whole budget, decoded but not kept.
    pub uncacheable: u64,
    pub entries: usize,
    pub samples: usize,
}

/// Thread-safe LRU cache of decoded prompts. Cloning is cheap and shares the cache.
#[derive(Clone)]
pub struct PromptCache {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    entries: HashMap<PathBuf, Entry>,
    max_samples: usize,
    samples: usize,
    clock: u64,
    stats: CacheStats,
}

struct Entry {
    version: FileVersion,
    pcm: Pcm,
    last_used: u64,
}

/// What identifies one content of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    mtime: Option<SystemTime>,
    len: u64,
}

impl PromptCache {
    /// A cache holding at most `max_samples` samples in total (8000 per second of audio,
    /// two bytes each: 10 minutes of prompts is 4.8 M samples, 9.6 MB).
    pub fn new(max_samples: usize) -> Self {
        PromptCache {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                max_samples,
                samples: 0,
                clock: 0,
                stats: CacheStats::default(),
            })),
        }
    }

    /// The prompt at `path` as 8 kHz mono PCM, from the cache when the file has not
    /// changed since it was decoded. Blocking (see the module doc).
    pub fn get(&self, path: &Path) -> Result<Pcm, PromptError> {
        let meta = std::fs::metadata(path).map_err(|source| PromptError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let version = FileVersion {
            mtime: meta.modified().ok(),
            len: meta.len(),
        };
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            let hit = match inner.entries.get_mut(path) {
                Some(e) if e.version == version => {
                    e.last_used = now;
                    Some(e.pcm.clone())
                }
                _ => None,
            };
            if let Some(pcm) = hit {
                inner.stats.hits += 1;
                return Ok(pcm);
            }
            inner.stats.misses += 1;
        }
        let pcm: Pcm = load_prompt(path)?.into();
        self.lock().insert(path, version, pcm.clone());
        Ok(pcm)
    }

    /// Decodes and caches each file now (start-up), so the first call does not wait.
    pub fn preload<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
    ) -> Result<(), PromptError> {
        for p in paths {
            self.get(p.as_ref())?;
        }
        Ok(())
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.entries.len(),
            samples: inner.samples,
            ..inner.stats
        }
    }

    /// Drops every entry (players still holding a prompt keep it alive).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.samples = 0;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the map consistent (every
        // mutation is a single insert/remove plus a counter), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, path: &Path, version: FileVersion, pcm: Pcm) {
        if let Some(old) = self.entries.remove(path) {
            self.samples -= old.pcm.len();
        }
        if pcm.len() > self.max_samples {
            self.stats.uncacheable += 1;
            return;
        }
        while self.samples + pcm.len() > self.max_samples {
            let Some(victim) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&victim) {
                self.samples -= e.pcm.len();
                self.stats.evictions += 1;
            }
        }
        self.clock += 1;
        self.samples += pcm.len();
        self.entries.insert(
            path.to_path_buf(),
            Entry {
                version,
                pcm,
                last_used: self.clock,
            },
        );
    }
}

/// Decodes a prompt file to 8 kHz mono `i16` without caching it.
pub fn load_prompt(path: &Path) -> Result<Vec<i16>, PromptError> {
    let a = audio::decode_file(path)?;
    let pcm = to_telephone_pcm(&a.samples, a.rate);
    if pcm.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(pcm)
}

/// Mono f32 samples at `rate` to 8 kHz `i16` (anti-aliased resample, clipped to range).
pub fn to_telephone_pcm(samples: &[f32], rate: u32) -> Vec<i16> {
    let narrow;
    let at_8k = if rate == SAMPLE_RATE {
        samples
    } else {
        narrow = resample::resample(samples, rate, SAMPLE_RATE);
        &narrow[..]
    };
    at_8k.iter().map(|&s| audio::f32_to_i16(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn write_wav(path: &Path, rate: u32, channels: u16, frames: &[Vec<i16>]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for f in frames {
            for &s in f {
                w.write_sample(s).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    fn tone(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<i16> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as i16)
            .collect()
    }

    fn mono(path: &Path, rate: u32, x: &[i16]) {
        let frames: Vec<Vec<i16>> = x.iter().map(|&s| vec![s]).collect();
        write_wav(path, rate, 1, &frames);
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    /// Correlation of `x` with a sine/cosine pair at `freq`: the amplitude of that tone.
    fn tone_amp(x: &[i16], freq: f64) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * i as f64 / SAMPLE_RATE as f64;
            s += v as f64 * ph.sin();
            c += v as f64 * ph.cos();
        }
        2.0 * (s * s + c * c).sqrt() / x.len() as f64
    }

    #[test]
    fn converts_any_rate_to_8k_without_aliasing() {
        let dir = tempfile::tempdir().unwrap();
        for rate in [8000u32, 16000, 22050, 44100, 48000] {
            let p = dir.path().join(format!("t{rate}.wav"));
            // 1 kHz stays; 6 kHz (above the 4 kHz telephone Nyquist) must not fold to 2 kHz.
            let a = tone(1000.0, rate, 1.0, 8000.0);
            let b = if rate > 12000 {
                tone(6000.0, rate, 1.0, 8000.0)
            } else {
                vec![0; a.len()]
            };
            let x: Vec<i16> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
            mono(&p, rate, &x);
            let pcm = load_prompt(&p).unwrap();
            assert!(
                (pcm.len() as i64 - 8000).abs() <= 1,
                "{rate}: {}",
                pcm.len()
            );
            let mid = &pcm[800..7200];
            let keep = tone_amp(mid, 1000.0);
            let alias = tone_amp(mid, 8000.0 - 6000.0);
            assert!((keep - 8000.0).abs() < 200.0, "{rate}: 1 kHz amp {keep}");
            assert!(alias < 20.0, "{rate}: alias amp {alias}");
            // Nothing else either: the output is the 1 kHz tone alone.
            assert!((rms(mid) - 8000.0 / 2f64.sqrt()).abs() < 150.0, "{rate}");
        }
    }

    #[test]
    fn stereo_is_mixed_down_and_loud_input_clips_instead_of_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        let frames: Vec<Vec<i16>> = (0..1600).map(|_| vec![32767, 32767]).collect();
        write_wav(&p, 16000, 2, &frames);
        let pcm = load_prompt(&p).unwrap();
        assert_eq!(pcm.len(), 800);
        // The resampler's ripple on a full-scale step overshoots; it must clip, not wrap.
        assert!(pcm[100..700].iter().all(|&s| s > 32000), "{:?}", &pcm[..8]);
    }

    #[test]
    fn cache_hits_share_one_buffer_and_reload_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("menu.wav");
        mono(&p, 8000, &[1, 2, 3, 4]);
        let cache = PromptCache::new(1_000_000);
        let a = cache.get(&p).unwrap();
        let b = cache.clone().get(&p).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&a[..], &[1, 2, 3, 4]);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.samples), (1, 1, 1, 4));

        // Same length, new content and a new mtime: reloaded.
        mono(&p, 8000, &[5, 6, 7, 8]);
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let c = cache.get(&p).unwrap();
        assert_eq!(&c[..], &[5, 6, 7, 8]);
        assert_eq!(&a[..], &[1, 2, 3, 4], "old holders keep the old audio");
        let s = cache.stats();
        assert_eq!((s.misses, s.entries, s.samples), (2, 1, 4));
    }

    #[test]
    fn lru_eviction_keeps_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..4)
            .map(|i| {
                let p = dir.path().join(format!("{i}.wav"));
                mono(&p, 8000, &[i as i16; 100]);
                p
            })
            .collect();
        let cache = PromptCache::new(300);
        cache.get(&paths[0]).unwrap();
        cache.get(&paths[1]).unwrap();
        cache.get(&paths[2]).unwrap();
        cache.get(&paths[0]).unwrap(); // 1 is now the least recently used
        cache.get(&paths[3]).unwrap();
        let s = cache.stats();
        assert_eq!((s.entries, s.samples, s.evictions), (3, 300, 1));
        cache.get(&paths[0]).unwrap();
        cache.get(&paths[2]).unwrap();
        cache.get(&paths[3]).unwrap();
        assert_eq!(cache.stats().misses, 4, "0, 2 and 3 stayed");
        cache.get(&paths[1]).unwrap();
        assert_eq!(cache.stats().misses, 5, "1 was evicted");

        // Larger than the whole budget: served, not cached, nothing evicted for it.
        let big = dir.path().join("big.wav");
        mono(&big, 8000, &[9; 301]);
        assert_eq!(cache.get(&big).unwrap().len(), 301);
        let s = cache.stats();
        assert_eq!((s.uncacheable, s.entries, s.samples), (1, 3, 300));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PromptCache::new(1000);
        let missing = dir.path().join("nope.wav");
        let e = cache.get(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.wav"), "{e}");
        let junk = dir.path().join("junk.mp3");
        std::fs::write(&junk, b"ID3 this is not an mp3 at all").unwrap();
        let e = cache.get(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.mp3"), "{e}");
        let empty = dir.path().join("empty.wav");
        mono(&empty, 8000, &[]);
        let e = cache.get(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.wav"), "{e}");
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn shared_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.wav");
        mono(&p, 16000, &tone(440.0, 16000, 0.5, 3000.0));
        let cache = PromptCache::new(100_000);
        let lens: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let c = cache.clone();
                    let p = p.clone();
                    s.spawn(move || (0..50).map(|_| c.get(&p).unwrap().len()).sum())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(lens.iter().all(|&n| n == 50 * 4000), "{lens:?}");
        let s = cache.stats();
        assert_eq!(s.hits + s.misses, 200);
        assert_eq!(s.entries, 1);
    }
}
