//! The engine pool: N worker threads, each with its own recogniser (one whisper state on
//! a shared model), fed from one priority queue.
//!
//! The queue policy is a sans-IO core, [`JobQueue`], with the time passed in, so the
//! load policy is tested to the millisecond without threads. The policy is the one the
//! design asks for: finals are the record of the call and are never shed; partials are
//! a live preview, worth something only while fresh, and are the first thing let go
//! under load. [`Pool`] wraps the core in a mutex and a condvar and adds the threads.
//!
//! With more than one worker, outcomes of one stream can finish out of order: a partial
//! of an utterance may come back after that utterance's final. Consumers keep the
//! final and ignore partials of utterances already finalised.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::{DecodeOptions, Decoder, Engine, EngineError, Language, Piece};
use crate::stream::{Job, JobKind};

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Most partials queued at once (at most one per stream is ever queued).
    pub partial_capacity: usize,
    /// A partial that has waited longer than this is stale: by the time it decoded, the
    /// next one would be due.
    pub partial_max_age: Duration,
    /// Memory guard, not policy: queued finals may hold at most this many 16 kHz
    /// samples. Past it the oldest final is dropped and counted in `finals_dropped`;
    /// reaching it means the pool has been far behind for a long time (the default is
    /// an hour of audio, ~230 MB) and the process would otherwise run out of memory.
    pub max_final_samples: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            partial_capacity: 256,
            partial_max_age: Duration::from_secs(2),
            max_final_samples: 3600 * crate::WHISPER_RATE as usize,
        }
    }
}

/// Counters since the queue was made, and what is queued now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Jobs accepted by `push`.
    pub queued: u64,
    /// Jobs handed to a worker.
    pub started: u64,
    /// Jobs a worker finished (with text or an error).
    pub done: u64,
    /// Partials let go: replaced by a newer one of the same stream, superseded by its
    /// final, too old when their turn came, over capacity, or left at shutdown.
    pub partials_shed: u64,
    /// Finals dropped by the memory guard ([`QueueConfig::max_final_samples`]).
    pub finals_dropped: u64,
    /// Finals answered by their speculative decode (done or running when they came):
    /// these finals end without a decode of their own.
    pub speculative_hits: u64,
    /// Speculative jobs let go before they ran (their final came first, or the speaker
    /// went on).
    pub speculative_shed: u64,
    /// Speculative decodes that ran but whose final came with other audio (the speaker
    /// went on after a pause): work spent for nothing.
    pub speculative_wasted: u64,
    pub queued_finals: usize,
    pub queued_partials: usize,
    pub queued_final_samples: usize,
}

/// A job with its stream and the time it entered the queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub stream_key: u64,
    pub job: Job,
    pub queued_at: Instant,
}

pub struct JobQueue {
    cfg: QueueConfig,
    finals: VecDeque<Queued>,
    final_samples: usize,
    /// Partials by arrival sequence, so the first entry is the oldest.
    partials: BTreeMap<u64, Queued>,
    /// Stream key → its queued partial's sequence number.
    partial_of: HashMap<u64, u64>,
    seq: u64,
    /// Queued speculative decodes, oldest first (at most one per stream).
    specs: VecDeque<Queued>,
    /// Each stream's latest speculative decode and where it stands.
    spec_of: HashMap<u64, Spec>,
    /// Finals waiting for their running speculative decode, by (stream, utterance).
    awaiting: HashMap<(u64, u64), (AudioKey, Queued)>,
    stats: Stats,
}

/// What identifies a job's audio within its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AudioKey {
    utterance: u64,
    start_ms: u64,
    end_ms: u64,
    samples: usize,
}

impl AudioKey {
    fn of(job: &Job) -> AudioKey {
        AudioKey {
            utterance: job.utterance,
            start_ms: job.start_ms,
            end_ms: job.end_ms,
            samples: job.audio.len(),
        }
    }
}

#[derive(Debug)]
enum SpecState {
    Queued,
    Running,
    Done(Decoded),
}

#[derive(Debug)]
struct Spec {
    key: AudioKey,
    state: SpecState,
}

/// A finished decode's result.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub text: String,
    pub started_at: Instant,
    pub finished_at: Instant,
    pub error: Option<String>,
}

/// A final answered without a decode of its own.
#[derive(Debug)]
pub struct Answered {
    pub final_job: Queued,
    pub result: Decoded,
}

