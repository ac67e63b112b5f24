//! Call recording: one stereo 8 kHz 16-bit WAV per call, caller on the left channel,
//! gateway/agent on the right, written with hound.
//!
//! # Alignment
//!
//! Audio is pushed with its position on the call's timeline ([`Recorder::push`]'s
//! `at_sample`: samples since the call was answered, 8000 per second), so each channel
//! lands where it happened whatever order and chunking it arrives in: gaps (lost packets,
//! hold, a player with silence suppressed) become silence, and the two channels stay
//! aligned. Frames are written once both channels have reached them. A channel that runs
//! ahead of the other is buffered up to [`RecorderConfig::max_lead`] (1 s by default);
//! beyond that the oldest buffered frames are written with silence on the lagging
//! channel, and audio that later arrives for a position already written is dropped and
//! counted ([`RecorderStats::late_dropped`]). Audio for a position the same channel
//! already has is dropped too ([`RecorderStats::overlap_dropped`]). The first write wins.
//!
//! # Crash safety
//!
//! [`Recorder::flush_if_due`] (called by the writer thread every quarter second) updates
//! the RIFF and data sizes in the header and hands the data to the kernel at least once
//! per [`RecorderConfig::flush_interval`] (1 s). After `kill -9` the file is therefore a
//! valid WAV up to the last flush (its header says so), and the bytes written after it
//! are on disk too (hound's 8 KiB buffer holds at most a quarter second); [`repair`] at
//! start-up extends the header over them. What is lost: up to `max_lead` of one-sided
//! audio waiting for the other channel, and hound's buffer. There is no fsync per second
//! (the page cache survives a process crash; [`RecorderConfig::sync_on_finish`] syncs
//! each finished file; [`repair`] also fixes a file cut short by a power loss).
//!
//! # Threads
//!
//! [`Recorder`] does blocking file I/O. Calls use it through a [`RecorderPool`]: one
//! writer thread per process owning every open recording. A call's [`RecordingHandle`]
//! never blocks: it batches audio (100 ms) and sends it down an unbounded channel whose
//! payload is bounded by a shared sample budget; past the budget (a disk that stalls),
//! audio is dropped and counted, and since every batch carries its own position the
//! recording simply has silence there. Open and finish always get through.
//!
//! WAV keeps sizes in 32 bits: one recording holds at most 2^30 frames (37 h); beyond
//! that audio is counted in [`RecorderStats::truncated`] and not written.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::SAMPLE_RATE;

/// Recordings live under `<data_dir>/recordings/`.
pub const RECORDINGS_DIR: &str = "recordings";

/// Most frames a recording holds: hound's data size is a u32 of bytes, 4 bytes a frame,
/// and the RIFF size (data + 36) must fit too.
const MAX_FRAMES: u64 = (u32::MAX as u64 - 36) / 4;
/// Largest piece processed at once (bounds transient buffering).
const CHUNK: usize = 8000;

/// Which side of the call: the caller is left, the gateway (prompts) or agent is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Left,
    Right,
}

impl Channel {
    pub const CALLER: Channel = Channel::Left;
    pub const GATEWAY: Channel = Channel::Right;

