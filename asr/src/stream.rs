//! Live transcription policy for one call channel, sans-IO.
//!
//! A [`Stream`] takes the channel's 8 kHz telephone PCM in call order and turns it into
//! recognition [`Job`]s: a `Final` for every utterance the endpointer closes and, while an
//! utterance is still open, a `Partial` every `partial_interval_ms` of audio so a live
//! view can show words before the speaker pauses. Time is the audio position, never a
//! clock, so a test (or a replay of a recording) gets exactly the jobs a live call gets,
//! whatever the chunking of the input.
//!
//! Memory is bounded by the configuration, not by the call: only the audio an open or
//! not-yet-emitted utterance can still need (plus its padding) is kept.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::resample::Resampler;
use crate::vad::{
    EndpointConfig, EndpointEvent, Endpointer, SegmenterConfig, Utterance, Vad, VadConfig, FRAME,
    FRAME_MS,
};
use crate::{TELEPHONE_RATE, WHISPER_RATE};

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub vad: VadConfig,
    pub endpoint: EndpointConfig,
    /// Audio between two partial decodes of an open utterance; 0: no partials.
    pub partial_interval_ms: u64,
    /// No partial before the utterance holds this much speech: whisper on a syllable or
    /// two mostly guesses, and the guess would flash on screen.
    pub min_partial_ms: u64,
    /// Audio kept before and after each utterance (whisper clips words without it).
    pub pre_pad_ms: u64,
    pub post_pad_ms: u64,
    /// Start the final's decode as soon as the trailing silence covers the post-pad,
    /// before the endpointer has decided (a `Speculative` job with exactly the audio the
    /// final will have if the speaker does not go on). The pool hands its result over
    /// when the `Final` comes, which takes the end-silence wait off the final's latency.
    pub speculate: bool,
    /// Trailing silence after which the speaker counts as paused (`paused()`): no new
    /// partial starts, and the gateway stops this stream's running partial. whisper.cpp
    /// looks at its abort hook only after the whole encoder, so a partial still running
    /// when the speculative decode is queued (at post_pad of silence) holds a core for
    /// up to its encoder's length; stopping it here lets that pass first.
    pub hush_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        // Same cut as batch transcription, so live and batch text agree.
        let seg = SegmenterConfig::default();
        StreamConfig {
            vad: seg.vad,
            endpoint: seg.endpoint,
            partial_interval_ms: 1000,
            min_partial_ms: 500,
            pre_pad_ms: seg.pre_pad_ms,
            post_pad_ms: seg.post_pad_ms,
            speculate: true,
            hush_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Best-effort look at an open utterance; superseded by the next one.
    Partial,
    /// The utterance is complete; its text is the record.
    Final,
    /// The audio the final will have if the speaker has stopped: decoded like a final,
    /// but only ever used as one when its `Final` comes with the same audio.
    Speculative,
}

/// One piece of audio to recognise.
#[derive(Clone, PartialEq)]
pub struct Job {
    pub kind: JobKind,
    /// Index of the utterance within this stream: 0, 1, 2, …
    pub utterance: u64,
    /// Partial number within the utterance (0, 1, …); a final carries the number of
    /// partials that preceded it.
    pub revision: u32,
    /// The utterance's unpadded span in ms since the first sample pushed. For a partial,
    /// `end_ms` is the audio position it was cut at.
    pub start_ms: u64,
    pub end_ms: u64,
    /// 16 kHz mono, with the configured padding where the call had audio for it.
    pub audio: Arc<[f32]>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("kind", &self.kind)
            .field("utterance", &self.utterance)
            .field("revision", &self.revision)
            .field("start_ms", &self.start_ms)
            .field("end_ms", &self.end_ms)
            .field("audio_samples", &self.audio.len())
            .finish()
    }
}

/// How long before an utterance reaches max length its split is cut and speculated
/// (`Stream::maybe_presplit`): time for that decode to finish before the split, at the
/// price of choosing the cut among the frames up to then.
const PRESPLIT_LEAD_MS: u64 = 1500;

/// Input is converted in blocks of this many 8 kHz samples, so one huge push cannot
/// make the buffer hold more than a block beyond its bound.
const BLOCK_8K: usize = 4000;
/// 16 kHz samples per ms.
const PER_MS: u64 = WHISPER_RATE as u64 / 1000;

struct OpenUtt {
    start_frame: u64,
    last_speech_frame: u64,
    speech_frames: u64,
    /// Assigned with the first job, so indices count only utterances the caller saw.
    index: Option<u64>,
    revision: u32,
    next_partial_frame: u64,
    /// Where the last partial was cut, in frames.
    last_partial_frame: Option<u64>,
    /// The last speech frame a speculative final was cut after.
    speculated: Option<u64>,
    /// The split at max length is cut and speculated ([`Stream::maybe_presplit`]).
    presplit: bool,
    /// First sample of the padded audio.
    audio_start: u64,
}

struct PendingFinal {
    index: u64,
    revision: u32,
    utt: Utterance,
    audio_start: u64,
    audio_end: u64,
}

