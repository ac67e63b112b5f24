//! Live transcripts: each answered call's two sides go through the ASR
//! streaming policy ([`hotline_asr::stream`]) in the call's media task, and
//! the jobs it cuts go to the one whisper pool ([`hotline_asr::pool`]). A
//! results thread turns the pool's outcomes into call events: finals go to
//! the store (the call record's `segments`) and, with partials, to the live
//! feed (`GET /api/live`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use hotline_asr::engine::{Engine, Language};
use hotline_asr::pool::{Outcome, Pool, PoolConfig, Stats as PoolStats, WhisperOptions};
use hotline_asr::stream::{JobKind, Stream, StreamConfig};
use hotline_asr::vad::EndpointConfig;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::call::{CallEvent, CallId};
use crate::config::AsrConfig;

/// One side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Caller,
    Gateway,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Gateway => "gateway",
        }
    }
}

/// What `GET /api/live` streams: every partial and final of every call.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSegment {
    /// `partial` or `final`.
    pub kind: &'static str,
    pub call: CallId,
    pub channel: &'static str,
    /// Utterance number on this side of the call (0, 1, ...).
    pub utterance: u64,
    /// Partial number within the utterance.
    pub revision: u32,
    /// Milliseconds from the answer (the recording's time zero).
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// Counters for /metrics, beyond the pool's own.
#[derive(Debug, Default)]
pub struct TranscriptStats {
    pub finals_stored: AtomicU64,
    pub finals_empty: AtomicU64,
    pub partials_published: AtomicU64,
    /// Partials that came back after their utterance's final.
    pub partials_stale: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Sum of end-of-utterance → final decoded, for a mean in /metrics.
    pub final_latency_ms_sum: AtomicU64,
}

struct StreamInfo {
    call: CallId,
    side: Side,
    /// Finals submitted and not yet back.
    pending_finals: u64,
    /// Highest utterance whose final came back.
    finalized: Option<u64>,
    ended: bool,
}

type Registry = Arc<Mutex<HashMap<u64, StreamInfo>>>;

fn registry_lock(
    r: &Mutex<HashMap<u64, StreamInfo>>,
) -> std::sync::MutexGuard<'_, HashMap<u64, StreamInfo>> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process-wide transcriber: the model, the pool and the results thread.
pub struct Transcriber {
    pool: Arc<Pool>,
    registry: Registry,
    stream_cfg: StreamConfig,
    sides: Vec<Side>,
    next_key: AtomicU64,
    pub stats: Arc<TranscriptStats>,
    results: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscriberError {
    #[error("asr.model `{model}`: {message}")]
    Model { model: String, message: String },
    #[error("cannot start the whisper pool: {0}")]
    Pool(String),
}

impl Transcriber {
    /// Loads the model and starts the pool. Finals go to `bus`, everything to `live`.
    pub fn start(
        cfg: &AsrConfig,
        bus: mpsc::Sender<CallEvent>,
        live: broadcast::Sender<LiveSegment>,
    ) -> Result<Transcriber, TranscriberError> {
        let model_err = |message: String| TranscriberError::Model {
            model: cfg.model.clone(),
            message,
        };
        let path = hotline_asr::model::resolve(&cfg.model).map_err(|e| model_err(e.to_string()))?;
        let engine = Arc::new(Engine::load(&path).map_err(|e| model_err(e.to_string()))?);
        let language: Language = cfg
            .language
            .parse()
            .map_err(|_| model_err(format!("language `{}`", cfg.language)))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let workers = if cfg.workers == 0 { cores } else { cfg.workers };
        let threads = if cfg.threads == 0 { cores } else { cfg.threads };
        let opts = WhisperOptions {
            language,
            final_beam: cfg.final_beam,
            threads: threads as u32,
            zh_prompt: None,
        };
        let (out_tx, out_rx) = std::sync::mpsc::channel::<Outcome>();
        let pool = Pool::whisper(
            PoolConfig {
                workers,
                // The pool never runs more decode threads than cores at once.
                cores,
                max_threads: threads,
                ..PoolConfig::default()
            },
            engine,
            opts,
            out_tx,
        )
        .map_err(|e| TranscriberError::Pool(e.to_string()))?;
        let registry: Registry = Arc::default();
        let stats = Arc::new(TranscriptStats::default());
        let results = {
            let registry = registry.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("asr-results".into())
                .spawn(move || forward(out_rx, registry, stats, bus, live))
                .map_err(|e| TranscriberError::Pool(e.to_string()))?
        };
        let sides = cfg
            .channels
            .iter()
            .filter_map(|c| match c.as_str() {
                "caller" => Some(Side::Caller),
                "gateway" => Some(Side::Gateway),
                _ => None,
            })
            .collect();
        tracing::info!(model = %path.display(), workers, threads, "live transcripts on");
        Ok(Transcriber {
            pool: Arc::new(pool),
            registry,
            stream_cfg: StreamConfig {
                partial_interval_ms: cfg.partial_interval_ms,
                endpoint: EndpointConfig {
                    end_silence_ms: cfg.end_silence_ms,
                    max_utterance_ms: cfg.max_utterance_ms,
                    long_after_ms: cfg.long_after_ms,
                    long_end_silence_ms: cfg.long_end_silence_ms,
                    ..EndpointConfig::default()
                },
                ..StreamConfig::default()
            },
            sides,
            next_key: AtomicU64::new(0),
            stats,
            results: Some(results),
        })
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The streams of a newly answered call.
    pub fn call(&self, id: &CallId) -> CallTranscript {
        let mut streams = Vec::new();
        let mut reg = registry_lock(&self.registry);
        for &side in &self.sides {
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            reg.insert(
                key,
                StreamInfo {
                    call: id.clone(),
                    side,
                    pending_finals: 0,
                    finalized: None,
                    ended: false,
                },
            );
            streams.push(SideStream {
                side,
                key,
                stream: Stream::new(self.stream_cfg.clone()),
                next_slot: None,
                hushed: false,
            });
        }
        CallTranscript {
            streams,
            pool: self.pool.clone(),
            registry: self.registry.clone(),
        }
    }

    /// After every call has ended: decodes the finals still queued, then stops.
    pub fn shutdown(mut self) {
        let pool = match Arc::try_unwrap(self.pool) {
            Ok(pool) => pool,
            Err(_) => {
                tracing::warn!("calls still hold the whisper pool; queued finals are lost");
                return;
            }
        };
        let stats = pool.shutdown();
        tracing::info!(?stats, "whisper pool stopped");
        if let Some(h) = self.results.take() {
            let _ = h.join();
        }
    }
}

struct SideStream {
    side: Side,
    key: u64,
    stream: Stream,
    /// Gateway side: the next expected send slot, to fill what was not sent
    /// (hold) with silence so that times stay call times.
    next_slot: Option<u64>,
    /// The speaker's current pause has been reported to the pool (`Pool::hush`).
    hushed: bool,
}

/// Fill at most this much unsent time with silence (60 s at 20 ms); a longer
/// gap (a long hold) is skipped, which shifts that side's later times.
const MAX_GAP_SLOTS: u64 = 3000;

/// One call's streams, owned by its media task.
pub struct CallTranscript {
    streams: Vec<SideStream>,
    pool: Arc<Pool>,
    registry: Registry,
}

impl CallTranscript {
    /// Caller audio, contiguous from the answer.
    pub fn caller(&mut self, pcm: &[i16]) {
        self.push(Side::Caller, None, pcm);
    }