    fn idx(self) -> usize {
        match self {
            Channel::Left => 0,
            Channel::Right => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderConfig {
    /// How far one channel may run ahead of the other before the lagging one is
    /// written as silence.
    pub max_lead: Duration,
    /// Longest time between header updates of an open recording.
    pub flush_interval: Duration,
    /// fsync each recording when it is finished.
    pub sync_on_finish: bool,
    /// [`RecordingHandle`] sends audio in batches of this much per channel.
    pub batch: Duration,
    /// Audio queued for the writer thread beyond this many seconds (all calls together)
    /// is dropped.
    pub max_queued: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            max_lead: Duration::from_secs(1),
            flush_interval: Duration::from_secs(1),
            sync_on_finish: true,
            batch: Duration::from_millis(100),
            // 500 calls × 2 channels × 4 s.
            max_queued: Duration::from_secs(4000),
        }
    }
}

fn samples(d: Duration) -> usize {
    (d.as_nanos() * SAMPLE_RATE as u128 / 1_000_000_000) as usize
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: cannot {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: recording stopped after an earlier error: {reason}")]
    Failed { path: PathBuf, reason: String },
    #[error("{path}: the recording writer thread has stopped")]
    WriterGone { path: PathBuf },
}

impl RecordError {
    fn wav(path: &Path, e: hound::Error) -> Self {
        match e {
            hound::Error::IoError(source) => RecordError::Io {
                path: path.to_path_buf(),
                op: "write",
                source,
            },
            source => RecordError::Wav {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Per-recording counters, in samples of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Stereo frames in the file.
    pub frames: u64,
    /// Silence written for a channel that had no audio there (gaps, a lagging channel,
    /// the shorter channel's end).
    pub silence_padded: u64,
    /// Audio that arrived after its position had been written.
    pub late_dropped: u64,
    /// Audio for positions the channel already had.
    pub overlap_dropped: u64,
    /// Audio beyond the WAV size limit.
    pub truncated: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    pub path: PathBuf,
    pub stats: RecorderStats,
}

impl RecordingSummary {
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.stats.frames * 1_000_000_000 / SAMPLE_RATE as u64)
    }
}

/// One recording being written. Blocking I/O: see the module doc for the thread design.
/// Dropping it without [`Recorder::finish`] keeps what was written (the header is
/// updated) but loses audio still buffered for alignment.
pub struct Recorder {
    path: PathBuf,
    writer: hound::WavWriter<BufWriter<File>>,
    file: File,
    /// Frames handed to the writer (the file position of both channels).
    written: u64,
    /// Audio not yet written, per channel; `pending[c][0]` is at position `written`.
    pending: [VecDeque<i16>; 2],
    max_lead: usize,
    flush_interval: Duration,
    sync_on_finish: bool,
    last_flush: Instant,
    dirty: bool,
    stats: RecorderStats,
}

pub fn wav_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

impl Recorder {
    /// Creates the file (and its directories); fails if it exists. The header is on disk
    /// when this returns.
    pub fn create(path: &Path, cfg: &RecorderConfig) -> Result<Recorder, RecordError> {
        let io_err = |op, source| RecordError::Io {
            path: path.to_path_buf(),
            op,
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("create its directory", e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_err("create", e))?;
        let sync_handle = file.try_clone().map_err(|e| io_err("open", e))?;
        let mut writer = hound::WavWriter::new(BufWriter::new(file), wav_spec())
            .map_err(|e| RecordError::wav(path, e))?;
        writer.flush().map_err(|e| RecordError::wav(path, e))?;
        Ok(Recorder {
            path: path.to_path_buf(),
            writer,
            file: sync_handle,
            written: 0,
            pending: [VecDeque::new(), VecDeque::new()],
            max_lead: samples(cfg.max_lead),
            flush_interval: cfg.flush_interval,
            sync_on_finish: cfg.sync_on_finish,
            last_flush: Instant::now(),
            dirty: false,
            stats: RecorderStats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// Records `pcm` on `channel` starting at `at_sample` on the call timeline.
    pub fn push(
        &mut self,
        channel: Channel,
        at_sample: u64,
        pcm: &[i16],
    ) -> Result<(), RecordError> {
        let c = channel.idx();
        let mut at = at_sample;
        let mut pcm = pcm;
        if at < self.written {
            let skip = (self.written - at).min(pcm.len() as u64) as usize;
            self.stats.late_dropped += skip as u64;
            pcm = &pcm[skip..];
            at += skip as u64;
        }
        let end = self.written + self.pending[c].len() as u64;
        if at < end && !pcm.is_empty() {
            let skip = (end - at).min(pcm.len() as u64) as usize;
            self.stats.overlap_dropped += skip as u64;
            pcm = &pcm[skip..];
            at += skip as u64;
        }
        if pcm.is_empty() {
            return Ok(());
        }
        self.pad(c, at)?;
        for chunk in pcm.chunks(CHUNK) {
            self.pending[c].extend(chunk);
            self.balance()?;
        }
        Ok(())
    }

    /// Declares that neither channel has audio before `at_sample` still to come: both
    /// are written up to there, with silence where they have none.
    pub fn advance_to(&mut self, at_sample: u64) -> Result<(), RecordError> {
        self.pad(0, at_sample)?;
        self.pad(1, at_sample)?;
        self.balance()
    }

    /// Pads channel `c` with silence up to position `to`.
    fn pad(&mut self, c: usize, to: u64) -> Result<(), RecordError> {
        loop {
            let end = self.written + self.pending[c].len() as u64;
            if end >= to {
                return Ok(());
            }
            let g = (to - end).min(CHUNK as u64) as usize;
            self.stats.silence_padded += g as u64;
            let len = self.pending[c].len();
            self.pending[c].resize(len + g, 0);
            self.balance()?;
        }
    }

    /// Writes what both channels have, then whatever exceeds the lead bound.
    fn balance(&mut self) -> Result<(), RecordError> {
        let (l, r) = (self.pending[0].len(), self.pending[1].len());
        if l.min(r) > 0 {
            self.emit(l.min(r))?;
        }
        let lead = self.pending[0].len().max(self.pending[1].len());
        if lead > self.max_lead {
            self.emit(lead - self.max_lead)?;
        }
        Ok(())
    }

    /// Writes the next `n` frames, silence where a channel has nothing pending.
    fn emit(&mut self, n: usize) -> Result<(), RecordError> {
        let [l, r] = &mut self.pending;
        let nl = n.min(l.len());
        let nr = n.min(r.len());
        self.stats.silence_padded += (n - nl + n - nr) as u64;
        let room = MAX_FRAMES.saturating_sub(self.stats.frames) as usize;
        let w = n.min(room);
        self.stats.truncated += ((n - w) * 2) as u64;
        if w > 0 {
            let (ls, rs) = (&l.make_contiguous()[..nl], &r.make_contiguous()[..nr]);
            // w ≤ CHUNK + max_lead frames, far below u32.
            let mut sw = self.writer.get_i16_writer((2 * w) as u32);
            let both = nl.min(nr).min(w);
            for (&a, &b) in ls[..both].iter().zip(&rs[..both]) {
                sw.write_sample(a);
                sw.write_sample(b);
            }
            for i in both..w {
                sw.write_sample(ls.get(i).copied().unwrap_or(0));
                sw.write_sample(rs.get(i).copied().unwrap_or(0));
            }
            sw.flush().map_err(|e| RecordError::wav(&self.path, e))?;
            self.stats.frames += w as u64;
            self.dirty = true;
        }
        l.drain(..nl);
        r.drain(..nr);
        self.written += n as u64;
        Ok(())
    }

    /// Updates the header and hands buffered data to the kernel.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.writer
            .flush()
            .map_err(|e| RecordError::wav(&self.path, e))?;
        self.dirty = false;
        Ok(())
    }

    /// [`Recorder::flush`] if something was written and the flush interval has passed.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<(), RecordError> {
        if self.dirty && now.saturating_duration_since(self.last_flush) >= self.flush_interval {
            self.flush()?;
            self.last_flush = now;
        }
        Ok(())
    }

    /// Writes everything buffered (the shorter channel padded with silence), finalizes the
    /// header and, if configured, syncs the file.
    pub fn finish(mut self) -> Result<RecordingSummary, RecordError> {
        let rest = self.pending[0].len().max(self.pending[1].len());
        if rest > 0 {
            self.emit(rest)?;
        }
        let Recorder {
            path,
            writer,
            file,
            sync_on_finish,
            stats,
            ..
        } = self;
        writer.finalize().map_err(|e| RecordError::wav(&path, e))?;
        if sync_on_finish {
            file.sync_data().map_err(|source| RecordError::Io {
                path: path.clone(),
                op: "sync",
                source,
            })?;
        }
        Ok(RecordingSummary { path, stats })
    }
}

// ---------------------------------------------------------------------------------------
// Writer thread

type FinishReply = oneshot::Sender<Result<RecordingSummary, RecordError>>;

enum Cmd {
    Open {
        id: u64,
        path: PathBuf,
    },
    Data {
        id: u64,
        channel: Channel,
        at: u64,
        pcm: Vec<i16>,
    },
    Advance {
        id: u64,
        at: u64,
    },
    Finish {
        id: u64,
        reply: Option<FinishReply>,
    },
    Shutdown,
}

#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    open: AtomicUsize,
    opened: AtomicU64,
    finished: AtomicU64,
    frames: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

/// Counters for metrics, over all recordings of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderPoolStats {
    pub open: usize,
    pub opened: u64,
    pub finished: u64,
    /// Stereo frames written.
    pub frames_written: u64,
    /// Samples dropped before the writer: queue over budget, writer gone, or the
    /// recording failed.
    pub dropped_samples: u64,
    /// Recordings that failed (create, write or finish error).
    pub errors: u64,
    /// Samples waiting for the writer thread now.
    pub queued_samples: usize,
}

/// The process's recording writer: one thread that owns every open [`Recorder`].
pub struct RecorderPool {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    batch: usize,
    max_queued: usize,
}

impl RecorderPool {
    /// Starts the writer thread.
    pub fn spawn(cfg: RecorderConfig) -> io::Result<RecorderPool> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("recorder".into())
                .spawn(move || run_writer(rx, &shared, &cfg))?
        };
        Ok(RecorderPool {
            tx,
            shared,
            thread: Some(thread),
            next_id: AtomicU64::new(0),
            batch: samples(cfg.batch).max(1),
            max_queued: samples(cfg.max_queued),
        })
    }

    /// Starts a recording at `path` (created by the writer thread; a failure shows in
    /// [`RecordingHandle::finish`]'s result, the log and [`RecorderPoolStats::errors`]).
    pub fn open(&self, path: PathBuf) -> RecordingHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let gone = self
            .tx
            .send(Cmd::Open {
                id,
                path: path.clone(),
            })
            .is_err();
        RecordingHandle {
            id,
            path,
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            batch: [Batch::default(), Batch::default()],
            batch_len: self.batch,
            max_queued: self.max_queued,
            done: gone,
        }
    }

    pub fn stats(&self) -> RecorderPoolStats {
        let s = &self.shared;
        RecorderPoolStats {
            open: s.open.load(Ordering::Relaxed),
            opened: s.opened.load(Ordering::Relaxed),
            finished: s.finished.load(Ordering::Relaxed),
            frames_written: s.frames.load(Ordering::Relaxed),
            dropped_samples: s.dropped.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            queued_samples: s.queued.load(Ordering::Relaxed),
        }
    }

    /// Finishes every open recording (after the audio already sent for it) and stops the
    /// thread. Blocking: call at shutdown. Handles used afterwards drop their audio.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("recorder thread panicked");
            }
        }
    }
}