pub struct Stream {
    cfg: StreamConfig,
    resampler: Resampler,
    vad: Vad,
    ep: Endpointer,
    events: Vec<EndpointEvent>,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    frame: Vec<f32>,
    /// 16 kHz audio; `ring[0]` is absolute sample `ring_start`.
    ring: VecDeque<f32>,
    ring_start: u64,
    /// Frames labelled so far; frame `f` is samples `f*FRAME .. (f+1)*FRAME`.
    frames: u64,
    open: Option<OpenUtt>,
    /// Finals whose post-pad audio has not arrived yet; they hold back later jobs so
    /// jobs come out in utterance order.
    pending: VecDeque<PendingFinal>,
    jobs: VecDeque<Job>,
    next_utterance: u64,
    /// End of the last final's audio: the next utterance's pre-pad stops here so no
    /// word is decoded twice.
    last_final_end: u64,
    pushed_8k: u64,
    finished: bool,
    max_buffered: usize,
}

fn ms_to_samples(ms: u64) -> u64 {
    ms * PER_MS
}

fn frames_for_ms(ms: u64) -> u64 {
    ms.div_ceil(FRAME_MS).max(1)
}

impl Stream {
    pub fn new(cfg: StreamConfig) -> Stream {
        let ep_cfg = &cfg.endpoint;
        // What the trimming rule can keep at most: an utterance of the longest length
        // with both pads, the silence that ends it, the onset, and one input block.
        let max_buffered = ms_to_samples(
            cfg.pre_pad_ms
                + ep_cfg.max_utterance_ms
                + ep_cfg.end_silence_ms
                + cfg.post_pad_ms
                + 2 * FRAME_MS,
        ) as usize
            + (ep_cfg.onset_reach_frames() as usize + 2) * FRAME
            + 2 * BLOCK_8K;
        Stream {
            resampler: Resampler::new(TELEPHONE_RATE, WHISPER_RATE)
                .unwrap_or_else(|| unreachable!("both rates are non-zero constants")),
            vad: Vad::new(cfg.vad.clone()),
            ep: Endpointer::new(cfg.endpoint.clone()),
            events: Vec::new(),
            scratch_in: Vec::with_capacity(BLOCK_8K),
            scratch_out: Vec::with_capacity(2 * BLOCK_8K + 64),
            frame: vec![0.0; FRAME],
            ring: VecDeque::new(),
            ring_start: 0,
            frames: 0,
            open: None,
            pending: VecDeque::new(),
            jobs: VecDeque::new(),
            next_utterance: 0,
            last_final_end: 0,
            pushed_8k: 0,
            finished: false,
            max_buffered,
            cfg,
        }
    }

    /// 8 kHz telephone PCM in call order, any chunk size. Ignored after [`finish`](Self::finish).
    pub fn push_8k(&mut self, pcm: &[i16]) {
        if self.finished {
            return;
        }
        for block in pcm.chunks(BLOCK_8K) {
            self.pushed_8k += block.len() as u64;
            self.scratch_in.clear();
            self.scratch_in
                .extend(block.iter().map(|&s| s as f32 / 32768.0));
            self.scratch_out.clear();
            self.resampler
                .process(&self.scratch_in, &mut self.scratch_out);
            self.ring.extend(self.scratch_out.iter().copied());
            self.run_frames();
        }
    }