impl JobQueue {
    pub fn new(cfg: QueueConfig) -> JobQueue {
        JobQueue {
            cfg,
            finals: VecDeque::new(),
            final_samples: 0,
            partials: BTreeMap::new(),
            partial_of: HashMap::new(),
            seq: 0,
            specs: VecDeque::new(),
            spec_of: HashMap::new(),
            awaiting: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// Queues a job. A final whose speculative decode already finished comes back at
    /// once, answered; one whose speculative decode is running waits for it (see
    /// [`complete_speculative`](Self::complete_speculative)).
    pub fn push(&mut self, stream_key: u64, job: Job, now: Instant) -> Option<Answered> {
        self.stats.queued += 1;
        self.shed_stale(now);
        match job.kind {
            JobKind::Speculative => {
                self.forget_spec(stream_key);
                self.spec_of.insert(
                    stream_key,
                    Spec {
                        key: AudioKey::of(&job),
                        state: SpecState::Queued,
                    },
                );
                self.specs.push_back(Queued {
                    stream_key,
                    job,
                    queued_at: now,
                });
            }
            JobKind::Final => {
                let queued = Queued {
                    stream_key,
                    job,
                    queued_at: now,
                };
                let key = AudioKey::of(&queued.job);
                let same = self.spec_of.get(&stream_key).is_some_and(|s| s.key == key);
                if same {
                    match self.spec_of.remove(&stream_key).map(|s| s.state) {
                        Some(SpecState::Done(result)) => {
                            self.stats.speculative_hits += 1;
                            self.update_depth();
                            return Some(Answered {
                                final_job: queued,
                                result,
                            });
                        }
                        Some(SpecState::Running) => {
                            // Settled: the speculation is this final, whatever the
                            // stream does next.
                            self.stats.speculative_hits += 1;
                            self.awaiting
                                .insert((stream_key, key.utterance), (key, queued));
                            self.update_depth();
                            return None;
                        }
                        // Not started yet: the final simply takes its place.
                        Some(SpecState::Queued) | None => {
                            self.specs.retain(|q| q.stream_key != stream_key);
                            self.stats.speculative_shed += 1;
                        }
                    }
                } else {
                    self.forget_spec(stream_key);
                }
                self.queue_final(queued);
            }
            JobKind::Partial => {
                // The speaker went on, so the speculative cut is probably not the final:
                // one not started yet is not worth a core. One decoded (or decoding) is
                // kept: if the utterance grows too long it is split at that cut
                // (`Endpointer::offer_split`), and this is the first part's final.
                if self.spec_of.get(&stream_key).is_some_and(|s| {
                    s.key.utterance == job.utterance && matches!(s.state, SpecState::Queued)
                }) {
                    self.forget_spec(stream_key);
                }
                self.queue_partial(stream_key, job, now);
            }
        }
        self.update_depth();
        None
    }

    /// Drops a stream's speculative decode: unqueued if it has not run, its result
    /// discarded if it has or is running.
    fn forget_spec(&mut self, stream_key: u64) {
        let Some(spec) = self.spec_of.remove(&stream_key) else {
            return;
        };
        match spec.state {
            SpecState::Queued => {
                self.specs.retain(|q| q.stream_key != stream_key);
                self.stats.speculative_shed += 1;
            }
            SpecState::Running | SpecState::Done(_) => {
                self.stats.speculative_wasted += 1;
            }
        }
    }

    /// A speculative decode handed out by `pop` has finished. Returns the final that
    /// was waiting for it, if one came meanwhile.
    pub fn complete_speculative(
        &mut self,
        stream_key: u64,
        job: &Job,
        result: Decoded,
    ) -> Option<Answered> {
        self.stats.done += 1;
        let key = AudioKey::of(job);
        if let Some((k, _)) = self.awaiting.get(&(stream_key, key.utterance)) {
            if *k == key {
                let (_, final_job) = self.awaiting.remove(&(stream_key, key.utterance))?;
                return Some(Answered { final_job, result });
            }
        }
        let spec = self.spec_of.get_mut(&stream_key)?;
        if spec.key == key && matches!(spec.state, SpecState::Running) {
            spec.state = SpecState::Done(result);
        }
        None
    }

    fn queue_final(&mut self, q: Queued) {
        // Its final makes a stream's queued partial of the same utterance moot.
        if let Some(&seq) = self.partial_of.get(&q.stream_key) {
            if self
                .partials
                .get(&seq)
                .is_some_and(|p| p.job.utterance <= q.job.utterance)
            {
                self.remove_partial(seq);
                self.stats.partials_shed += 1;
            }
        }
        self.final_samples += q.job.audio.len();
        self.finals.push_back(q);
        while self.final_samples > self.cfg.max_final_samples && self.finals.len() > 1 {
            if let Some(old) = self.finals.pop_front() {
                self.final_samples -= old.job.audio.len();
                self.stats.finals_dropped += 1;
                tracing::warn!(
                    stream = old.stream_key,
                    utterance = old.job.utterance,
                    "final dropped: queued finals exceed the memory guard"
                );
            }
        }
    }

    fn queue_partial(&mut self, stream_key: u64, job: Job, now: Instant) {
        if let Some(seq) = self.partial_of.get(&stream_key).copied() {
            self.remove_partial(seq);
            self.stats.partials_shed += 1;
        }
        while self.partials.len() >= self.cfg.partial_capacity.max(1) {
            match self.partials.first_key_value().map(|(k, _)| *k) {
                Some(seq) => {
                    self.remove_partial(seq);
                    self.stats.partials_shed += 1;
                }
                None => break,
            }
        }
        let seq = self.seq;
        self.seq += 1;
        self.partial_of.insert(stream_key, seq);
        self.partials.insert(
            seq,
            Queued {
                stream_key,
                job,
                queued_at: now,
            },
        );
    }

    /// The next job to run: the oldest final, else the oldest speculative decode, else
    /// the oldest partial still fresh.
    pub fn pop(&mut self, now: Instant) -> Option<Queued> {
        self.pop_with(now, true, &[])
    }

    /// As [`pop`](Self::pop), with partials only if `partials`, and no final or
    /// speculative decode of a stream in `busy` (one of its finals is decoding).
    /// Two finals of one stream decoded side by side could finish in the wrong
    /// order, and the live feed and the bus must carry a side's finals in order.
    pub fn pop_with(&mut self, now: Instant, partials: bool, busy: &[u64]) -> Option<Queued> {
        if let Some(q) = self.pop_final(busy) {
            return Some(q);
        }
        if let Some(i) = self
            .specs
            .iter()
            .position(|q| !busy.contains(&q.stream_key))
        {
            let q = self.specs.remove(i)?;
            if let Some(spec) = self.spec_of.get_mut(&q.stream_key) {
                spec.state = SpecState::Running;
            }
            self.stats.started += 1;
            self.update_depth();
            return Some(q);
        }
        self.shed_stale(now);
        if !partials {
            return None;
        }
        let seq = self.partials.first_key_value().map(|(k, _)| *k)?;
        let q = self.remove_partial(seq)?;
        self.stats.started += 1;
        self.update_depth();
        Some(q)
    }

    /// The oldest final of a stream not in `busy` (alone, at shutdown).
    pub fn pop_final(&mut self, busy: &[u64]) -> Option<Queued> {
        let i = self
            .finals
            .iter()
            .position(|q| !busy.contains(&q.stream_key))?;
        let q = self.finals.remove(i)?;
        self.final_samples -= q.job.audio.len();
        self.stats.started += 1;
        self.update_depth();
        Some(q)
    }

    /// Sheds every queued partial (and speculative decode); returns how many partials.
    pub fn shed_partials(&mut self) -> usize {
        let n = self.partials.len();
        self.partials.clear();
        self.partial_of.clear();
        for q in std::mem::take(&mut self.specs) {
            self.spec_of.remove(&q.stream_key);
            self.stats.speculative_shed += 1;
        }
        self.stats.partials_shed += n as u64;
        self.update_depth();
        n
    }

    /// Drops a stream's queued partial (its speaker paused). Returns whether one was.
    pub fn shed_partial_of(&mut self, stream_key: u64) -> bool {
        let Some(&seq) = self.partial_of.get(&stream_key) else {
            return false;
        };
        let shed = self.remove_partial(seq).is_some();
        if shed {
            self.stats.partials_shed += 1;
        }
        self.update_depth();
        shed
    }

    /// A partial handed out by `pop` was stopped to make room for a final: shed.
    pub fn abandon_partial(&mut self) {
        self.stats.partials_shed += 1;
    }

    /// A job handed out by `pop` has finished.
    pub fn complete(&mut self) {
        self.stats.done += 1;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.finals.len() + self.specs.len() + self.partials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finals and speculative decodes that could start now (none of a stream in `busy`):
    /// the work a decode that starts now would hold up if it took every core. (Queued
    /// partials do not count: they wait for an idle pool anyway.)
    pub fn finals_startable(&self, busy: &[u64]) -> usize {
        self.finals
            .iter()
            .chain(self.specs.iter())
            .filter(|q| !busy.contains(&q.stream_key))
            .count()
    }

    fn shed_stale(&mut self, now: Instant) {
        while let Some((&seq, q)) = self.partials.first_key_value() {
            if now.saturating_duration_since(q.queued_at) <= self.cfg.partial_max_age {
                break;
            }
            self.remove_partial(seq);
            self.stats.partials_shed += 1;
        }
        self.update_depth();
    }

    fn remove_partial(&mut self, seq: u64) -> Option<Queued> {
        let q = self.partials.remove(&seq)?;
        if self.partial_of.get(&q.stream_key) == Some(&seq) {
            self.partial_of.remove(&q.stream_key);
        }
        Some(q)
    }

    fn update_depth(&mut self) {
        self.stats.queued_finals = self.finals.len();
        self.stats.queued_partials = self.partials.len();
        self.stats.queued_final_samples = self.final_samples;
    }
}

/// Turns 16 kHz audio into text. One per worker thread; never shared.
pub trait Recognizer: Send {
    /// `threads`: CPU threads this decode may use (the pool's share for it);
    /// `backlog`: other finals are waiting or decoding, so a final should decode fast
    /// (greedy, no fallback) rather than well (beam search, temperature fallback).
    fn recognize(
        &mut self,
        audio: &[f32],
        kind: JobKind,
        threads: u32,
        backlog: bool,
    ) -> Result<Vec<Piece>, EngineError>;

    /// A flag that stops the decode in progress when set (the pool sets it to make
    /// room for a final by abandoning a partial). `None`: decodes cannot be stopped.
    fn abort_handle(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        None
    }
}

/// How the whisper recogniser decodes partials and finals.
#[derive(Debug, Clone)]
pub struct WhisperOptions {
    pub language: Language,
    /// Beam width for finals while no other final waits (partials, and finals decoded
    /// under a backlog, are greedy).
    pub final_beam: u32,
    /// Threads per whisper state. One per state and one state per core uses the cores
    /// without the states fighting over them.
    pub threads: u32,
    pub zh_prompt: Option<String>,
}

impl Default for WhisperOptions {
    fn default() -> Self {
        WhisperOptions {
            language: Language::Zh,
            final_beam: 5,
            threads: 1,
            zh_prompt: None,
        }
    }
}

impl WhisperOptions {
    /// Greedy and no temperature fallback: a partial is replaced within a second, so
    /// speed matters more than the last bit of accuracy.
    pub fn partial_options(&self) -> DecodeOptions {
        DecodeOptions {
            language: self.language,
            beam: 1,
            fit_audio_ctx: true,
            threads: self.threads.max(1),
            zh_prompt: self.zh_prompt.clone(),
            temperature_fallback: false,
        }
    }

    pub fn final_options(&self) -> DecodeOptions {
        DecodeOptions {
            language: self.language,
            beam: self.final_beam.max(1),
            fit_audio_ctx: true,
            threads: self.threads.max(1),
            zh_prompt: self.zh_prompt.clone(),
            temperature_fallback: true,
        }
    }
}

/// A whisper state with the decode options for each kind of job.
pub struct WhisperRecognizer {
    decoder: Decoder,
    partial: DecodeOptions,
    final_: DecodeOptions,
    /// Finals under a backlog: greedy, and no temperature fallback, which encodes a
    /// hard utterance again and samples it five ways while other finals wait. (zh
    /// fixtures through G.711, base-q8_0 greedy + zh prompt: CER 0.518 without
    /// fallback, 0.465 with, at about half the time.)
    final_fast: DecodeOptions,
}

impl WhisperRecognizer {
    pub fn new(engine: &Engine, opts: &WhisperOptions) -> Result<WhisperRecognizer, EngineError> {
        Ok(WhisperRecognizer {
            decoder: engine.decoder()?,
            partial: opts.partial_options(),
            final_: opts.final_options(),
            final_fast: DecodeOptions {
                beam: 1,
                temperature_fallback: false,
                ..opts.final_options()
            },
        })
    }
}

impl Recognizer for WhisperRecognizer {
    fn recognize(
        &mut self,
        audio: &[f32],
        kind: JobKind,
        threads: u32,
        backlog: bool,
    ) -> Result<Vec<Piece>, EngineError> {
        let opts = match kind {
            JobKind::Partial => &mut self.partial,
            JobKind::Final | JobKind::Speculative if backlog => &mut self.final_fast,
            JobKind::Final | JobKind::Speculative => &mut self.final_,
        };
        opts.threads = threads.max(1);
        self.decoder.decode(audio, opts)
    }

    fn abort_handle(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        Some(self.decoder.abort_handle())
    }
}

/// Text joined from pieces: no space where either side is Chinese (or Japanese) script
/// or full-width punctuation, one space between words otherwise.
pub fn join_pieces(pieces: &[Piece]) -> String {
    fn unspaced(c: char) -> bool {
        crate::text::is_cjk(c) || matches!(c as u32, 0x3000..=0x30FF | 0xFF00..=0xFFEF)
    }
    let mut out = String::new();
    for p in pieces {
        let t = p.text.trim();
        let Some(first) = t.chars().next() else {
            continue;
        };
        if let Some(last) = out.chars().next_back() {
            if !unspaced(last) && !unspaced(first) {
                out.push(' ');
            }
        }
        out.push_str(t);
    }
    out
}

/// The result of one job.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stream_key: u64,
    pub kind: JobKind,
    pub utterance: u64,
    pub revision: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Audio decoded (with padding), for real-time-factor figures.
    pub audio_ms: u64,
    /// Possibly empty: silence or a filtered hallucination; the caller decides.
    pub text: String,
    pub queued_at: Instant,
    pub started_at: Instant,
    pub finished_at: Instant,
    pub error: Option<String>,
}

/// Where outcomes go. Workers call it from their own threads, so it must not block for
/// long: a slow sink holds a recogniser idle.
pub enum Sink {
    Channel(Sender<Outcome>),
    Callback(Arc<dyn Fn(Outcome) + Send + Sync>),
}

impl From<Sender<Outcome>> for Sink {
    fn from(tx: Sender<Outcome>) -> Sink {
        Sink::Channel(tx)
    }
}

impl Sink {
    fn send(&self, o: Outcome) {
        match self {
            // A receiver that has gone away wants no more results.
            Sink::Channel(tx) => {
                let _ = tx.send(o);
            }
            Sink::Callback(f) => f(o),
        }
    }

    fn clone_for_worker(&self) -> Sink {
        match self {
            Sink::Channel(tx) => Sink::Channel(tx.clone()),
            Sink::Callback(f) => Sink::Callback(Arc::clone(f)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Worker threads, each with its own recogniser.
    pub workers: usize,
    /// CPU threads all decodes together may use at once. A decode that starts with
    /// nothing else waiting takes all that are free (up to `max_threads`), otherwise one;
    /// a worker waits rather than go over the budget, because ggml's threads spin at
    /// their barriers and an oversubscribed core slows every decode several times over.
    pub cores: usize,
    /// Most threads one decode takes.
    pub max_threads: usize,
    pub queue: QueueConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        PoolConfig {
            workers: cores,
            cores,
            max_threads: cores,
            queue: QueueConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot start a recogniser thread: {0}")]
    Spawn(std::io::Error),
}

struct State {
    queue: JobQueue,
    closing: bool,
    /// CPU threads not held by a running decode.
    free_cores: usize,
    cores: usize,
    /// Per worker: what it runs now and its recogniser's abort flag.
    running: Vec<Running>,
    max_threads: usize,
}

struct Running {
    /// The kind of job and its stream, while one runs.
    job: Option<(JobKind, u64)>,
    abort: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Running {
    /// Stops the job if it is a partial (of `stream`, when given).
    fn stop_partial(&self, stream: Option<u64>) {
        if let (Some((JobKind::Partial, key)), Some(flag)) = (self.job, &self.abort) {
            if stream.is_none_or(|s| s == key) {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// The lock is never held across a decode or a callback, so a poisoned mutex only
    /// means a panic inside the queue's own bookkeeping; the state is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// For finals answered at `submit` by a finished speculative decode.
    sink: Sink,
}

impl Pool {
    /// Starts `cfg.workers` threads, each with a recogniser from `factory(worker_index)`.
    /// Recognisers are made here, before any thread starts, so a model that cannot give
    /// a state fails the call rather than a thread.
    pub fn new<R, F>(
        cfg: PoolConfig,
        mut factory: F,
        sink: impl Into<Sink>,
    ) -> Result<Pool, PoolError>
    where
        R: Recognizer + 'static,
        F: FnMut(usize) -> Result<R, EngineError>,
    {
        let sink = sink.into();
        let n = cfg.workers.max(1);
        let mut recognizers = Vec::with_capacity(n);
        for i in 0..n {
            recognizers.push(factory(i)?);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: JobQueue::new(cfg.queue),
                closing: false,
                free_cores: cfg.cores.max(1),
                cores: cfg.cores.max(1),
                running: Vec::new(),
                max_threads: cfg.max_threads.max(1),
            }),
            wake: Condvar::new(),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::with_capacity(n),
            sink: sink.clone_for_worker(),
        };
        pool.shared.lock().running = recognizers
            .iter()
            .map(|r| Running {
                job: None,
                abort: r.abort_handle(),
            })
            .collect();
        for (i, rec) in recognizers.into_iter().enumerate() {
            let shared = Arc::clone(&pool.shared);
            let sink = sink.clone_for_worker();
            let handle = std::thread::Builder::new()
                .name(format!("asr-worker-{i}"))
                .spawn(move || worker(shared, i, rec, sink))
                .map_err(PoolError::Spawn)?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// A pool of whisper recognisers, one state per worker on one shared model.
    pub fn whisper(
        cfg: PoolConfig,
        engine: Arc<Engine>,
        opts: WhisperOptions,
        sink: impl Into<Sink>,
    ) -> Result<Pool, PoolError> {
        Pool::new(cfg, |_| WhisperRecognizer::new(&engine, &opts), sink)
    }

    /// Queues a job; never blocks on recognition.
    pub fn submit(&self, stream_key: u64, job: Job) {
        let now = Instant::now();
        let kind = job.kind;
        let mut st = self.shared.lock();
        let answered = st.queue.push(stream_key, job, now);
        if kind != JobKind::Partial && answered.is_none() {
            // A final (or its speculation) is waiting: partials give their cores up.
            for r in &st.running {
                r.stop_partial(None);
            }
        }
        drop(st);
        match answered {
            Some(a) => self.sink.send(outcome(&a.final_job, &a.result)),
            None => self.shared.wake.notify_one(),
        }
    }

    /// A stream's speaker has paused: its queued partial is dropped and its running one
    /// stopped, so the final's (speculative) decode that is likely to follow finds a
    /// free core.
    pub fn hush(&self, stream_key: u64) {
        let mut st = self.shared.lock();
        st.queue.shed_partial_of(stream_key);
        for r in &st.running {
            r.stop_partial(Some(stream_key));
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().queue.stats()
    }

    /// Decodes the finals still queued (partials are shed), then stops the threads.
    pub fn shutdown(mut self) -> Stats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.queue.shed_partials();
        }
        self.shared.wake.notify_all();
        for h in self.workers.drain(..) {
            if h.join().is_err() {
                tracing::error!("an ASR worker thread panicked");
            }
        }
    }
}

impl Drop for Pool {
    /// Dropping a pool is a shutdown: queued finals are still decoded.
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker<R: Recognizer>(shared: Arc<Shared>, index: usize, mut rec: R, sink: Sink) {
    loop {
        let next = {
            let mut st = shared.lock();
            loop {
                // No decode starts without a core for it.
                if st.free_cores > 0 {
                    // A partial starts only on an idle pool: one running would hold a
                    // core that the next final needs, and under load partials are the
                    // first thing to go.
                    let idle = st.free_cores == st.cores;
                    let busy: Vec<u64> = st
                        .running
                        .iter()
                        .filter_map(|r| match r.job {
                            Some((JobKind::Final | JobKind::Speculative, key)) => Some(key),
                            _ => None,
                        })
                        .collect();
                    let others_decoding = !busy.is_empty();
                    let job = if st.closing {
                        st.queue.pop_final(&busy)
                    } else {
                        st.queue.pop_with(Instant::now(), idle, &busy)
                    };
                    if let Some(q) = job {
                        // Alone: all free cores (lowest latency); with work waiting: one
                        // (most throughput). A partial runs only on an idle pool and
                        // takes every core too: a final that comes meanwhile waits for
                        // a short decode rather than running beside it on one core.
                        let alone = if q.job.kind == JobKind::Partial {
                            st.queue.is_empty()
                        } else {
                            // A partial still queued (say, of this very utterance)
                            // never starts before this ends, and neither does a later
                            // final of a busy stream (this one included), so neither
                            // is a reason to leave a core idle.
                            let mut busy = busy;
                            busy.push(q.stream_key);
                            st.queue.finals_startable(&busy) == 0
                        };
                        let threads = if alone {
                            st.free_cores.min(st.max_threads)
                        } else {
                            1
                        };
                        st.free_cores -= threads;
                        // Another final decoding counts too: our fallback encodes a
                        // hard utterance again and samples five ways, which a loaded
                        // pool cannot afford (16 spread calls: decode p50 934 ms and
                        // final p95 2.25 s with it, against 827 ms / 1.95 s before it).
                        let backlog = st.queue.stats().queued_finals > 0 || others_decoding;
                        if let Some(slot) = st.running.get_mut(index) {
                            // Cleared under the lock that `submit` sets it under, so a
                            // flag meant for the last partial cannot stop this job.
                            if let Some(flag) = &slot.abort {
                                flag.store(false, std::sync::atomic::Ordering::Relaxed);
                            }
                            slot.job = Some((q.job.kind, q.stream_key));
                        }
                        break Some((q, threads, backlog));
                    }
                    if st.closing {
                        break None;
                    }
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some((q, threads, backlog)) = next else {
            // Another worker may be waiting for a core this one never took.
            shared.wake.notify_all();
            return;
        };
        let started_at = Instant::now();
        // A panic inside the recogniser (a bug in native code's wrapper) costs this job,
        // not the worker: the pool would otherwise lose capacity silently.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rec.recognize(&q.job.audio, q.job.kind, threads as u32, backlog)
        }));
        let finished_at = Instant::now();
        let aborted = {
            let mut st = shared.lock();
            st.free_cores += threads;
            match st.running.get_mut(index) {
                Some(slot) => {
                    // A final's stream stays busy until its outcome is sent (below),
                    // so that the stream's next final cannot overtake it.
                    if q.job.kind == JobKind::Partial {
                        slot.job = None;
                    }
                    slot.abort
                        .as_ref()
                        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
                }
                None => false,
            }
        };
        shared.wake.notify_all();
        if aborted && q.job.kind == JobKind::Partial {
            shared.lock().queue.abandon_partial();
            continue;
        }
        let (text, error) = match result {
            Ok(Ok(pieces)) => (join_pieces(&pieces), None),
            Ok(Err(e)) => (String::new(), Some(e.to_string())),
            Err(_) => (String::new(), Some("recogniser panicked".to_string())),
        };
        let decoded = Decoded {
            text,
            started_at,
            finished_at,
            error,
        };
        if q.job.kind == JobKind::Speculative {
            let answered = shared
                .lock()
                .queue
                .complete_speculative(q.stream_key, &q.job, decoded);
            if let Some(a) = answered {
                sink.send(outcome(&a.final_job, &a.result));
            }
        } else {
            shared.lock().queue.complete();
            sink.send(outcome(&q, &decoded));
        }
        // A partial's slot was cleared with its cores; a final's stream is free now.
        if q.job.kind != JobKind::Partial {
            if let Some(slot) = shared.lock().running.get_mut(index) {
                slot.job = None;
            }
            shared.wake.notify_all();
        }
    }
}

/// The outcome of job `q` with `result` (a final answered by its speculative decode
/// keeps its own queue time: its latency runs from when the final was decided).
fn outcome(q: &Queued, result: &Decoded) -> Outcome {
    let job = &q.job;
    Outcome {
        stream_key: q.stream_key,
        kind: job.kind,
        utterance: job.utterance,
        revision: job.revision,
        start_ms: job.start_ms,
        end_ms: job.end_ms,
        audio_ms: job.audio.len() as u64 * 1000 / crate::WHISPER_RATE as u64,
        text: result.text.clone(),
        queued_at: q.queued_at,
        started_at: result.started_at,
        finished_at: result.finished_at,
        error: result.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn job(kind: JobKind, utterance: u64, revision: u32, samples: usize) -> Job {
        Job {
            kind,
            utterance,
            revision,
            start_ms: utterance * 10_000,
            end_ms: utterance * 10_000 + 1000,
            audio: vec![0.0; samples].into(),
        }
    }

    fn partial(utterance: u64, revision: u32) -> Job {
        job(JobKind::Partial, utterance, revision, 160)
    }

    fn final_(utterance: u64) -> Job {
        job(JobKind::Final, utterance, 0, 160)
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn key(q: &Queued) -> (u64, JobKind, u64, u32) {
        (q.stream_key, q.job.kind, q.job.utterance, q.job.revision)
    }

    fn spec(utterance: u64, samples: usize) -> Job {
        job(JobKind::Speculative, utterance, 0, samples)
    }

    fn decoded(t0: Instant, text: &str) -> Decoded {
        Decoded {
            text: text.into(),
            started_at: ms(t0, 5),
            finished_at: ms(t0, 400),
            error: None,
        }
    }

    #[test]
    fn a_finished_speculative_decode_answers_its_final_at_once() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        assert!(q.push(1, spec(3, 160), ms(t0, 0)).is_none());
        let running = q.pop(ms(t0, 1)).unwrap();
        assert_eq!(running.job.kind, JobKind::Speculative);
        assert!(q
            .complete_speculative(1, &running.job, decoded(t0, "你好"))
            .is_none());
        let a = q
            .push(1, job(JobKind::Final, 3, 2, 160), ms(t0, 600))
            .expect("answered from the speculative decode");
        assert_eq!(a.result.text, "你好");
        assert_eq!(a.final_job.job.kind, JobKind::Final);
        assert_eq!(a.final_job.job.revision, 2);
        assert_eq!(a.final_job.queued_at, ms(t0, 600));
        assert!(q.is_empty());
        assert_eq!(q.stats().speculative_hits, 1);
    }

    #[test]
    fn a_final_waits_for_its_running_speculative_decode() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, spec(0, 160), ms(t0, 0));
        let running = q.pop(ms(t0, 1)).unwrap();
        assert!(q.push(1, final_(0), ms(t0, 300)).is_none());
        assert!(
            q.pop(ms(t0, 301)).is_none(),
            "the final is not decoded twice"
        );
        let a = q
            .complete_speculative(1, &running.job, decoded(t0, "谢谢"))
            .expect("the waiting final");
        assert_eq!(
            (a.final_job.job.kind, a.result.text.as_str()),
            (JobKind::Final, "谢谢")
        );
        assert_eq!(q.stats().speculative_hits, 1);
    }

    #[test]
    fn a_final_with_other_audio_is_decoded_and_the_speculation_discarded() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, spec(0, 160), ms(t0, 0));
        let running = q.pop(ms(t0, 1)).unwrap();
        // The speaker went on: a partial, then a final over more audio.
        q.push(1, partial(0, 1), ms(t0, 100));
        q.push(1, job(JobKind::Final, 0, 2, 320), ms(t0, 900));
        assert!(q
            .complete_speculative(1, &running.job, decoded(t0, "半句"))
            .is_none());
        let next = q.pop(ms(t0, 901)).unwrap();
        assert_eq!((next.job.kind, next.job.audio.len()), (JobKind::Final, 320));
        let s = q.stats();
        assert_eq!(
            (s.speculative_hits, s.speculative_shed, s.speculative_wasted),
            (0, 0, 1)
        );
    }

    #[test]
    fn a_decoded_speculation_outlives_the_speaker_going_on() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, spec(0, 160), ms(t0, 0));
        let running = q.pop(ms(t0, 1)).unwrap();
        // The speaker went on; later the utterance is split at that very cut.
        q.push(1, partial(0, 1), ms(t0, 100));
        assert!(q
            .complete_speculative(1, &running.job, decoded(t0, "前半句"))
            .is_none());
        let a = q
            .push(1, job(JobKind::Final, 0, 2, 160), ms(t0, 5000))
            .expect("answered from the speculative decode");
        assert_eq!(a.result.text, "前半句");
        assert_eq!(q.stats().speculative_hits, 1);
        // One that had not started is shed when the speaker goes on: its final decodes.
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, spec(0, 160), ms(t0, 0));
        q.push(1, partial(0, 1), ms(t0, 100));
        assert!(q.push(1, final_(0), ms(t0, 5000)).is_none());
        let order: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 5001)))
            .map(|q| key(&q))
            .collect();
        assert_eq!(order, vec![(1, JobKind::Final, 0, 0)]);
        assert_eq!(q.stats().speculative_shed, 1);
    }

    #[test]
    fn a_speculation_not_yet_started_gives_way_to_its_final() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, final_(7), ms(t0, 0));
        q.push(2, spec(0, 160), ms(t0, 1));
        q.push(2, final_(0), ms(t0, 2));
        let order: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 10)))
            .map(|q| key(&q))
            .collect();
        assert_eq!(
            order,
            vec![(1, JobKind::Final, 7, 0), (2, JobKind::Final, 0, 0)]
        );
    }

    #[test]
    fn a_settled_speculation_survives_the_next_utterance() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, spec(0, 160), ms(t0, 0));
        let running = q.pop(ms(t0, 1)).unwrap();
        assert!(q.push(1, final_(0), ms(t0, 300)).is_none());
        // The caller talks on: the next utterance's partial and speculation.
        q.push(1, partial(1, 0), ms(t0, 1300));
        q.push(1, spec(1, 160), ms(t0, 2000));
        let a = q
            .complete_speculative(1, &running.job, decoded(t0, "一"))
            .expect("utterance 0's final");
        assert_eq!(a.final_job.job.utterance, 0);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 2001)))
            .map(|q| key(&q))
            .collect();
        assert_eq!(
            rest,
            vec![(1, JobKind::Speculative, 1, 0), (1, JobKind::Partial, 1, 0)]
        );
        // Every job accepted ends exactly one way.
        let s = q.stats();
        assert_eq!(
            s.queued,
            s.done
                + 2
                + s.partials_shed
                + s.finals_dropped
                + s.speculative_hits
                + s.speculative_shed,
            "{s:?}"
        );
    }

    #[test]
    fn speculative_decodes_run_after_finals_and_before_partials() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, partial(0, 0), ms(t0, 0));
        q.push(2, spec(0, 160), ms(t0, 1));
        q.push(3, final_(0), ms(t0, 2));
        let order: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 10)))
            .map(|q| key(&q).1)
            .collect();
        assert_eq!(
            order,
            vec![JobKind::Final, JobKind::Speculative, JobKind::Partial]
        );
    }

    #[test]
    fn a_busy_streams_finals_and_speculations_wait_their_turn() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, job(JobKind::Final, 2, 0, 160), ms(t0, 0));
        q.push(2, job(JobKind::Final, 6, 0, 160), ms(t0, 1));
        q.push(1, spec(3, 160), ms(t0, 2));
        q.push(2, spec(7, 160), ms(t0, 3));
        let order: Vec<_> = std::iter::from_fn(|| q.pop_with(ms(t0, 10), true, &[1]))
            .map(|q| key(&q))
            .collect();
        assert_eq!(
            order,
            vec![(2, JobKind::Final, 6, 0), (2, JobKind::Speculative, 7, 0)]
        );
        assert_eq!(key(&q.pop_with(ms(t0, 10), true, &[2]).unwrap()).2, 2);
        assert_eq!(
            key(&q
                .pop_final(&[])
                .unwrap_or_else(|| q.pop(ms(t0, 10)).unwrap()))
            .2,
            3
        );
        assert!(q.is_empty());
    }

    #[test]
    fn finals_first_then_partials_oldest_first() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, partial(0, 0), ms(t0, 0));
        q.push(2, partial(0, 0), ms(t0, 10));
        q.push(3, final_(4), ms(t0, 20));
        q.push(4, final_(5), ms(t0, 30));
        q.push(5, partial(1, 0), ms(t0, 40));
        let order: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 100)))
            .map(|q| key(&q))
            .collect();
        assert_eq!(
            order,
            vec![
                (3, JobKind::Final, 4, 0),
                (4, JobKind::Final, 5, 0),
                (1, JobKind::Partial, 0, 0),
                (2, JobKind::Partial, 0, 0),
                (5, JobKind::Partial, 1, 0),
            ]
        );
        let s = q.stats();
        assert_eq!((s.queued, s.started, s.partials_shed), (5, 5, 0));
        assert_eq!((s.queued_finals, s.queued_partials), (0, 0));
    }

    #[test]
    fn a_newer_partial_replaces_the_queued_one_of_its_stream() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, partial(0, 0), ms(t0, 0));
        q.push(2, partial(0, 0), ms(t0, 5));
        q.push(1, partial(0, 1), ms(t0, 10));
        q.push(1, partial(0, 2), ms(t0, 20));
        let s = q.stats();
        assert_eq!((s.queued_partials, s.partials_shed), (2, 2));
        // The replacement took its own arrival time: stream 2 is now the oldest.
        let order: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 30)))
            .map(|q| key(&q))
            .collect();
        assert_eq!(
            order,
            vec![(2, JobKind::Partial, 0, 0), (1, JobKind::Partial, 0, 2)]
        );
    }

    #[test]
    fn a_final_supersedes_its_utterance_partial() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, partial(3, 2), ms(t0, 0));
        q.push(2, partial(0, 0), ms(t0, 0));
        q.push(1, final_(3), ms(t0, 10));
        assert_eq!(q.stats().partials_shed, 1);
        let order: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 20)))
            .map(|q| key(&q))
            .collect();
        assert_eq!(
            order,
            vec![(1, JobKind::Final, 3, 0), (2, JobKind::Partial, 0, 0)]
        );
    }

    #[test]
    fn old_partials_are_shed_at_pop_time() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig::default());
        q.push(1, partial(0, 0), ms(t0, 0));
        q.push(2, partial(0, 0), ms(t0, 1500));
        q.push(3, final_(0), ms(t0, 1600));
        // Two seconds exactly is still fresh; a millisecond more is not.
        assert_eq!(key(&q.pop(ms(t0, 2001)).unwrap()).0, 3);
        assert_eq!(key(&q.pop(ms(t0, 2001)).unwrap()).0, 2);
        assert_eq!(q.stats().partials_shed, 1);
        q.push(4, partial(0, 0), ms(t0, 3000));
        assert!(q.pop(ms(t0, 5001)).is_none());
        let s = q.stats();
        assert_eq!((s.partials_shed, s.started, s.queued_partials), (2, 2, 0));
        // Finals do not age.
        q.push(5, final_(0), ms(t0, 0));
        assert_eq!(key(&q.pop(ms(t0, 3_600_000)).unwrap()).0, 5);
    }

    #[test]
    fn partial_capacity_sheds_the_oldest() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig {
            partial_capacity: 3,
            ..Default::default()
        });
        for s in 0..5 {
            q.push(s, partial(0, 0), ms(t0, s));
        }
        let s = q.stats();
        assert_eq!((s.queued_partials, s.partials_shed), (3, 2));
        let left: Vec<u64> = std::iter::from_fn(|| q.pop(ms(t0, 10)))
            .map(|q| q.stream_key)
            .collect();
        assert_eq!(left, vec![2, 3, 4]);
    }

    #[test]
    fn finals_are_never_shed_by_policy() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig {
            partial_capacity: 8,
            ..Default::default()
        });
        for i in 0..1000u64 {
            q.push(i % 40, partial(i, 0), ms(t0, i));
            if i % 20 == 0 {
                q.push(1000 + i, final_(i), ms(t0, i));
            }
        }
        let s = q.stats();
        assert_eq!((s.queued_finals, s.finals_dropped), (50, 0));
        // An hour later every final is still there, oldest first.
        let finals: Vec<u64> = std::iter::from_fn(|| q.pop(ms(t0, 3_600_000)))
            .map(|q| q.stream_key)
            .collect();
        assert_eq!(finals, (0..50).map(|i| 1000 + 20 * i).collect::<Vec<_>>());
    }

    #[test]
    fn memory_guard_drops_the_oldest_final_and_counts_it() {
        let t0 = Instant::now();
        let mut q = JobQueue::new(QueueConfig {
            max_final_samples: 1000,
            ..Default::default()
        });
        for i in 0..4 {
            q.push(i, job(JobKind::Final, i, 0, 300), ms(t0, i));
        }
        let s = q.stats();
        assert_eq!(
            (s.queued_finals, s.finals_dropped, s.queued_final_samples),
            (3, 1, 900)
        );
        let left: Vec<u64> = std::iter::from_fn(|| q.pop(ms(t0, 10)))
            .map(|q| q.stream_key)
            .collect();
        assert_eq!(left, vec![1, 2, 3]);
        assert_eq!(q.stats().queued_final_samples, 0);
        // A single final larger than the guard is still kept: the guard bounds a
        // backlog, and one utterance is bounded by the endpointer.
        q.push(9, job(JobKind::Final, 0, 0, 5000), ms(t0, 20));
        assert_eq!(q.stats().finals_dropped, 1);
        assert_eq!(q.pop(ms(t0, 20)).map(|q| q.stream_key), Some(9));
    }

    #[test]
    fn join_spaces_english_and_not_mandarin() {
        let p = |t: &str| Piece {
            start_ms: 0,
            end_ms: 0,
            text: t.into(),
            no_speech_prob: 0.0,
            avg_logprob: 0.0,
        };
        assert_eq!(
            join_pieces(&[p(" And so,"), p("my fellow Americans "), p("")]),
            "And so, my fellow Americans"
        );
        assert_eq!(
            join_pieces(&[p("您好,"), p("请讲。"), p("好的")]),
            "您好,请讲。好的"
        );
        assert_eq!(
            join_pieces(&[p("我要办ETC"), p("ETC卡")]),
            "我要办ETC ETC卡"
        );
        assert_eq!(join_pieces(&[]), "");
    }

    /// Records the jobs it is given, taking a fixed time for each; the first job can be
    /// held until the test lets it go, so a backlog builds deterministically.
    struct Fake {
        log: Arc<Mutex<Vec<(u64, JobKind, u32)>>>,
        delay: Duration,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Recognizer for Fake {
        fn recognize(
            &mut self,
            audio: &[f32],
            kind: JobKind,
            _threads: u32,
            _backlog: bool,
        ) -> Result<Vec<Piece>, EngineError> {
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
            std::thread::sleep(self.delay);
            // The audio carries its utterance number so the log can show the order.
            let tag = audio.first().copied().unwrap_or(0.0) as u64;
            self.log
                .lock()
                .unwrap()
                .push((tag, kind, audio.len() as u32));
            if audio.len() == 7 {
                return Err(EngineError::Decode("bad audio".into()));
            }
            Ok(vec![Piece {
                start_ms: 0,
                end_ms: 0,
                text: format!("u{tag}"),
                no_speech_prob: 0.0,
                avg_logprob: 0.0,
            }])
        }
    }

    fn tagged(kind: JobKind, utterance: u64, revision: u32) -> Job {
        Job {
            audio: vec![utterance as f32; 16].into(),
            ..job(kind, utterance, revision, 0)
        }
    }

    type Log = Arc<Mutex<Vec<(u64, JobKind, u32)>>>;

    fn fake_pool(
        workers: usize,
        delay: Duration,
        gated: bool,
    ) -> (Pool, Log, mpsc::Receiver<Outcome>, Option<mpsc::Sender<()>>) {
        let log: Log = Arc::default();
        let (tx, rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel();
        let mut gate_rx = gated.then_some(gate_rx);
        let l = Arc::clone(&log);
        let pool = Pool::new(
            PoolConfig {
                workers,
                cores: workers,
                max_threads: 1,
                queue: QueueConfig::default(),
            },
            move |_| {
                Ok(Fake {
                    log: Arc::clone(&l),
                    delay,
                    gate: gate_rx.take(),
                })
            },
            tx,
        )
        .unwrap();
        (pool, log, rx, gated.then_some(gate_tx))
    }

    fn wait_until(mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn pool_runs_finals_before_partials() {
        let (pool, log, rx, gate) = fake_pool(1, Duration::ZERO, true);
        // The worker takes this one and waits at the gate.
        pool.submit(9, tagged(JobKind::Partial, 100, 0));
        wait_until(|| pool.stats().started == 1);
        pool.submit(1, tagged(JobKind::Partial, 1, 0));
        pool.submit(2, tagged(JobKind::Partial, 2, 0));
        pool.submit(1, tagged(JobKind::Partial, 3, 1));
        pool.submit(3, tagged(JobKind::Final, 4, 0));
        pool.submit(4, tagged(JobKind::Final, 5, 0));
        if let Some(g) = gate {
            g.send(()).unwrap();
        }
        wait_until(|| pool.stats().done == 5);
        let order: Vec<(u64, JobKind)> = log.lock().unwrap().iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(
            order,
            vec![
                (100, JobKind::Partial),
                (4, JobKind::Final),
                (5, JobKind::Final),
                (2, JobKind::Partial),
                (3, JobKind::Partial),
            ]
        );
        let s = pool.shutdown();
        assert_eq!((s.queued, s.started, s.done, s.partials_shed), (6, 5, 5, 1));
        let outs: Vec<Outcome> = rx.try_iter().collect();
        assert_eq!(outs.len(), 5);
        let f = outs.iter().find(|o| o.utterance == 4).unwrap();
        assert_eq!(
            (f.stream_key, f.kind, f.text.as_str()),
            (3, JobKind::Final, "u4")
        );
        assert!(f.queued_at <= f.started_at && f.started_at <= f.finished_at);
        assert!(f.error.is_none());
    }

    #[test]
    fn a_streams_finals_never_decode_side_by_side() {
        let (pool, _log, rx, gate) = fake_pool(2, Duration::from_millis(20), true);
        // One worker takes stream 1's first final and waits at the gate.
        pool.submit(1, tagged(JobKind::Final, 1, 0));
        wait_until(|| pool.stats().started == 1);
        pool.submit(1, tagged(JobKind::Final, 2, 0));
        pool.submit(2, tagged(JobKind::Final, 3, 0));
        // The other worker passes over stream 1's second final for stream 2's.
        wait_until(|| pool.stats().done == 1);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            pool.stats().started,
            2,
            "stream 1's second final started early"
        );
        if let Some(g) = gate {
            g.send(()).unwrap();
        }
        wait_until(|| pool.stats().done == 3);
        pool.shutdown();
        let outs: Vec<Outcome> = rx.try_iter().collect();
        let order: Vec<u64> = outs.iter().map(|o| o.utterance).collect();
        assert_eq!(order, vec![3, 1, 2]);
        assert!(outs[2].started_at >= outs[1].finished_at);
    }

    #[test]
    fn a_final_takes_every_free_core_past_what_cannot_start() {
        /// Records the threads each job was given; the first job waits at the gate.
        struct Threads {
            log: Arc<Mutex<Vec<(JobKind, u32)>>>,
            gate: Option<mpsc::Receiver<()>>,
        }
        impl Recognizer for Threads {
            fn recognize(
                &mut self,
                _audio: &[f32],
                kind: JobKind,
                threads: u32,
                _backlog: bool,
            ) -> Result<Vec<Piece>, EngineError> {
                if let Some(g) = self.gate.take() {
                    let _ = g.recv();
                }
                self.log.lock().unwrap().push((kind, threads));
                Ok(Vec::new())
            }
        }
        let log: Arc<Mutex<Vec<(JobKind, u32)>>> = Arc::default();
        let (gate_tx, gate_rx) = mpsc::channel();
        let mut gate_rx = Some(gate_rx);
        let (tx, _rx) = mpsc::channel();
        let l = Arc::clone(&log);
        let pool = Pool::new(
            PoolConfig {
                workers: 1,
                cores: 2,
                max_threads: 2,
                queue: QueueConfig::default(),
            },
            move |_| {
                Ok(Threads {
                    log: Arc::clone(&l),
                    gate: gate_rx.take(),
                })
            },
            tx,
        )
        .unwrap();
        pool.submit(9, tagged(JobKind::Final, 100, 0));
        wait_until(|| pool.stats().started == 1);
        // While it runs: a partial of one stream, then a final of another, then two
        // finals of a third.
        pool.submit(1, tagged(JobKind::Partial, 1, 0));
        pool.submit(2, tagged(JobKind::Final, 2, 0));
        pool.submit(3, tagged(JobKind::Final, 3, 0));
        pool.submit(3, tagged(JobKind::Final, 4, 0));
        gate_tx.send(()).unwrap();
        wait_until(|| pool.stats().done == 5);
        // Alone: both cores. With a final behind it: one. Stream 3's first final has
        // only its own next final behind it, which cannot start before it ends, and its
        // last only a partial: both cores again.
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                (JobKind::Final, 2),
                (JobKind::Final, 1),
                (JobKind::Final, 2),
                (JobKind::Final, 2),
                (JobKind::Partial, 2),
            ]
        );
        pool.shutdown();
    }

    #[test]
    fn hush_stops_the_paused_streams_partials_only() {
        /// Holds its first job at the gate; can be stopped through its abort flag.
        struct Stoppable {
            gate: Option<mpsc::Receiver<()>>,
            abort: Arc<std::sync::atomic::AtomicBool>,
        }
        impl Recognizer for Stoppable {
            fn recognize(
                &mut self,
                audio: &[f32],
                _kind: JobKind,
                _threads: u32,
                _backlog: bool,
            ) -> Result<Vec<Piece>, EngineError> {
                if let Some(g) = self.gate.take() {
                    let _ = g.recv();
                }
                Ok(vec![Piece {
                    start_ms: 0,
                    end_ms: 0,
                    text: format!("u{}", audio.first().copied().unwrap_or(0.0) as u64),
                    no_speech_prob: 0.0,
                    avg_logprob: 0.0,
                }])
            }
            fn abort_handle(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
                Some(Arc::clone(&self.abort))
            }
        }
        let (gate_tx, gate_rx) = mpsc::channel();
        let mut gate_rx = Some(gate_rx);
        let (tx, rx) = mpsc::channel();
        let pool = Pool::new(
            PoolConfig {
                workers: 1,
                cores: 1,
                max_threads: 1,
                queue: QueueConfig::default(),
            },
            move |_| {
                Ok(Stoppable {
                    gate: gate_rx.take(),
                    abort: Arc::default(),
                })
            },
            tx,
        )
        .unwrap();
        // Stream 1's partial runs; stream 2's and stream 3's wait.
        pool.submit(1, tagged(JobKind::Partial, 1, 0));
        wait_until(|| pool.stats().started == 1);
        pool.submit(2, tagged(JobKind::Partial, 2, 0));
        pool.submit(3, tagged(JobKind::Partial, 3, 0));
        // Stream 2 pauses: its queued partial goes; stream 1's keeps running.
        pool.hush(2);
        assert_eq!(pool.stats().partials_shed, 1);
        assert_eq!(pool.stats().queued_partials, 1);
        // Stream 1 pauses: its running partial is stopped and never reported.
        pool.hush(1);
        gate_tx.send(()).unwrap();
        let out = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((out.stream_key, out.text.as_str()), (3, "u3"));
        let s = pool.shutdown();
        assert_eq!((s.started, s.done, s.partials_shed), (2, 1, 2));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn errors_are_reported_as_outcomes() {
        let (pool, _log, rx, _) = fake_pool(1, Duration::ZERO, false);
        pool.submit(1, job(JobKind::Final, 0, 0, 7));
        let o = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(o.text.is_empty());
        assert!(o.error.unwrap().contains("bad audio"));
        pool.shutdown();
    }

    #[test]
    fn flood_of_partials_never_costs_a_final() {
        let (pool, log, rx, _) = fake_pool(2, Duration::from_millis(2), false);
        for i in 0..1000u64 {
            pool.submit(i % 50, tagged(JobKind::Partial, i, 0));
            if i % 20 == 0 {
                pool.submit(i % 50, tagged(JobKind::Final, i, 0));
            }
        }
        let s = pool.shutdown();
        let finals: Vec<u64> = rx
            .try_iter()
            .filter(|o| o.kind == JobKind::Final)
            .map(|o| o.utterance)
            .collect();
        assert_eq!(finals.len(), 50, "{s:?}");
        assert_eq!(s.finals_dropped, 0);
        // Partials were shed: the engine is far slower than the flood.
        assert!(s.partials_shed > 500, "{s:?}");
        assert_eq!(s.queued, 1050);
        assert_eq!(s.started, s.done);
        assert_eq!(s.done + s.partials_shed, 1050, "{s:?}");
        let decoded = log.lock().unwrap().len() as u64;
        assert_eq!(decoded, s.done);
    }

    #[test]
    fn shutdown_drains_finals_not_partials() {
        let (pool, log, rx, gate) = fake_pool(1, Duration::from_millis(1), true);
        pool.submit(1, tagged(JobKind::Partial, 100, 0));
        wait_until(|| pool.stats().started == 1);
        for i in 0..10 {
            pool.submit(i, tagged(JobKind::Final, i, 0));
            pool.submit(100 + i, tagged(JobKind::Partial, 200 + i, 0));
        }
        // Let the held job go only once shutdown has begun.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            if let Some(g) = gate {
                let _ = g.send(());
            }
        });
        let s = pool.shutdown();
        releaser.join().unwrap();
        assert_eq!(s.partials_shed, 10, "{s:?}");
        assert_eq!(s.done, 11, "{s:?}");
        let finals: Vec<u64> = rx
            .try_iter()
            .filter(|o| o.kind == JobKind::Final)
            .map(|o| o.utterance)
            .collect();
        assert_eq!(finals, (0..10).collect::<Vec<_>>());
        assert!(log.lock().unwrap().iter().all(|e| e.0 < 200));
    }

    #[test]
    fn callback_sink_and_drop_is_a_shutdown() {
        let got: Arc<Mutex<Vec<u64>>> = Arc::default();
        let g = Arc::clone(&got);
        let sink = Sink::Callback(Arc::new(move |o: Outcome| {
            g.lock().unwrap().push(o.utterance)
        }));
        let pool = Pool::new(
            PoolConfig {
                workers: 2,
                cores: 2,
                max_threads: 1,
                queue: QueueConfig::default(),
            },
            |_| {
                Ok(Fake {
                    log: Arc::default(),
                    delay: Duration::from_millis(1),
                    gate: None,
                })
            },
            sink,
        )
        .unwrap();
        for i in 0..20 {
            pool.submit(i, tagged(JobKind::Final, i, 0));
        }
        drop(pool);
        let mut v = got.lock().unwrap().clone();
        v.sort();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }
}