impl Drop for RecorderPool {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Default)]
struct Batch {
    at: u64,
    pcm: Vec<i16>,
}

/// One call's recording. `Send`, never blocks; dropping it finishes the recording.
pub struct RecordingHandle {
    id: u64,
    path: PathBuf,
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    batch: [Batch; 2],
    batch_len: usize,
    max_queued: usize,
    done: bool,
}

impl RecordingHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// As [`Recorder::push`]; batched, sent to the writer thread without blocking.
    pub fn push(&mut self, channel: Channel, at_sample: u64, pcm: &[i16]) {
        let c = channel.idx();
        let b = &self.batch[c];
        if !b.pcm.is_empty() && b.at + b.pcm.len() as u64 != at_sample {
            self.send_batch(c);
        }
        let b = &mut self.batch[c];
        if b.pcm.is_empty() {
            b.at = at_sample;
        }
        b.pcm.extend_from_slice(pcm);
        if b.pcm.len() >= self.batch_len {
            self.send_batch(c);
        }
    }

    /// As [`Recorder::advance_to`] (e.g. when hold ends, so the silence is written now).
    pub fn advance_to(&mut self, at_sample: u64) {
        self.send_batch(0);
        self.send_batch(1);
        self.send(Cmd::Advance {
            id: self.id,
            at: at_sample,
        });
    }

    /// Sends the audio batched so far now.
    pub fn flush(&mut self) {
        self.send_batch(0);
        self.send_batch(1);
    }

    /// Ends the recording; the receiver gets the outcome once the file is final (or
    /// an error: the writer thread is gone when the receiver reports closed).
    pub fn finish(mut self) -> oneshot::Receiver<Result<RecordingSummary, RecordError>> {
        let (reply, rx) = oneshot::channel();
        self.end(Some(reply));
        rx
    }

    fn end(&mut self, reply: Option<FinishReply>) {
        if self.done {
            if let Some(reply) = reply {
                let _ = reply.send(Err(RecordError::WriterGone {
                    path: self.path.clone(),
                }));
            }
            return;
        }
        self.flush();
        self.done = true;
        if let Err(mpsc::SendError(Cmd::Finish {
            reply: Some(reply), ..
        })) = self.tx.send(Cmd::Finish { id: self.id, reply })
        {
            let _ = reply.send(Err(RecordError::WriterGone {
                path: self.path.clone(),
            }));
        }
    }

    fn send_batch(&mut self, c: usize) {
        if self.batch[c].pcm.is_empty() {
            return;
        }
        let pcm = std::mem::replace(&mut self.batch[c].pcm, Vec::with_capacity(self.batch_len));
        let n = pcm.len();
        let queued = self.shared.queued.fetch_add(n, Ordering::Relaxed) + n;
        if queued > self.max_queued {
            self.shared.queued.fetch_sub(n, Ordering::Relaxed);
            self.shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        let channel = if c == 0 {
            Channel::Left
        } else {
            Channel::Right
        };
        let at = self.batch[c].at;
        self.send(Cmd::Data {
            id: self.id,
            channel,
            at,
            pcm,
        });
    }

    fn send(&mut self, cmd: Cmd) {
        if self.done {
            if let Cmd::Data { pcm, .. } = cmd {
                self.shared.queued.fetch_sub(pcm.len(), Ordering::Relaxed);
                self.shared
                    .dropped
                    .fetch_add(pcm.len() as u64, Ordering::Relaxed);
            }
            return;
        }
        if let Err(mpsc::SendError(cmd)) = self.tx.send(cmd) {
            self.done = true;
            if let Cmd::Data { pcm, .. } = cmd {
                self.shared.queued.fetch_sub(pcm.len(), Ordering::Relaxed);
                self.shared
                    .dropped
                    .fetch_add(pcm.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for RecordingHandle {
    fn drop(&mut self) {
        self.end(None);
    }
}

enum Slot {
    Open(Box<Recorder>),
    Failed { path: PathBuf, reason: String },
}

fn run_writer(rx: mpsc::Receiver<Cmd>, shared: &Shared, cfg: &RecorderConfig) {
    let mut recs: HashMap<u64, Slot> = HashMap::new();
    let tick = (cfg.flush_interval / 4).max(Duration::from_millis(10));
    let mut last_sweep = Instant::now();
    loop {
        match rx.recv_timeout(tick) {
            Ok(Cmd::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(cmd) => handle(cmd, &mut recs, shared, cfg),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= tick {
            last_sweep = now;
            for slot in recs.values_mut() {
                if let Slot::Open(r) = slot {
                    // Flush now what would be overdue by the next sweep: at most
                    // `flush_interval` between two flushes of a recording.
                    if let Err(e) = r.flush_if_due(now + tick) {
                        fail(slot, e, shared);
                    }
                }
            }
        }
    }
    // Shutdown: what was sent before it is in the channel still; then finish everything.
    while let Ok(cmd) = rx.try_recv() {
        if !matches!(cmd, Cmd::Shutdown) {
            handle(cmd, &mut recs, shared, cfg);
        }
    }
    for (_, slot) in recs.drain() {
        shared.open.fetch_sub(1, Ordering::Relaxed);
        shared.finished.fetch_add(1, Ordering::Relaxed);
        if let Slot::Open(r) = slot {
            let before = r.stats().frames;
            match r.finish() {
                Ok(s) => {
                    shared
                        .frames
                        .fetch_add(s.stats.frames - before, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot finish recording at shutdown");
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn fail(slot: &mut Slot, e: RecordError, shared: &Shared) {
    let path = match slot {
        Slot::Open(r) => r.path().to_path_buf(),
        Slot::Failed { .. } => return,
    };
    tracing::warn!(error = %e, "recording failed; the rest of this call is not recorded");
    shared.errors.fetch_add(1, Ordering::Relaxed);
    // Dropping the recorder keeps what was written (hound updates the header).
    *slot = Slot::Failed {
        path,
        reason: e.to_string(),
    };
}

fn handle(cmd: Cmd, recs: &mut HashMap<u64, Slot>, shared: &Shared, cfg: &RecorderConfig) {
    match cmd {
        Cmd::Open { id, path } => {
            shared.opened.fetch_add(1, Ordering::Relaxed);
            shared.open.fetch_add(1, Ordering::Relaxed);
            let slot = match Recorder::create(&path, cfg) {
                Ok(r) => Slot::Open(Box::new(r)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start recording");
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    Slot::Failed {
                        path,
                        reason: e.to_string(),
                    }
                }
            };
            recs.insert(id, slot);
        }
        Cmd::Data {
            id,
            channel,
            at,
            pcm,
        } => {
            shared.queued.fetch_sub(pcm.len(), Ordering::Relaxed);
            let Some(slot) = recs.get_mut(&id) else {
                shared
                    .dropped
                    .fetch_add(pcm.len() as u64, Ordering::Relaxed);
                return;
            };
            let res = match slot {
                Slot::Open(r) => {
                    let before = r.stats().frames;
                    let res = r.push(channel, at, &pcm);
                    shared
                        .frames
                        .fetch_add(r.stats().frames - before, Ordering::Relaxed);
                    res
                }
                Slot::Failed { .. } => {
                    shared
                        .dropped
                        .fetch_add(pcm.len() as u64, Ordering::Relaxed);
                    return;
                }
            };
            if let Err(e) = res {
                fail(slot, e, shared);
            }
        }
        Cmd::Advance { id, at } => {
            let Some(slot) = recs.get_mut(&id) else {
                return;
            };
            let res = match slot {
                Slot::Open(r) => {
                    let before = r.stats().frames;
                    let res = r.advance_to(at);
                    shared
                        .frames
                        .fetch_add(r.stats().frames - before, Ordering::Relaxed);
                    res
                }
                Slot::Failed { .. } => return,
            };
            if let Err(e) = res {
                fail(slot, e, shared);
            }
        }
        Cmd::Finish { id, reply } => {
            let Some(slot) = recs.remove(&id) else {
                return;
            };
            shared.open.fetch_sub(1, Ordering::Relaxed);
            shared.finished.fetch_add(1, Ordering::Relaxed);
            let res = match slot {
                Slot::Open(r) => {
                    let before = r.stats().frames;
                    let res = r.finish();
                    match &res {
                        Ok(s) => {
                            shared
                                .frames
                                .fetch_add(s.stats.frames - before, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot finish recording");
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    res
                }
                Slot::Failed { path, reason } => Err(RecordError::Failed { path, reason }),
            };
            if let Some(reply) = reply {
                let _ = reply.send(res);
            }
        }
        Cmd::Shutdown => {}
    }
}

// ---------------------------------------------------------------------------------------
// Paths

/// `<data_dir>/recordings/YYYY/MM/DD/<call-id>.wav`, the date being the call's start in
/// UTC. Characters of `call_id` other than ASCII letters, digits, `-` and `_` become `_`
/// (a call id can never reach outside the directory).
pub fn recording_path(data_dir: &Path, call_id: &str, started: SystemTime) -> PathBuf {
    let secs = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = crate::store::civil_from_days((secs / 86_400) as i64);
    let mut name: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    data_dir
        .join(RECORDINGS_DIR)
        .join(format!("{y:04}"))
        .join(format!("{m:02}"))
        .join(format!("{d:02}"))
        .join(format!("{name}.wav"))
}

// ---------------------------------------------------------------------------------------
// Crash repair

/// What [`repair`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairOutcome {
    /// Sizes agree with the file; nothing written.
    Intact,
    /// The header was rewritten to cover the audio on disk (a trailing partial frame cut).
    Repaired {
        /// Data size the header claimed.
        declared_bytes: u64,
        /// Data size now.
        data_bytes: u64,
        /// Bytes cut off the end (a partial frame).
        truncated_bytes: u64,
    },
    /// Not a WAV this can fix (left untouched): no RIFF/WAVE header, no fmt or data chunk.
    Unrecoverable { reason: String },
}

struct Layout {
    riff_size: u64,
    data_start: u64,
    declared: u64,
    block_align: u64,
}

fn read_at(f: &mut File, pos: u64, buf: &mut [u8]) -> io::Result<()> {
    f.seek(SeekFrom::Start(pos))?;
    f.read_exact(buf)
}

fn le32(b: &[u8]) -> u64 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64
}

/// Finds the data chunk; `Err(reason)` when the file cannot be made sense of.
fn scan(f: &mut File, len: u64) -> io::Result<Result<Layout, String>> {
    if len < 12 {
        return Ok(Err("shorter than a RIFF header".into()));
    }
    let mut head = [0u8; 12];
    read_at(f, 0, &mut head)?;
    if &head[..4] != b"RIFF" || &head[8..] != b"WAVE" {
        return Ok(Err("not a RIFF/WAVE file".into()));
    }
    let riff_size = le32(&head[4..8]);
    let mut pos = 12u64;
    let mut block_align = None;
    loop {
        if pos + 8 > len {
            return Ok(Err(match block_align {
                None => "header incomplete: no fmt chunk".into(),
                Some(_) => "no data chunk".into(),
            }));
        }
        let mut ch = [0u8; 8];
        read_at(f, pos, &mut ch)?;
        let size = le32(&ch[4..]);
        match &ch[..4] {
            b"data" => {
                let Some(block_align) = block_align else {
                    return Ok(Err("data chunk before fmt chunk".into()));
                };
                return Ok(Ok(Layout {
                    riff_size,
                    data_start: pos + 8,
                    declared: size,
                    block_align,
                }));
            }
            b"fmt " => {
                if size < 16 || pos + 8 + 16 > len {
                    return Ok(Err("fmt chunk truncated".into()));
                }
                let mut fmt = [0u8; 16];
                read_at(f, pos + 8, &mut fmt)?;
                let align = u16::from_le_bytes([fmt[12], fmt[13]]) as u64;
                if align == 0 {
                    return Ok(Err("fmt chunk has block align 0".into()));
                }
                block_align = Some(align);
            }
            _ => {}
        }
        pos += 8 + size + (size & 1);
    }
}

/// Whether the sizes are consistent: RIFF covers the file, data fits and is whole frames,
/// and any chunks after data end exactly at the end of the file.
fn consistent(f: &mut File, len: u64, l: &Layout) -> io::Result<bool> {
    if l.riff_size + 8 != len
        || !l.declared.is_multiple_of(l.block_align)
        || l.data_start + l.declared > len
    {
        return Ok(false);
    }
    let mut pos = l.data_start + l.declared + (l.declared & 1);
    for _ in 0..64 {
        if pos == len {
            return Ok(true);
        }
        if pos + 8 > len {
            return Ok(false);
        }
        let mut ch = [0u8; 8];
        read_at(f, pos, &mut ch)?;
        let size = le32(&ch[4..]);
        pos += 8 + size + (size & 1);
    }
    Ok(false)
}

/// Fixes the RIFF and data sizes of a WAV left open by a crash so that they cover the
/// audio on disk, cutting a trailing partial frame. The data chunk is taken to run to the
/// end of the file (as the recorder writes it), unless the sizes are already consistent,
/// in which case nothing is written. Files this cannot parse are left untouched.
pub fn repair(path: &Path) -> io::Result<RepairOutcome> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let l = match scan(&mut f, len)? {
        Ok(l) => l,
        Err(reason) => return Ok(RepairOutcome::Unrecoverable { reason }),
    };
    if consistent(&mut f, len, &l)? {
        return Ok(RepairOutcome::Intact);
    }
    drop(f);
    // The RIFF size (data + header after the RIFF size field) must fit in 32 bits.
    let Some(limit) = (u32::MAX as u64).checked_sub(l.data_start - 8) else {
        return Ok(RepairOutcome::Unrecoverable {
            reason: "data chunk starts beyond 4 GiB".into(),
        });
    };
    let avail = len.saturating_sub(l.data_start);
    let data = avail.min(limit) / l.block_align * l.block_align;
    let new_len = l.data_start + data;
    let mut f = OpenOptions::new().write(true).open(path)?;
    if new_len < len {
        f.set_len(new_len)?;
    }
    f.seek(SeekFrom::Start(4))?;
    f.write_all(&((new_len - 8) as u32).to_le_bytes())?;
    f.seek(SeekFrom::Start(l.data_start - 4))?;
    f.write_all(&(data as u32).to_le_bytes())?;
    f.sync_data()?;
    Ok(RepairOutcome::Repaired {
        declared_bytes: l.declared,
        data_bytes: data,
        truncated_bytes: len - new_len,
    })
}

/// What [`repair_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// `.wav` files looked at.
    pub scanned: usize,
    pub intact: usize,
    pub repaired: Vec<PathBuf>,
    /// Files left as they were, with why (including I/O errors on that file).
    pub unrecoverable: Vec<(PathBuf, String)>,
}

/// Runs [`repair`] on every `.wav` file under `dir` (recursively, symlinks not followed),
/// at start-up before any recording is opened. Reads only the headers of intact files.
/// A missing `dir` is an empty report.
pub fn repair_dir(dir: &Path) -> io::Result<RepairReport> {
    let mut report = RepairReport::default();
    let mut stack = vec![dir.to_path_buf()];
    let mut root = true;
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if root && e.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(e) if root => return Err(e),
            Err(e) => {
                report.unrecoverable.push((d, format!("cannot list: {e}")));
                continue;
            }
        };
        root = false;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    report
                        .unrecoverable
                        .push((d.clone(), format!("cannot list: {e}")));
                    continue;
                }
            };
            let path = entry.path();
            let Ok(ty) = entry.file_type() else { continue };
            if ty.is_dir() {
                stack.push(path);
                continue;
            }
            let is_wav = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            if !ty.is_file() || !is_wav {
                continue;
            }
            report.scanned += 1;
            match repair(&path) {
                Ok(RepairOutcome::Intact) => report.intact += 1,
                Ok(RepairOutcome::Repaired { .. }) => {
                    tracing::info!(path = %path.display(), "repaired recording left open by a crash");
                    report.repaired.push(path);
                }
                Ok(RepairOutcome::Unrecoverable { reason }) => {
                    tracing::warn!(path = %path.display(), %reason, "recording cannot be repaired");
                    report.unrecoverable.push((path, reason));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "recording cannot be repaired");
                    report.unrecoverable.push((path, e.to_string()));
                }
            }
        }
    }
    report.repaired.sort();
    report.unrecoverable.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RecorderConfig {
        RecorderConfig {
            sync_on_finish: false,
            ..Default::default()
        }
    }

    /// (left, right) samples of a stereo WAV, via hound.
    fn read(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        assert_eq!(r.spec(), wav_spec());
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(s.len() % 2, 0);
        (
            s.iter().step_by(2).copied().collect(),
            s.iter().skip(1).step_by(2).copied().collect(),
        )
    }

    fn ramp(from: i16, n: usize) -> Vec<i16> {
        (0..n).map(|i| from.wrapping_add(i as i16)).collect()
    }

    #[test]
    fn channels_aligned_with_gaps_and_out_of_step_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.wav");
        let mut r = Recorder::create(&p, &cfg()).unwrap();
        // Caller: frames at 0 and 320 (a lost packet at 160). Gateway: 160..480 in one go,
        // pushed before the caller's second frame.
        r.push(Channel::CALLER, 0, &ramp(1, 160)).unwrap();
        r.push(Channel::GATEWAY, 160, &ramp(1000, 320)).unwrap();
        r.push(Channel::CALLER, 320, &ramp(500, 160)).unwrap();
        // A duplicate of the caller's first frame: already written, dropped.
        r.push(Channel::CALLER, 0, &[7; 160]).unwrap();
        let s = r.finish().unwrap();
        assert_eq!(s.stats.frames, 480);
        assert_eq!(s.stats.late_dropped, 160);
        // 160 gap on the caller, 160 lead-in on the gateway.
        assert_eq!(s.stats.silence_padded, 320);
        let (l, rt) = read(&p);
        let mut want_l = ramp(1, 160);
        want_l.extend(vec![0; 160]);
        want_l.extend(ramp(500, 160));
        let mut want_r = vec![0; 160];
        want_r.extend(ramp(1000, 320));
        assert_eq!(l, want_l);
        assert_eq!(rt, want_r);
        assert_eq!(s.duration(), Duration::from_millis(60));
    }

    #[test]
    fn a_channel_running_ahead_is_bounded_by_max_lead() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lead.wav");
        let mut r = Recorder::create(&p, &cfg()).unwrap();
        // Three seconds of caller audio, no gateway audio yet: one second stays buffered.
        for k in 0..150u64 {
            r.push(Channel::Left, k * 160, &[1; 160]).unwrap();
        }
        assert_eq!(r.stats().frames, 16_000);
        assert_eq!(r.stats().silence_padded, 16_000);
        // Gateway audio for 1.5–2.5 s: the first half second is already written (dropped),
        // the rest fits.
        r.push(Channel::Right, 12_000, &[2; 8000]).unwrap();
        assert_eq!(r.stats().late_dropped, 4000);
        assert_eq!(r.stats().frames, 20_000);
        // Partly before the written position: that part is dropped as late.
        r.push(Channel::Right, 19_000, &[3; 2000]).unwrap();
        assert_eq!(r.stats().late_dropped, 5000);
        assert_eq!(r.stats().frames, 21_000);
        // Overlapping the channel's own buffered audio: the overlap is dropped.
        r.push(Channel::Left, 23_000, &[4; 2000]).unwrap();
        assert_eq!(r.stats().overlap_dropped, 1000);
        let s = r.finish().unwrap();
        assert_eq!(s.stats.frames, 25_000);
        let (l, rt) = read(&p);
        assert!(l[..24_000].iter().all(|&v| v == 1));
        assert!(l[24_000..].iter().all(|&v| v == 4));
        assert!(rt[..16_000].iter().all(|&v| v == 0));
        assert!(rt[16_000..20_000].iter().all(|&v| v == 2));
        assert!(rt[20_000..21_000].iter().all(|&v| v == 3));
        assert!(rt[21_000..].iter().all(|&v| v == 0));
    }

    #[test]
    fn advance_writes_silence_up_to_a_point() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hold.wav");
        let mut r = Recorder::create(&p, &cfg()).unwrap();
        r.push(Channel::Left, 0, &[5; 160]).unwrap();
        r.advance_to(80_000).unwrap(); // 10 s on hold
        assert_eq!(r.stats().frames, 80_000);
        r.push(Channel::Left, 80_000, &[6; 160]).unwrap();
        r.push(Channel::Right, 80_000, &[7; 160]).unwrap();
        let s = r.finish().unwrap();
        assert_eq!(s.stats.frames, 80_160);
        let (l, rt) = read(&p);
        assert_eq!(&l[..160], &[5; 160]);
        assert!(l[160..80_000].iter().all(|&v| v == 0));
        assert_eq!(&l[80_000..], &[6; 160]);
        assert_eq!(&rt[80_000..], &[7; 160]);
    }

    #[test]
    fn create_refuses_to_overwrite_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        std::fs::write(&p, b"precious").unwrap();
        let e = Recorder::create(&p, &cfg()).err().unwrap().to_string();
        assert!(e.contains("x.wav") && e.contains("create"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        let blocked = p.join("under-a-file.wav");
        let e = Recorder::create(&blocked, &cfg())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("under-a-file.wav"), "{e}");
    }

    /// A process killed after a flush: the recorder is never dropped (no destructor runs,
    /// hound's buffer is lost), as with `kill -9`.
    #[test]
    fn readable_after_a_crash_and_repaired_to_the_last_byte_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("crash.wav");
        let mut r = Recorder::create(&p, &cfg()).unwrap();
        let left: Vec<i16> = (0..28_000).map(|i| (i % 1000) as i16).collect();
        let right: Vec<i16> = (0..28_000).map(|i| -((i % 777) as i16)).collect();
        let t0 = Instant::now();
        for k in 0..125 {
            let at = k * 160;
            r.push(Channel::Left, at as u64, &left[at..at + 160])
                .unwrap();
            r.push(Channel::Right, at as u64, &right[at..at + 160])
                .unwrap();
            // The writer thread's sweep: flushes once a second of call time.
            r.flush_if_due(t0 + Duration::from_millis(20 * k as u64 + 20))
                .unwrap();
        }
        // 2.5 s written, flushed at 1 s and 2 s; 0.5 s more after that.
        for k in 125..175 {
            let at = k * 160;
            r.push(Channel::Left, at as u64, &left[at..at + 160])
                .unwrap();
            r.push(Channel::Right, at as u64, &right[at..at + 160])
                .unwrap();
        }
        std::mem::forget(r);

        // Readable as it is, up to the last flush.
        let (l, rt) = read(&p);
        assert!(l.len() >= 16_000 && l.len() < 20_000, "{}", l.len());
        assert_eq!(&l[..], &left[..l.len()]);
        assert_eq!(&rt[..], &right[..l.len()]);

        // Repair takes in everything that reached the file (hound's 8 KiB buffer aside).
        let on_disk = std::fs::metadata(&p).unwrap().len();
        let outcome = repair(&p).unwrap();
        let RepairOutcome::Repaired {
            data_bytes,
            truncated_bytes,
            ..
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(data_bytes + 44 + truncated_bytes, on_disk);
        let (l2, r2) = read(&p);
        assert_eq!(l2.len() as u64, data_bytes / 4);
        assert!(l2.len() >= 28_000 - 2048, "{}", l2.len());
        assert_eq!(&l2[..], &left[..l2.len()]);
        assert_eq!(&r2[..], &right[..l2.len()]);
        assert_eq!(repair(&p).unwrap(), RepairOutcome::Intact);
    }

    fn finished_file(dir: &Path, name: &str, frames: usize) -> (PathBuf, Vec<u8>) {
        let p = dir.join(name);
        let mut r = Recorder::create(&p, &cfg()).unwrap();
        let pcm: Vec<i16> = (0..frames).map(|i| i as i16 ^ 0x5a5a).collect();
        r.push(Channel::Left, 0, &pcm).unwrap();
        r.push(Channel::Right, 0, &pcm).unwrap();
        r.finish().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        (p, bytes)
    }

    #[test]
    fn repair_handles_truncation_at_every_kind_of_point() {
        let dir = tempfile::tempdir().unwrap();
        let (_, good) = finished_file(dir.path(), "good.wav", 1000);
        assert_eq!(good.len(), 44 + 4000);
        let p = dir.path().join("cut.wav");
        let cuts = (0..60).chain([401, 402, 403, 404, 2047, 4000, 4043, 4044]);
        for cut in cuts {
            std::fs::write(&p, &good[..cut]).unwrap();
            let out = repair(&p).unwrap();
            if cut < 44 {
                assert!(
                    matches!(out, RepairOutcome::Unrecoverable { .. }),
                    "cut {cut}: {out:?}"
                );
                assert_eq!(std::fs::read(&p).unwrap(), &good[..cut], "left untouched");
                continue;
            }
            let frames = (cut - 44) / 4;
            let expect = if cut == good.len() {
                RepairOutcome::Intact
            } else {
                RepairOutcome::Repaired {
                    declared_bytes: 4000,
                    data_bytes: frames as u64 * 4,
                    truncated_bytes: ((cut - 44) % 4) as u64,
                }
            };
            assert_eq!(out, expect, "cut {cut}");
            let got = std::fs::read(&p).unwrap();
            assert_eq!(got.len(), 44 + frames * 4);
            assert_eq!(&got[44..], &good[44..44 + frames * 4]);
            let (l, _) = read(&p);
            assert_eq!(l.len(), frames, "cut {cut}");
        }
    }

    #[test]
    fn repair_fixes_stale_and_wrong_headers_and_leaves_good_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (p, good) = finished_file(dir.path(), "g.wav", 500);
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert_eq!(repair(&p).unwrap(), RepairOutcome::Intact);
        assert_eq!(std::fs::read(&p).unwrap(), good);
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);

        let set = |riff: u32, data: u32| {
            let mut b = good.clone();
            b[4..8].copy_from_slice(&riff.to_le_bytes());
            b[40..44].copy_from_slice(&data.to_le_bytes());
            std::fs::write(&p, &b).unwrap();
        };
        // As created and never flushed again; streaming-style 0xFFFFFFFF; too large;
        // only the RIFF size wrong; data size not whole frames.
        for (riff, data) in [
            (36, 0),
            (u32::MAX, u32::MAX),
            (36 + 9000, 9000),
            (100, 2000),
            (36 + 2000, 1998),
        ] {
            set(riff, data);
            let out = repair(&p).unwrap();
            assert!(
                matches!(
                    out,
                    RepairOutcome::Repaired {
                        data_bytes: 2000,
                        ..
                    }
                ),
                "{out:?}"
            );
            assert_eq!(std::fs::read(&p).unwrap(), good, "{riff} {data}");
        }

        // A complete file with a chunk after the data is intact.
        let mut with_list = good.clone();
        with_list.extend_from_slice(b"LIST\x04\x00\x00\x00INFO");
        let riff = (with_list.len() - 8) as u32;
        with_list[4..8].copy_from_slice(&riff.to_le_bytes());
        std::fs::write(&p, &with_list).unwrap();
        assert_eq!(repair(&p).unwrap(), RepairOutcome::Intact);

        // Not a WAV: untouched.
        std::fs::write(&p, b"ID3\x04 some mp3 that is called .wav").unwrap();
        assert!(matches!(
            repair(&p).unwrap(),
            RepairOutcome::Unrecoverable { .. }
        ));
        assert!(repair(&dir.path().join("missing.wav")).is_err());
    }

    #[test]
    fn repair_dir_scans_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        assert_eq!(repair_dir(&root).unwrap(), RepairReport::default());
        let day = root.join("2025/01/02");
        std::fs::create_dir_all(&day).unwrap();
        let (_, good) = finished_file(&day, "ok.wav", 800);
        // Left open by a crash: stale header, data to the end, a partial frame.
        let mut crashed = good.clone();
        crashed[4..8].copy_from_slice(&36u32.to_le_bytes());
        crashed[40..44].copy_from_slice(&0u32.to_le_bytes());
        crashed.extend_from_slice(&[1, 2, 3]);
        std::fs::write(day.join("crashed.WAV"), &crashed).unwrap();
        std::fs::write(day.join("stub.wav"), &good[..20]).unwrap();
        std::fs::write(day.join("notes.txt"), b"not audio").unwrap();
        let report = repair_dir(&root).unwrap();
        assert_eq!(report.scanned, 3);
        assert_eq!(report.intact, 1);
        assert_eq!(report.repaired, vec![day.join("crashed.WAV")]);
        assert_eq!(report.unrecoverable.len(), 1);
        assert_eq!(report.unrecoverable[0].0, day.join("stub.wav"));
        assert_eq!(std::fs::read(day.join("crashed.WAV")).unwrap(), good);
        let again = repair_dir(&root).unwrap();
        assert_eq!((again.intact, again.repaired.len()), (2, 0));
    }

    #[test]
    fn pool_records_many_calls_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let pool = RecorderPool::spawn(cfg()).unwrap();
        let results = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    let pool = &pool;
                    let dir = dir.path();
                    s.spawn(move || {
                        let mut hs: Vec<RecordingHandle> = (0..5)
                            .map(|c| pool.open(dir.join(format!("t{t}/c{c}.wav"))))
                            .collect();
                        for k in 0..150u64 {
                            for (c, h) in hs.iter_mut().enumerate() {
                                let v = (t * 10 + c) as i16;
                                h.push(Channel::CALLER, k * 160, &[v; 160]);
                                h.push(Channel::GATEWAY, k * 160, &[-v; 160]);
                            }
                        }
                        hs.into_iter()
                            .map(|h| h.finish().blocking_recv().unwrap().unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(results.len(), 20);
        for s in &results {
            assert_eq!(s.stats.frames, 24_000);
            let (l, r) = read(&s.path);
            assert_eq!(l.len(), 24_000);
            assert!(l.iter().zip(&r).all(|(a, b)| *a == -*b && *a == l[0]));
        }
        let st = pool.stats();
        assert_eq!((st.opened, st.finished, st.open), (20, 20, 0));
        assert_eq!(st.frames_written, 20 * 24_000);
        assert_eq!(
            (st.dropped_samples, st.errors, st.queued_samples),
            (0, 0, 0)
        );
        pool.shutdown();
    }

    #[test]
    fn pool_drops_audio_over_budget_as_silence_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let pool = RecorderPool::spawn(RecorderConfig {
            max_queued: Duration::ZERO,
            ..cfg()
        })
        .unwrap();
        let mut h = pool.open(dir.path().join("starved.wav"));
        for k in 0..50 {
            h.push(Channel::Left, k * 160, &[9; 160]);
        }
        h.advance_to(8000);
        let s = h.finish().blocking_recv().unwrap().unwrap();
        assert_eq!(s.stats.frames, 8000);
        let (l, _) = read(&s.path);
        assert!(l.iter().all(|&v| v == 0));
        assert_eq!(pool.stats().dropped_samples, 8000);

        // A path that cannot be created: the error comes back from finish, naming it.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let mut h = pool.open(blocker.join("x.wav"));
        h.push(Channel::Left, 0, &[1; 800]);
        let e = h.finish().blocking_recv().unwrap().unwrap_err().to_string();
        assert!(e.contains("x.wav"), "{e}");
        assert_eq!(pool.stats().errors, 1);
        assert_eq!(pool.stats().open, 0);
    }

    #[test]
    fn pool_shutdown_finishes_open_recordings_and_dropped_handles_finish() {
        let dir = tempfile::tempdir().unwrap();
        let pool = RecorderPool::spawn(cfg()).unwrap();
        let mut kept = pool.open(dir.path().join("kept.wav"));
        kept.push(Channel::Left, 0, &[3; 4000]);
        kept.push(Channel::Right, 0, &[4; 4000]);
        kept.flush();
        {
            let mut dropped = pool.open(dir.path().join("dropped.wav"));
            dropped.push(Channel::Left, 0, &[5; 1600]);
        }
        pool.shutdown();
        let (l, r) = read(&dir.path().join("kept.wav"));
        assert_eq!((l.len(), l[0], r[0]), (4000, 3, 4));
        let (l, r) = read(&dir.path().join("dropped.wav"));
        assert_eq!((l.len(), l[0], r[0]), (1600, 5, 0));
        // The handle outlived the writer: its finish says so.
        let e = kept.finish().blocking_recv().unwrap().unwrap_err();
        assert!(matches!(e, RecordError::WriterGone { .. }), "{e}");
    }

    #[test]
    fn thread_safety_of_the_types() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Recorder>();
        send::<RecordingHandle>();
        send_sync::<RecorderPool>();
        send_sync::<RecordError>();
        send::<crate::media::Player>();
        send_sync::<crate::media::PromptCache>();
    }

    #[test]
    fn recording_paths_by_utc_date() {
        // 2024-02-29 23:59:59 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        let p = recording_path(Path::new("/var/lib/hotline"), "0192-abc_D", t);
        assert_eq!(
            p,
            Path::new("/var/lib/hotline/recordings/2024/02/29/0192-abc_D.wav")
        );
        let p = recording_path(
            Path::new("d"),
            "../../etc/passwd",
            t + Duration::from_secs(1),
        );
        assert_eq!(p, Path::new("d/recordings/2024/03/01/______etc_passwd.wav"));
        assert_eq!(
            recording_path(Path::new("d"), "", UNIX_EPOCH),
            Path::new("d/recordings/1970/01/01/_.wav")
        );
        for (days, ymd) in [
            (0, (1970, 1, 1)),
            (10_957, (2000, 1, 1)),
            (-1, (1969, 12, 31)),
        ] {
            assert_eq!(crate::store::civil_from_days(days), ymd);
        }
    }
}