    /// Whether the caller is talking now (an utterance is open).
    pub fn caller_speaking(&self) -> bool {
        self.streams
            .iter()
            .any(|s| s.side == Side::Caller && s.stream.speaking())
    }

    /// Audio we sent, at its send slot.
    pub fn gateway(&mut self, slot: u64, pcm: &[i16]) {
        self.push(Side::Gateway, Some(slot), pcm);
    }

    fn push(&mut self, side: Side, slot: Option<u64>, pcm: &[i16]) {
        let Some(s) = self.streams.iter_mut().find(|s| s.side == side) else {
            return;
        };
        if let Some(slot) = slot {
            let expected = s.next_slot.unwrap_or(slot);
            if slot < expected {
                return; // replayed or reordered slot: already covered
            }
            let gap = slot - expected;
            if gap > 0 && gap <= MAX_GAP_SLOTS {
                let silence = vec![0i16; pcm.len()];
                for _ in 0..gap {
                    s.stream.push_8k(&silence);
                }
            }
            s.next_slot = Some(slot + 1);
        }
        s.stream.push_8k(pcm);
        submit(s, &self.pool, &self.registry);
        // Once per pause: the speculative decode comes next and should find a core.
        let paused = s.stream.paused();
        if paused && !s.hushed {
            self.pool.hush(s.key);
        }
        s.hushed = paused;
    }