    /// End of the call: labels the tail, closes an open utterance (→ `Final`) and emits
    /// finals still waiting for post-pad audio with what there is.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.scratch_out.clear();
        self.resampler.finish(&mut self.scratch_out);
        self.ring.extend(self.scratch_out.iter().copied());
        self.run_frames();
        let end = self.ring_end();
        if end > self.frames * FRAME as u64 {
            // A last short frame; the VAD zero-pads it.
            self.process_frame();
        }
        self.events.clear();
        self.ep.finish(&mut self.events);
        let mut events = std::mem::take(&mut self.events);
        let closed = self.handle_events(&events);
        events.clear();
        self.events = events;
        if !closed {
            self.handle_dropped();
        }
        let end = self.ring_end();
        while let Some(p) = self.pending.pop_front() {
            let audio_end = p.audio_end.min(end);
            self.emit_final(p, audio_end);
        }
    }

    /// The next job, in utterance order. Jobs wait here until polled, so poll until
    /// `None` after every push.
    pub fn poll(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    /// Whether an utterance is open: the speaker is talking (or just paused). The
    /// gateway stops a barge-in prompt when this turns true.
    pub fn speaking(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the speaker has paused in an open utterance for at least `hush_ms`.
    pub fn paused(&self) -> bool {
        self.open.as_ref().is_some_and(|o| {
            self.frames.saturating_sub(o.last_speech_frame + 1) * FRAME_MS >= self.cfg.hush_ms
        })
    }

    /// ms of audio pushed so far.
    pub fn position_ms(&self) -> u64 {
        self.pushed_8k * 1000 / TELEPHONE_RATE as u64
    }

    /// 16 kHz samples held now.
    pub fn buffered_samples(&self) -> usize {
        self.ring.len()
    }

    /// The most 16 kHz samples this stream will ever hold, given its configuration.
    pub fn max_buffered_samples(&self) -> usize {
        self.max_buffered
    }

    fn ring_end(&self) -> u64 {
        self.ring_start + self.ring.len() as u64
    }

    fn run_frames(&mut self) {
        while self.ring_end() >= (self.frames + 1) * FRAME as u64 {
            self.process_frame();
        }
    }

    fn process_frame(&mut self) {
        let first = self.frames * FRAME as u64;
        let rel = first.saturating_sub(self.ring_start) as usize;
        self.frame.clear();
        self.frame
            .extend(self.ring.range(rel..).take(FRAME).copied());
        let label = self.vad.push(&self.frame);
        let now = self.frames;
        self.frames += 1;
        if let Some(open) = &mut self.open {
            if label.speech {
                open.speech_frames += 1;
                open.last_speech_frame = now;
            }
        }
        self.events.clear();
        self.ep.push(label, &mut self.events);
        let mut events = std::mem::take(&mut self.events);
        let closed = self.handle_events(&events);
        events.clear();
        self.events = events;
        if !closed && self.ep.open_since().is_none() {
            self.handle_dropped();
        }
        self.emit_ready_finals();
        self.maybe_speculate();
        self.maybe_presplit();
        self.maybe_partial();
        self.trim();
    }

    /// Returns whether an utterance was closed by an `End`.
    fn handle_events(&mut self, events: &[EndpointEvent]) -> bool {
        let mut closed = false;
        for (i, ev) in events.iter().enumerate() {
            match *ev {
                EndpointEvent::End(utt) => {
                    closed = true;
                    // The endpointer splits a long utterance by closing it and opening the
                    // next at the same frame; the two parts meet there, unpadded.
                    let split = matches!(
                        events.get(i + 1),
                        Some(EndpointEvent::Start { frame }) if *frame == utt.end_frame
                    );
                    self.close(utt, split);
                }
                EndpointEvent::Start { frame } => {
                    let start = frame * FRAME as u64;
                    let audio_start = start
                        .saturating_sub(ms_to_samples(self.cfg.pre_pad_ms))
                        .max(self.last_final_end);
                    self.open = Some(OpenUtt {
                        start_frame: frame,
                        // The endpointer's own: the utterance's end (and so a speculative
                        // decode's audio) must be where the endpointer will put it.
                        last_speech_frame: self
                            .ep
                            .last_speech()
                            .unwrap_or(self.frames.saturating_sub(1)),
                        // The endpointer opened on (or split into) frames it counts as speech.
                        speech_frames: self.frames.saturating_sub(frame),
                        index: None,
                        revision: 0,
                        next_partial_frame: frame + frames_for_ms(self.cfg.partial_interval_ms),
                        last_partial_frame: None,
                        speculated: None,
                        presplit: false,
                        audio_start,
                    });
                }
            }
        }
        closed
    }

    fn close(&mut self, utt: Utterance, split: bool) {
        let open = self.open.take();
        let (index, revision, audio_start) = match open {
            Some(o) => (o.index, o.revision, o.audio_start),
            None => (None, 0, self.utt_audio_start(utt.start_frame)),
        };
        let index = index.unwrap_or_else(|| self.take_index());
        let end = utt.end_frame * FRAME as u64;
        let audio_end = if split {
            end
        } else {
            end + ms_to_samples(self.post_pad_ms(utt.start_frame, utt.end_frame))
        };
        self.last_final_end = self.last_final_end.max(audio_end);
        self.pending.push_back(PendingFinal {
            index,
            revision,
            utt,
            audio_start,
            audio_end,
        });
    }

    /// The endpointer let an utterance go as too little speech. If the caller already
    /// saw partials of it, a final still closes it (its text may well be empty), so that
    /// every utterance shown gets exactly one final.
    fn handle_dropped(&mut self) {
        let Some(open) = &self.open else { return };
        if open.index.is_none() {
            self.open = None;
            return;
        }
        let utt = Utterance {
            start_frame: open.start_frame,
            end_frame: open.last_speech_frame.max(open.start_frame) + 1,
        };
        self.close(utt, false);
    }

    /// Audio kept after an utterance's last speech frame. A long utterance ends at the
    /// shorter `long_end_silence_ms`, so its post-pad shrinks by the difference: the
    /// speculative decode, which starts once the post-pad is there, keeps the same head
    /// start on the endpointer's decision (300 ms by default) instead of 100 ms.
    fn post_pad_ms(&self, start_frame: u64, end_frame: u64) -> u64 {
        let ep = &self.cfg.endpoint;
        if !ep.is_long(end_frame.saturating_sub(start_frame)) {
            return self.cfg.post_pad_ms;
        }
        let head_start = ep.end_silence_ms.saturating_sub(self.cfg.post_pad_ms);
        self.cfg
            .post_pad_ms
            .min(ep.long_end_silence_ms.saturating_sub(head_start))
    }

    fn utt_audio_start(&self, start_frame: u64) -> u64 {
        (start_frame * FRAME as u64)
            .saturating_sub(ms_to_samples(self.cfg.pre_pad_ms))
            .max(self.last_final_end)
    }

    fn take_index(&mut self) -> u64 {
        let i = self.next_utterance;
        self.next_utterance += 1;
        i
    }

    /// The open utterance's index, taken with its first job (so that indices count only
    /// utterances the caller saw); a fresh one if none is open.
    fn claim_index(&mut self) -> u64 {
        if let Some(i) = self.open.as_ref().and_then(|o| o.index) {
            return i;
        }
        let i = self.take_index();
        if let Some(open) = &mut self.open {
            open.index = Some(i);
        }
        i
    }

    fn emit_ready_finals(&mut self) {
        let processed = self.frames * FRAME as u64;
        while let Some(p) = self.pending.front() {
            if p.audio_end > processed {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let end = p.audio_end;
            self.emit_final(p, end);
        }
    }

    fn emit_final(&mut self, p: PendingFinal, audio_end: u64) {
        let audio = self.cut(p.audio_start, audio_end);
        self.jobs.push_back(Job {
            kind: JobKind::Final,
            utterance: p.index,
            revision: p.revision,
            start_ms: p.utt.start_ms(),
            end_ms: p.utt.end_ms(),
            audio,
        });
    }

    /// Trailing silence now covers the post-pad: cut what the final will be if nobody
    /// speaks before the endpointer decides.
    fn maybe_speculate(&mut self) {
        if !self.cfg.speculate || !self.pending.is_empty() {
            return;
        }
        let processed = self.frames * FRAME as u64;
        let min_speech = self.cfg.endpoint.min_speech_ms.div_ceil(FRAME_MS);
        let Some(open) = &self.open else { return };
        let end = (open.last_speech_frame + 1) * FRAME as u64;
        let post_pad = self.post_pad_ms(open.start_frame, open.last_speech_frame + 1);
        let audio_end = end + ms_to_samples(post_pad);
        if open.speculated == Some(open.last_speech_frame)
            || processed < audio_end
            || open.speech_frames < min_speech
        {
            return;
        }
        let (start_frame, audio_start, revision, last) = (
            open.start_frame,
            open.audio_start,
            open.revision,
            open.last_speech_frame,
        );
        let index = self.claim_index();
        let audio = self.cut(audio_start, audio_end);
        if let Some(open) = &mut self.open {
            open.speculated = Some(last);
        }
        // Should the speaker go on until the utterance must be split, splitting here
        // makes this decode the first part's final: a split at max length then costs
        // no decode after it.
        self.ep
            .offer_split(last + 1, audio_end.div_ceil(FRAME as u64));
        self.jobs.push_back(Job {
            kind: JobKind::Speculative,
            utterance: index,
            revision,
            start_ms: start_frame * FRAME_MS,
            end_ms: (last + 1) * FRAME_MS,
            audio,
        });
    }

    /// Speech has gone on so long without a pause that the endpointer will split it at
    /// max length: [`PRESPLIT_LEAD_MS`] before that, cut the first part where the split
    /// would fall now and decode it speculatively, and have the endpointer split there.
    /// The split then costs no decode after it, where it cost the longest decode a stream
    /// has (10 to 12 s of audio: about 550 ms on two cores alone, seconds under load).
    fn maybe_presplit(&mut self) {
        if !self.cfg.speculate || !self.pending.is_empty() {
            return;
        }
        let Some(open) = &self.open else { return };
        let max = (self.cfg.endpoint.max_utterance_ms / FRAME_MS).max(2);
        let at = max.saturating_sub(PRESPLIT_LEAD_MS / FRAME_MS);
        if self.frames.saturating_sub(open.start_frame) != at {
            return;
        }
        // A speculated pause in the second half is the cut already (offer_split).
        if open
            .speculated
            .is_some_and(|last| last + 1 >= open.start_frame + max / 2)
        {
            return;
        }
        let Some(cut) = self.ep.split_candidate() else {
            return;
        };
        let (start_frame, audio_start, revision) =
            (open.start_frame, open.audio_start, open.revision);
        let index = self.claim_index();
        let audio = self.cut(audio_start, cut * FRAME as u64);
        if let Some(open) = &mut self.open {
            open.presplit = true;
        }
        self.ep.offer_split(cut, cut);
        self.jobs.push_back(Job {
            kind: JobKind::Speculative,
            utterance: index,
            revision,
            start_ms: start_frame * FRAME_MS,
            end_ms: cut * FRAME_MS,
            audio,
        });
    }

    fn maybe_partial(&mut self) {
        // Zero turns partials off (finals only).
        if !self.pending.is_empty() || self.cfg.partial_interval_ms == 0 {
            return;
        }
        // The speaker has stopped and the final's decode is under way: a partial of
        // the same words would only compete with it. So too once the split is cut: a
        // partial would be the longest decode of the stream, shown for under 1.5 s, and
        // would shed the split's speculation if that had not started yet.
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.presplit || o.speculated == Some(o.last_speech_frame))
        {
            return;
        }
        let frames = self.frames;
        let min_speech = self.cfg.min_partial_ms.div_ceil(FRAME_MS);
        let interval = frames_for_ms(self.cfg.partial_interval_ms);
        let Some(open) = &self.open else { return };
        if frames < open.next_partial_frame || open.speech_frames < min_speech {
            return;
        }
        // Nothing said since the last partial, or the speaker has paused (the final is
        // probably on its way): skip this tick rather than decode the same words again.
        if self.paused()
            || open
                .last_partial_frame
                .is_some_and(|f| open.last_speech_frame < f)
        {
            if let Some(open) = &mut self.open {
                open.next_partial_frame = frames + interval;
            }
            return;
        }
        let (start_frame, audio_start, revision) =
            (open.start_frame, open.audio_start, open.revision);
        let index = self.claim_index();
        let audio = self.cut(audio_start, frames * FRAME as u64);
        if let Some(open) = &mut self.open {
            open.revision += 1;
            open.next_partial_frame = frames + interval;
            open.last_partial_frame = Some(frames);
        }
        self.jobs.push_back(Job {
            kind: JobKind::Partial,
            utterance: index,
            revision,
            start_ms: start_frame * FRAME_MS,
            end_ms: frames * FRAME_MS,
            audio,
        });
    }

    fn cut(&self, from: u64, to: u64) -> Arc<[f32]> {
        let from = from.max(self.ring_start);
        let to = to.min(self.ring_end()).max(from);
        let a = (from - self.ring_start) as usize;
        let b = (to - self.ring_start) as usize;
        self.ring.range(a..b).copied().collect()
    }

    /// Drops audio nothing can need any more.
    fn trim(&mut self) {
        let processed = self.frames * FRAME as u64;
        let pre_pad = ms_to_samples(self.cfg.pre_pad_ms);
        // Idle, the next onset can reach back to where a still tentative one began, and
        // its pre-pad beyond that.
        let onset = (self.cfg.endpoint.onset_reach_frames() + 1) * FRAME as u64;
        let mut keep_from = processed.saturating_sub(onset + pre_pad);
        if let Some(open) = &self.open {
            keep_from = keep_from.min(open.audio_start);
        }
        if let Some(p) = self.pending.front() {
            keep_from = keep_from.min(p.audio_start);
        }
        // The bound holds by construction; this only keeps a misconfiguration from
        // growing without limit.
        let hard = self.ring_end().saturating_sub(self.max_buffered as u64);
        let keep_from = keep_from.max(hard).min(processed);
        if keep_from > self.ring_start {
            let n = ((keep_from - self.ring_start) as usize).min(self.ring.len());
            self.ring.drain(..n);
            self.ring_start += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_16k(name: &str) -> Vec<f32> {
        let p = std::path::Path::new("/work/shared/fixtures/audio").join(name);
        let p = if p.exists() {
            p
        } else {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/audio/demo_zh_aishell1.wav")
        };
        crate::audio::decode_file(&p).unwrap().to_whisper_rate()
    }

    /// A real speech clip at 8 kHz, trimmed to its speech (first to last frame above
    /// -40 dBFS), so "where speech was placed" is known to the frame.
    fn speech_8k(name: &str) -> Vec<i16> {
        let x = fixture_16k(name);
        let loud: Vec<usize> = x
            .chunks(FRAME)
            .enumerate()
            .filter(|(_, f)| crate::vad::frame_db(f) > -40.0)
            .map(|(i, _)| i)
            .collect();
        let (a, b) = (loud[0] * FRAME, (loud[loud.len() - 1] + 1) * FRAME);
        let narrow = crate::resample::resample(&x[a..b.min(x.len())], 16_000, 8_000);
        narrow
            .iter()
            .map(|&s| crate::audio::f32_to_i16(s))
            .collect()
    }

    fn silence(ms: u64) -> Vec<i16> {
        vec![0; (ms * 8) as usize]
    }

    fn run(stream: &mut Stream, pcm: &[i16], chunk: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        for c in pcm.chunks(chunk) {
            stream.push_8k(c);
            while let Some(j) = stream.poll() {
                jobs.push(j);
            }
        }
        stream.finish();
        while let Some(j) = stream.poll() {
            jobs.push(j);
        }
        jobs
    }

    fn finals(jobs: &[Job]) -> Vec<&Job> {
        jobs.iter().filter(|j| j.kind == JobKind::Final).collect()
    }

    /// Three utterances (two clips) with the ms where each one's speech starts and ends.
    fn call() -> (Vec<i16>, Vec<(u64, u64)>) {
        let a = speech_8k("zh_aishell1_S0724W0121.wav");
        let b = speech_8k("en_jfk.wav");
        let mut pcm = silence(1500);
        let mut placed = Vec::new();
        for clip in [&a, &b, &a] {
            let start = pcm.len() as u64 / 8;
            pcm.extend(clip.iter());
            placed.push((start, pcm.len() as u64 / 8));
            pcm.extend(silence(2500));
        }
        (pcm, placed)
    }

    #[test]
    fn every_final_that_ends_in_silence_was_speculated_with_the_same_audio() {
        let (pcm, _) = call();
        let mut s = Stream::new(StreamConfig::default());
        let jobs = run(&mut s, &pcm, 160);
        let finals = finals(&jobs);
        assert!(!finals.is_empty());
        for f in &finals {
            let spec = jobs
                .iter()
                .rfind(|j| j.kind == JobKind::Speculative && j.utterance == f.utterance)
                .unwrap_or_else(|| panic!("no speculative job for {f:?}"));
            assert_eq!(
                (spec.start_ms, spec.end_ms, &spec.audio),
                (f.start_ms, f.end_ms, &f.audio),
                "the last speculation of utterance {} is not its final",
                f.utterance
            );
        }
        // The speculation comes a post-pad after the speech, before the endpointer's
        // end-silence has passed: it is queued before its final.
        for (i, j) in jobs.iter().enumerate() {
            if j.kind == JobKind::Final {
                assert!(jobs[..i]
                    .iter()
                    .any(|p| p.kind == JobKind::Speculative && p.utterance == j.utterance));
            }
        }
        let off = Stream::new(StreamConfig {
            speculate: false,
            ..StreamConfig::default()
        });
        let mut off = off;
        let jobs = run(&mut off, &pcm, 160);
        assert!(jobs.iter().all(|j| j.kind != JobKind::Speculative));
    }

    #[test]
    fn a_long_utterance_keeps_the_speculation_head_start() {
        // Past long_after a 400 ms pause ends an utterance; with the normal 300 ms
        // post-pad the speculative decode would start only 100 ms before the final.
        let cfg = StreamConfig {
            endpoint: EndpointConfig {
                long_after_ms: 2000,
                long_end_silence_ms: 400,
                ..StreamConfig::default().endpoint
            },
            ..StreamConfig::default()
        };
        let (pcm, _) = call();
        let mut s = Stream::new(cfg.clone());
        let mut jobs = Vec::new();
        for c in pcm.chunks(160) {
            s.push_8k(c);
            while let Some(j) = s.poll() {
                jobs.push((s.position_ms(), j));
            }
        }
        let mut long = 0;
        for (at, f) in jobs.iter().filter(|(_, j)| j.kind == JobKind::Final) {
            let Some((spec_at, spec)) = jobs
                .iter()
                .rfind(|(_, j)| j.kind == JobKind::Speculative && j.utterance == f.utterance)
            else {
                continue;
            };
            assert_eq!(spec.audio, f.audio, "{f:?}");
            let post_pad = f.audio.len() as u64 / 16 - (f.end_ms - f.start_ms);
            if f.end_ms - f.start_ms >= 2000 {
                long += 1;
                // The pre-pad can be cut short by the previous final, the post-pad not.
                assert!(post_pad <= 100 + cfg.pre_pad_ms, "{f:?}");
                assert!(
                    at - spec_at >= 280,
                    "speculated at {spec_at}, final at {at}"
                );
            } else {
                assert!(
                    at - spec_at >= 280,
                    "speculated at {spec_at}, final at {at}"
                );
            }
        }
        assert!(long >= 2, "{jobs:?}");
    }

    #[test]
    fn an_utterance_split_at_max_length_is_cut_where_it_was_speculated() {
        // Past long_after a pause of the (100 ms) post-pad is speculated; the speaker
        // goes on, and at max length the utterance is split at the last such cut, so
        // the speculative decode is the first part's final.
        let endpoint = EndpointConfig {
            long_after_ms: 2000,
            long_end_silence_ms: 400,
            max_utterance_ms: 5000,
            ..StreamConfig::default().endpoint
        };
        let a = speech_8k("zh_aishell1_S0724W0121.wav");
        let mut pcm = silence(1500);
        pcm.extend(a.iter());
        pcm.extend(silence(250));
        pcm.extend(a.iter());
        pcm.extend(silence(2500));
        // Without a pause: one clip into the next, where even the 300 ms post-pad of
        // an utterance short of long_after finds no pause to speculate on. The split is
        // speculated 1.5 s before max length, at the quietest frame up to then.
        let mut joined = silence(1500);
        joined.extend(a.iter());
        joined.extend(a.iter());
        joined.extend(silence(2500));
        let unpaused = EndpointConfig {
            long_after_ms: 0,
            ..endpoint.clone()
        };
        for (pcm, endpoint, speculate, presplit) in [
            (&pcm, &endpoint, true, false),
            (&pcm, &endpoint, false, false),
            (&joined, &unpaused, true, true),
        ] {
            let mut s = Stream::new(StreamConfig {
                endpoint: endpoint.clone(),
                speculate,
                ..StreamConfig::default()
            });
            let jobs = run(&mut s, pcm, 160);
            let finals = finals(&jobs);
            let first = finals.first().expect("a final");
            // Split, not ended by a pause: the second clip has not ended by 5 s.
            assert!(finals.len() >= 2, "{finals:?}");
            assert!(first.end_ms - first.start_ms > 2500, "{first:?}");
            let spec = jobs
                .iter()
                .rfind(|j| j.kind == JobKind::Speculative && j.utterance == first.utterance);
            match spec {
                Some(spec) => {
                    assert!(speculate);
                    assert_eq!(
                        (spec.start_ms, spec.end_ms, spec.audio.len()),
                        (first.start_ms, first.end_ms, first.audio.len()),
                        "the split is not the last speculated cut"
                    );
                    assert!(spec.audio == first.audio);
                    // Once the split is cut, partials of it stop until its final.
                    let after = jobs.iter().skip_while(|j| !std::ptr::eq(*j, spec));
                    let partials = after
                        .take_while(|j| j.kind != JobKind::Final)
                        .filter(|j| j.kind == JobKind::Partial && j.utterance == first.utterance)
                        .count();
                    assert!(
                        !presplit || partials == 0,
                        "{partials} partials after the cut"
                    );
                }
                None => assert!(!speculate, "no speculation of {first:?}"),
            }
        }
    }

    #[test]
    fn the_part_after_a_split_is_speculated_with_its_final_audio() {
        // The speaker stops just before max length: the split's second part is all
        // speech already said, and ends in the silence after it.
        let endpoint = EndpointConfig {
            max_utterance_ms: 5000,
            ..StreamConfig::default().endpoint
        };
        let a = speech_8k("zh_aishell1_S0724W0121.wav");
        for speech_ms in [4900usize, 4950, 5000] {
            let mut pcm = silence(1500);
            pcm.extend(a.iter());
            pcm.extend(a.iter().take(speech_ms * 8 - a.len()));
            pcm.extend(silence(2500));
            let mut s = Stream::new(StreamConfig {
                endpoint: endpoint.clone(),
                ..StreamConfig::default()
            });
            let jobs = run(&mut s, &pcm, 160);
            let finals = finals(&jobs);
            assert_eq!(finals.len(), 2, "{speech_ms}: {finals:?}");
            for f in finals {
                let spec = jobs
                    .iter()
                    .rfind(|j| j.kind == JobKind::Speculative && j.utterance == f.utterance)
                    .unwrap_or_else(|| panic!("{speech_ms}: no speculation of {f:?}"));
                assert_eq!(
                    (spec.start_ms, spec.end_ms, spec.audio.len()),
                    (f.start_ms, f.end_ms, f.audio.len()),
                    "{speech_ms}: the last speculation of {f:?} is not its final"
                );
            }
        }
    }

    #[test]
    fn one_final_per_utterance_at_the_right_place() {
        let (pcm, placed) = call();
        let mut s = Stream::new(StreamConfig::default());
        let jobs = run(&mut s, &pcm, 160);
        let f = finals(&jobs);
        // jfk has pauses over 600 ms inside it, so it may come out as several utterances;
        // each placed clip must start one final and end one.
        for (start, end) in &placed {
            let inside: Vec<&&Job> = f
                .iter()
                .filter(|j| j.start_ms + 200 >= *start && j.end_ms <= end + 200)
                .collect();
            assert!(!inside.is_empty(), "no final in {start}..{end}: {f:?}");
            assert!(
                inside.iter().any(|j| j.start_ms.abs_diff(*start) <= 200),
                "start {start}: {f:?}"
            );
            assert!(
                inside.iter().any(|j| j.end_ms.abs_diff(*end) <= 200),
                "end {end}: {f:?}"
            );
        }
        // Nothing outside the placed speech.
        for j in &f {
            assert!(
                placed
                    .iter()
                    .any(|(a, b)| j.start_ms + 200 >= *a && j.end_ms <= b + 200),
                "{j:?} outside {placed:?}"
            );
        }
        // Utterance indices count up from 0 in order, one final each.
        for (i, j) in f.iter().enumerate() {
            assert_eq!(j.utterance, i as u64, "{f:?}");
        }
        // The aishell clip has no pause long enough to split it.
        assert!(
            f.iter()
                .filter(|j| j.start_ms.abs_diff(placed[0].0) <= 200)
                .all(|j| j.end_ms.abs_diff(placed[0].1) <= 200),
            "{f:?}"
        );
        // Padded audio: pre- and post-pad around the utterance.
        let first = f[0];
        let pads = StreamConfig::default();
        let expect = (first.end_ms - first.start_ms + pads.pre_pad_ms + pads.post_pad_ms) * 16;
        assert_eq!(first.audio.len() as u64, expect, "{first:?}");
    }

    #[test]
    fn a_pause_is_reported_and_starts_no_partial() {
        let (pcm, _) = call();
        let mut s = Stream::new(StreamConfig::default());
        let mut was_paused = false;
        let mut pauses = 0;
        // 16 ms chunks: one VAD frame per push, so `paused()` after a push is what the
        // stream saw when it cut that push's jobs.
        for c in pcm.chunks(128) {
            s.push_8k(c);
            while let Some(j) = s.poll() {
                // No partial is cut while the speaker is paused.
                assert!(!(j.kind == JobKind::Partial && s.paused()), "{j:?}");
            }
            if s.paused() && !was_paused {
                pauses += 1;
                // Paused means an utterance is open and its speech stopped >= hush_ms ago.
                assert!(s.speaking());
            }
            was_paused = s.paused();
        }
        // At least one per clip: each ends in 2.5 s of silence.
        assert!(pauses >= 3, "{pauses}");
    }

    #[test]
    fn partials_come_every_interval_while_open() {
        let (pcm, _) = call();
        let mut s = Stream::new(StreamConfig::default());
        let jobs = run(&mut s, &pcm, 160);
        let partials: Vec<&Job> = jobs.iter().filter(|j| j.kind == JobKind::Partial).collect();
        assert!(!partials.is_empty());
        for f in finals(&jobs) {
            let mine: Vec<&&Job> = partials
                .iter()
                .filter(|p| p.utterance == f.utterance)
                .collect();
            for (i, p) in mine.iter().enumerate() {
                assert_eq!(p.revision, i as u32, "{mine:?}");
                assert_eq!(p.start_ms, f.start_ms);
                assert!(p.end_ms <= f.end_ms + 700, "{p:?} {f:?}");
                // Pre-pad plus the audio so far.
                assert_eq!(p.audio.len() as u64, (p.end_ms - p.start_ms + 200) * 16);
            }
            // One interval (63 frames) apart, or whole intervals when a tick was skipped
            // for want of new speech.
            for w in mine.windows(2) {
                let gap = w[1].end_ms - w[0].end_ms;
                assert!(gap >= 1000 && gap % 1008 == 0, "{mine:?}");
            }
            assert_eq!(f.revision as usize, mine.len());
            let dur = f.end_ms - f.start_ms;
            if dur >= 1600 {
                assert!(
                    mine.len() as u64 >= dur / 1000 - 1,
                    "{dur} ms, {} partials",
                    mine.len()
                );
            }
            // Every partial of an utterance comes before its final.
            let fpos = jobs.iter().position(|j| std::ptr::eq(j, f)).unwrap();
            for p in &mine {
                let ppos = jobs.iter().position(|j| std::ptr::eq(j, **p)).unwrap();
                assert!(ppos < fpos);
            }
        }
    }

    #[test]
    fn silence_and_line_noise_give_no_jobs() {
        let mut s = Stream::new(StreamConfig::default());
        assert!(run(&mut s, &silence(60_000), 160).is_empty());

        // -50 dBFS white noise (rms) plus a 50 Hz hum at the same level.
        let mut seed = 12345u64;
        let amp = 10f32.powf(-50.0 / 20.0) * 3f32.sqrt();
        let hum = 10f32.powf(-50.0 / 20.0) * 2f32.sqrt();
        let pcm: Vec<i16> = (0..8000 * 60)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 2.0 * amp;
                let h = hum * (2.0 * std::f32::consts::PI * 50.0 * i as f32 / 8000.0).sin();
                crate::audio::f32_to_i16(n + h)
            })
            .collect();
        let mut s = Stream::new(StreamConfig::default());
        let jobs = run(&mut s, &pcm, 160);
        assert!(jobs.is_empty(), "{jobs:?}");
    }

    #[test]
    fn buffer_stays_bounded_over_two_hours() {
        let mut s = Stream::new(StreamConfig::default());
        let minute = silence(60_000);
        let mut most = 0;
        for _ in 0..120 {
            for c in minute.chunks(480) {
                s.push_8k(c);
                most = most.max(s.buffered_samples());
            }
            assert!(s.poll().is_none());
        }
        assert_eq!(s.position_ms(), 2 * 3600 * 1000);
        // Idle: only the pre-pad, the onset and a block of input.
        assert!(most < 16 * 1000, "{most}");
    }

    #[test]
    fn buffer_stays_bounded_through_speech() {
        let cfg = StreamConfig {
            endpoint: EndpointConfig {
                max_utterance_ms: 3000,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut s = Stream::new(cfg);
        let bound = s.max_buffered_samples();
        let clip = speech_8k("en_jfk.wav");
        let mut most = 0;
        let mut finals = 0;
        for _ in 0..5 {
            for c in clip.chunks(160) {
                s.push_8k(c);
                most = most.max(s.buffered_samples());
                while let Some(j) = s.poll() {
                    finals += (j.kind == JobKind::Final) as usize;
                    assert!(j.end_ms - j.start_ms <= 3000, "{j:?}");
                }
            }
        }
        assert!(most <= bound, "{most} > {bound}");
        assert!(finals >= 5);
    }

    #[test]
    fn long_utterance_split_gives_two_finals_that_meet() {
        let cfg = StreamConfig {
            endpoint: EndpointConfig {
                max_utterance_ms: 6000,
                ..Default::default()
            },
            ..Default::default()
        };
        // This reading runs past 6 s without a 600 ms pause.
        let clip = speech_8k("en_librivox_sas_0870.wav");
        let mut pcm = silence(1000);
        pcm.extend(&clip);
        pcm.extend(silence(2000));
        let mut s = Stream::new(cfg);
        let jobs = run(&mut s, &pcm, 160);
        let f = finals(&jobs);
        assert!(f.len() >= 2, "{f:?}");
        assert_eq!(f[0].end_ms, f[1].start_ms, "{f:?}");
        // The first part has its pre-pad only; the second starts at the split.
        assert_eq!(
            f[0].audio.len() as u64,
            (f[0].end_ms - f[0].start_ms + 200) * 16
        );
        assert!(f[1].audio.len() as u64 >= (f[1].end_ms - f[1].start_ms) * 16);
        let post_pad = StreamConfig::default().post_pad_ms;
        assert!(f[1].audio.len() as u64 <= (f[1].end_ms - f[1].start_ms + post_pad) * 16);
    }

    #[test]
    fn chunk_size_does_not_change_the_jobs() {
        let (pcm, _) = call();
        let one = run(&mut Stream::new(StreamConfig::default()), &pcm, 1);
        let many = run(&mut Stream::new(StreamConfig::default()), &pcm, 480);
        let odd = run(&mut Stream::new(StreamConfig::default()), &pcm, 4801);
        assert!(!one.is_empty());
        assert!(one == many, "{one:?}\n{many:?}");
        assert!(one == odd, "{one:?}\n{odd:?}");
    }

    #[test]
    fn an_utterance_shown_in_partials_always_gets_a_final() {
        // The endpointer drops every utterance as too little speech here; the one that
        // already showed partials must still be closed by a final, the short one that
        // showed none leaves no trace.
        let cfg = StreamConfig {
            endpoint: EndpointConfig {
                min_speech_ms: 60_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let clip = speech_8k("zh_aishell1_S0724W0121.wav");
        let mut pcm = silence(1000);
        pcm.extend(&clip);
        pcm.extend(silence(2000));
        pcm.extend(&clip[..2400]);
        pcm.extend(silence(2000));
        let jobs = run(&mut Stream::new(cfg), &pcm, 160);
        let f = finals(&jobs);
        assert_eq!(f.len(), 1, "{jobs:?}");
        assert!(jobs.iter().all(|j| j.utterance == 0), "{jobs:?}");
        let partials = jobs.len() - 1;
        assert!(partials >= 2, "{jobs:?}");
        assert_eq!(f[0].revision as usize, partials);
        let end = 1000 + clip.len() as u64 / 8;
        assert!(f[0].end_ms.abs_diff(end) <= 200, "{f:?}");
    }

    #[test]
    fn finish_closes_an_open_utterance() {
        let clip = speech_8k("zh_aishell1_S0724W0121.wav");
        let mut pcm = silence(500);
        pcm.extend(&clip);
        let mut s = Stream::new(StreamConfig::default());
        let jobs = run(&mut s, &pcm, 160);
        let f = finals(&jobs);
        assert_eq!(f.len(), 1, "{f:?}");
        let end = pcm.len() as u64 / 8;
        assert!(f[0].end_ms.abs_diff(end) <= 200, "{f:?}");
        // Post-pad is what the call had: nothing after the last sample.
        assert!(f[0].audio.len() as u64 <= (end - f[0].start_ms + 200) * 16 + 16);
        // Pushing after finish changes nothing.
        s.push_8k(&clip);
        assert!(s.poll().is_none());
    }
}