    /// The call ended: the open utterances become finals.
    pub fn finish(mut self) {
        for s in &mut self.streams {
            s.stream.finish();
            submit(s, &self.pool, &self.registry);
            let mut reg = registry_lock(&self.registry);
            let done = match reg.get_mut(&s.key) {
                Some(info) => {
                    info.ended = true;
                    info.pending_finals == 0
                }
                None => false,
            };
            if done {
                reg.remove(&s.key);
            }
        }
    }
}

fn submit(s: &mut SideStream, pool: &Pool, registry: &Mutex<HashMap<u64, StreamInfo>>) {
    while let Some(job) = s.stream.poll() {
        if matches!(job.kind, JobKind::Final) {
            if let Some(info) = registry_lock(registry).get_mut(&s.key) {
                info.pending_finals += 1;
            }
        }
        pool.submit(s.key, job);
    }
}

/// The results thread: outcomes to call events and the live feed.
fn forward(
    rx: std::sync::mpsc::Receiver<Outcome>,
    registry: Registry,
    stats: Arc<TranscriptStats>,
    bus: mpsc::Sender<CallEvent>,
    live: broadcast::Sender<LiveSegment>,
) {
    for o in rx {
        let is_final = matches!(o.kind, JobKind::Final);
        let (call, side) = {
            let mut reg = registry_lock(&registry);
            let Some(info) = reg.get_mut(&o.stream_key) else {
                continue;
            };
            let ids = (info.call.clone(), info.side);
            if is_final {
                info.pending_finals = info.pending_finals.saturating_sub(1);
                info.finalized = Some(info.finalized.map_or(o.utterance, |f| f.max(o.utterance)));
                if info.ended && info.pending_finals == 0 {
                    reg.remove(&o.stream_key);
                }
            } else if info.finalized.is_some_and(|f| f >= o.utterance) {
                stats.partials_stale.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            ids
        };
        if let Some(e) = &o.error {
            stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call = %call, error = %e, "decode failed");
        }
        let text = o.text.trim().to_string();
        if text.is_empty() {
            if is_final {
                stats.finals_empty.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let seg = LiveSegment {
            kind: if is_final { "final" } else { "partial" },
            call: call.clone(),
            channel: side.as_str(),
            utterance: o.utterance,
            revision: o.revision,
            start_ms: o.start_ms,
            end_ms: o.end_ms,
            text: text.clone(),
        };
        let _ = live.send(seg);
        if !is_final {
            stats.partials_published.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let waited = Instant::now().saturating_duration_since(o.queued_at);
        stats
            .final_latency_ms_sum
            .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
        let eou_at = SystemTime::now()
            .checked_sub(waited)
            .unwrap_or_else(SystemTime::now);
        let ev = CallEvent::Segment {
            id: call,
            channel: side.as_str(),
            utterance: o.utterance,
            start_ms: o.start_ms,
            end_ms: o.end_ms,
            text,
            eou_at,
            decode_ms: o
                .finished_at
                .saturating_duration_since(o.started_at)
                .as_millis() as u64,
        };
        // Back-pressure, never loss: a slow store holds this thread, and the
        // pool's queue (bounded) holds the rest.
        if bus.blocking_send(ev).is_err() {
            tracing::error!("call store writer is gone; transcript segment not stored");
        } else {
            stats.finals_stored.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(key: u64, kind: JobKind, utterance: u64, text: &str) -> Outcome {
        let now = Instant::now();
        Outcome {
            stream_key: key,
            kind,
            utterance,
            revision: 0,
            start_ms: 1000 * utterance,
            end_ms: 1000 * utterance + 800,
            audio_ms: 1300,
            text: text.into(),
            queued_at: now,
            started_at: now,
            finished_at: now,
            error: None,
        }
    }

    #[test]
    fn finals_become_segments_and_late_partials_are_dropped() {
        let registry: Registry = Arc::default();
        registry_lock(&registry).insert(
            7,
            StreamInfo {
                call: "call-a".into(),
                side: Side::Caller,
                pending_finals: 2,
                finalized: None,
                ended: true,
            },
        );
        let stats = Arc::new(TranscriptStats::default());
        let (bus_tx, mut bus_rx) = mpsc::channel(16);
        let (live_tx, mut live_rx) = broadcast::channel(16);
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(outcome(7, JobKind::Partial, 0, "ni hao")).unwrap();
        tx.send(outcome(7, JobKind::Final, 0, "你好")).unwrap();
        // Decoded by a second worker after its utterance's final: stale.
        tx.send(outcome(7, JobKind::Partial, 0, "ni")).unwrap();
        tx.send(outcome(7, JobKind::Final, 1, "  ")).unwrap();
        // The stream is gone once its last final is back.
        tx.send(outcome(7, JobKind::Final, 2, "再见")).unwrap();
        drop(tx);
        forward(rx, registry.clone(), stats.clone(), bus_tx, live_tx);

        let mut texts = Vec::new();
        while let Ok(seg) = live_rx.try_recv() {
            texts.push((seg.kind, seg.text));
        }
        assert_eq!(
            texts,
            vec![("partial", "ni hao".into()), ("final", "你好".into())]
        );
        match bus_rx.try_recv() {
            Ok(CallEvent::Segment {
                id,
                channel,
                utterance,
                text,
                ..
            }) => {
                assert_eq!((id.as_str(), channel, utterance), ("call-a", "caller", 0));
                assert_eq!(text, "你好");
            }
            other => panic!("expected a segment, got {other:?}"),
        }
        assert!(bus_rx.try_recv().is_err(), "an empty final is not stored");
        assert!(registry_lock(&registry).is_empty());
        assert_eq!(stats.partials_stale.load(Ordering::Relaxed), 1);
        assert_eq!(stats.finals_empty.load(Ordering::Relaxed), 1);
        assert_eq!(stats.finals_stored.load(Ordering::Relaxed), 1);
    }
}
