//! Outgoing RTP for every call, sent from one thread.
//!
//! A tokio timer per call fires on the runtime's 1 ms wheel and then waits
//! behind whatever else the two workers are doing (decoding, DTMF detection,
//! recording, signalling): at 500 calls that put the p99 send jitter near
//! 4 ms. Here one OS thread owns the send schedule of all calls, sleeps on a
//! high-resolution timeout until the earliest frame is due and sends every
//! frame due by then. It does only encode-and-send; the call's task keeps
//! everything else and picks the sent PCM up later for recording.
//!
//! The call task and the pacer share each call's [`Outbound`] behind a
//! mutex that is held for microseconds on either side. The schedule itself
//! ([`Schedule`]) is sans-IO; [`Pacer`] is its driver.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::media::player::{Player, PlayerEvent};
use crate::rtp::packet::{self, RtpHeader};
use crate::rtp::rtcp::SenderStats;

/// Sent frames kept for a call task that has fallen behind (5 s at 20 ms):
/// past that the oldest are dropped from the recording, never from the wire.
const MAX_PENDING_FRAMES: usize = 250;

/// One call's sending side: the prompt player and what a packet needs.
pub struct Outbound {
    pub player: Player,
    pub codec: Codec,
    /// Where packets go (the latched or signalled address); `None`: nowhere yet.
    pub to: Option<SocketAddr>,
    pub sender: SenderStats,
    /// Sends the socket refused (buffer full): counted, not retried.
    pub send_errors: u64,
    /// Sent frames not yet taken by the call task: `(slot, samples)` and their PCM.
    frames: VecDeque<(u64, usize)>,
    pcm: VecDeque<i16>,
    /// Frames dropped from `frames` because the task did not take them.
    pub unrecorded: u64,
    events: Vec<PlayerEvent>,
    payload: Vec<u8>,
    out: Vec<u8>,
}

/// Sent frames handed to the call task.
#[derive(Debug, Default)]
pub struct SentFrames {
    /// `(slot, samples)` in send order; the samples are consecutive in `pcm`.
    pub frames: Vec<(u64, usize)>,
    pub pcm: Vec<i16>,
    pub events: Vec<PlayerEvent>,
}

impl SentFrames {
    pub fn clear(&mut self) {
        self.frames.clear();
        self.pcm.clear();
        self.events.clear();
    }

    /// Each frame with its PCM.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[i16])> {
        let mut at = 0;
        self.frames.iter().map(move |&(slot, n)| {
            let pcm = self.pcm.get(at..at + n).unwrap_or_default();
            at += n;
            (slot, pcm)
        })
    }
}

impl Outbound {
    pub fn new(player: Player, codec: Codec) -> Self {
        let frame = player.samples_per_frame();
        Outbound {
            player,
            codec,
            to: None,
            sender: SenderStats::default(),
            send_errors: 0,
            frames: VecDeque::with_capacity(8),
            pcm: VecDeque::with_capacity(8 * frame),
            unrecorded: 0,
            events: Vec::new(),
            payload: Vec::with_capacity(frame),
            out: Vec::with_capacity(frame + 12),
        }
    }

    /// Sends every frame due at `now` through `send` (which returns whether
    /// the datagram went out).
    pub fn send_due(&mut self, now: Instant, mut send: impl FnMut(&[u8], SocketAddr) -> bool) {
        while let Some(f) = self.player.poll(now) {
            if self.frames.len() >= MAX_PENDING_FRAMES {
                if let Some((_, n)) = self.frames.pop_front() {
                    self.pcm.drain(..n.min(self.pcm.len()));
                    self.unrecorded += 1;
                }
            }
            self.frames.push_back((f.slot, f.pcm.len()));
            self.pcm.extend(f.pcm.iter().copied());
            self.payload.clear();
            self.codec.encode(f.pcm, &mut self.payload);
            let mut h = RtpHeader::new(self.codec.static_pt(), f.seq, f.ts, f.ssrc);
            h.marker = f.marker;
            self.out.clear();
            packet::write(&h, &self.payload, &mut self.out);
            if let Some(to) = self.to {
                if send(&self.out, to) {
                    self.sender.on_sent(self.payload.len());
                } else {
                    self.send_errors += 1;
                }
            }
        }
        while let Some(ev) = self.player.poll_event() {
            self.events.push(ev);
        }
    }

    /// Moves the sent frames and player events into `into` (cleared first).
    pub fn take_sent(&mut self, into: &mut SentFrames) {
        into.clear();
        into.frames.extend(self.frames.drain(..));
        into.pcm.extend(self.pcm.drain(..));
        into.events.append(&mut self.events);
        while let Some(ev) = self.player.poll_event() {
            into.events.push(ev);
        }
    }
}

pub type SharedOutbound = Arc<Mutex<Outbound>>;

/// Locks a call's outbound side. A panic while it was held cannot leave it
/// half-updated in a way that matters more than losing the call's audio, so
/// a poisoned lock is used as it is.
pub fn lock(o: &Mutex<Outbound>) -> MutexGuard<'_, Outbound> {
    o.lock().unwrap_or_else(|e| e.into_inner())
}

/// When each call next has a frame due, earliest first (sans-IO).
#[derive(Debug, Default)]
pub struct Schedule {
    due: HashMap<u64, Instant>,
    /// May hold stale entries (a call rescheduled or removed): they are
    /// skipped when they come up and compacted when they pile up.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Schedule {
    /// `Some(at)`: call `key` next wants to send at `at`; `None`: not at all.
    pub fn set(&mut self, key: u64, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.due.insert(key, at) != Some(at) {
                    self.heap.push(Reverse((at, key)));
                }
            }
            None => {
                self.due.remove(&key);
            }
        }
        if self.heap.len() > 4 * self.due.len() + 64 {
            self.heap = self.due.iter().map(|(&k, &t)| Reverse((t, k))).collect();
        }
    }

    pub fn remove(&mut self, key: u64) {
        self.set(key, None);
    }

    /// The earliest due time.
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if self.due.get(&key) == Some(&at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// A call due at or before `now`; it is unscheduled until `set` again.
    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse((_, key)) = self.heap.pop()?;
        self.due.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

enum Msg {
    Add {
        key: u64,
        out: SharedOutbound,
        socket: UdpSocket,
    },
    /// The call changed its player (play, barge-in, hold): look again.
    Wake(u64),
    Remove(u64),
}

/// The sending thread. Dropping every [`PacerHandle`] ends it.
pub struct Pacer {
    tx: mpsc::Sender<Msg>,
}

/// How a call task talks to the pacer. Never blocks.
#[derive(Clone)]
pub struct PacerHandle {
    tx: mpsc::Sender<Msg>,
}

impl Pacer {
    /// `realtime`: ask the OS for a real-time priority (`SCHED_FIFO`) for the
    /// thread, so that its wake-ups do not queue behind other work for a
    /// scheduler slice. Needs CAP_SYS_NICE (root, or `AmbientCapabilities=`
    /// in the unit); without it the thread runs at normal priority.
    pub fn spawn(realtime: bool) -> std::io::Result<Pacer> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("rtp-pacer".into())
            .spawn(move || {
                if realtime {
                    match set_realtime() {
                        Ok(()) => tracing::info!("rtp pacer runs at real-time priority"),
                        Err(e) => tracing::info!(error = %e, "rtp pacer runs at normal priority"),
                    }
                }
                run(rx)
            })?;
        Ok(Pacer { tx })
    }

    pub fn handle(&self) -> PacerHandle {
        PacerHandle {
            tx: self.tx.clone(),
        }
    }
}

impl PacerHandle {
    /// Starts sending for a call. `socket` is a clone of the call's RTP socket.
    pub fn add(&self, key: u64, out: SharedOutbound, socket: UdpSocket) {
        let _ = self.tx.send(Msg::Add { key, out, socket });
    }

    pub fn wake(&self, key: u64) {
        let _ = self.tx.send(Msg::Wake(key));
    }

    /// Stops sending for a call; its socket clone is closed by the pacer.
    pub fn remove(&self, key: u64) {
        let _ = self.tx.send(Msg::Remove(key));
    }
}

/// Low among real-time priorities (1-99): above every normal thread, below
/// anything an administrator set up as real-time on purpose.
const RT_PRIORITY: i32 = 10;

#[cfg(target_os = "linux")]
fn set_realtime() -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: RT_PRIORITY,
    };
    // SAFETY: sets the calling thread's own policy; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime() -> std::io::Result<()> {
    Err(std::io::Error::other(
        "real-time priority is only set on Linux",
    ))
}

struct Call {
    out: SharedOutbound,
    socket: UdpSocket,
}

/// Longest sleep with nothing scheduled; messages wake the thread anyway.
const IDLE: Duration = Duration::from_secs(1);

fn run(rx: mpsc::Receiver<Msg>) {
    let mut calls: HashMap<u64, Call> = HashMap::new();
    let mut schedule = Schedule::default();
    loop {
        let wait = schedule
            .next_due()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(IDLE);
        let first = if wait.is_zero() {
            rx.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
            })
        } else {
            rx.recv_timeout(wait)
        };
        match first {
            Ok(msg) => {
                on_msg(msg, &mut calls, &mut schedule);
                while let Ok(msg) = rx.try_recv() {
                    on_msg(msg, &mut calls, &mut schedule);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(key) = schedule.pop_due(now) {
            let Some(call) = calls.get(&key) else {
                continue;
            };
            let next = {
                let mut o = lock(&call.out);
                o.send_due(now, |bytes, to| call.socket.send_to(bytes, to).is_ok());
                o.player.next_wake()
            };
            schedule.set(key, next);
        }
    }
}

fn on_msg(msg: Msg, calls: &mut HashMap<u64, Call>, schedule: &mut Schedule) {
    match msg {
        Msg::Add { key, out, socket } => {
            let next = lock(&out).player.next_wake();
            calls.insert(key, Call { out, socket });
            schedule.set(key, next);
        }
        Msg::Wake(key) => {
            if let Some(call) = calls.get(&key) {
                schedule.set(key, lock(&call.out).player.next_wake());
            }
        }
        Msg::Remove(key) => {
            calls.remove(&key);
            schedule.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::player::{PlayOptions, PlayerConfig};
    use crate::media::prompt_cache::Pcm;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn schedule_pops_in_due_order_and_skips_stale_entries() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set(1, Some(ms(t0, 20)));
        s.set(2, Some(ms(t0, 5)));
        s.set(3, Some(ms(t0, 10)));
        s.set(3, Some(ms(t0, 30))); // rescheduled: the 10 ms entry is stale
        s.remove(2);
        assert_eq!(s.next_due(), Some(ms(t0, 20)));
        assert_eq!(s.pop_due(ms(t0, 19)), None);
        assert_eq!(s.pop_due(ms(t0, 25)), Some(1));
        assert_eq!(s.pop_due(ms(t0, 25)), None);
        assert_eq!(s.pop_due(ms(t0, 30)), Some(3));
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn schedule_heap_stays_bounded_under_constant_rescheduling() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        for i in 0..100_000u64 {
            s.set(i % 10, Some(ms(t0, i)));
        }
        assert_eq!(s.len(), 10);
        assert!(s.heap.len() <= 4 * 10 + 65, "heap {}", s.heap.len());
    }

    fn outbound(t0: Instant) -> Outbound {
        let player = Player::new(PlayerConfig::default(), 1, t0).unwrap();
        Outbound::new(player, Codec::Pcmu)
    }

    #[test]
    fn sends_due_frames_and_keeps_them_for_the_recording() {
        let t0 = Instant::now();
        let mut o = outbound(t0);
        o.to = Some("127.0.0.1:4000".parse().unwrap());
        o.player
            .play(Pcm::from(vec![100i16; 480]), PlayOptions { barge_in: true });
        let mut sent = Vec::new();
        o.send_due(ms(t0, 45), |b, _| {
            sent.push(b.to_vec());
            true
        });
        assert_eq!(sent.len(), 3, "slots 0, 1 and 2 are due at 45 ms");
        assert!(sent.iter().all(|p| p.len() == 12 + 160));
        assert_eq!(o.sender.packets, 3);
        let mut taken = SentFrames::default();
        o.take_sent(&mut taken);
        let slots: Vec<u64> = taken.iter().map(|(s, _)| s).collect();
        assert_eq!(slots, vec![0, 1, 2]);
        assert!(taken.iter().all(|(_, pcm)| pcm == [100i16; 160]));
        assert_eq!(taken.events.len(), 1, "the prompt finished");
    }

    #[test]
    fn a_task_that_never_takes_frames_costs_bounded_memory() {
        let t0 = Instant::now();
        let mut o = outbound(t0);
        o.send_due(ms(t0, 60_000), |_, _| true); // one late poll: frames skipped
        for i in 0..3000 {
            o.send_due(ms(t0, 60_000 + 20 * i), |_, _| true);
        }
        assert!(o.frames.len() <= MAX_PENDING_FRAMES);
        assert!(o.pcm.len() <= MAX_PENDING_FRAMES * 160);
        assert!(o.unrecorded > 0);
        assert_eq!(
            o.sender.packets, 0,
            "no destination yet: nothing counted as sent"
        );
    }

    #[test]
    fn pacer_thread_sends_at_twenty_ms_intervals() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pacer = Pacer::spawn(false).unwrap();
        let h = pacer.handle();
        let mut o = outbound(Instant::now());
        o.to = Some(rx.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(o));
        h.add(7, shared.clone(), tx);
        let mut buf = [0u8; 512];
        let mut arrivals = Vec::new();
        for _ in 0..10 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(n, 172);
            arrivals.push(Instant::now());
        }
        h.remove(7);
        let span = arrivals[9] - arrivals[0];
        // Nine intervals of 20 ms; generous bounds for a loaded test machine.
        assert!(span >= Duration::from_millis(150), "{span:?}");
        assert!(span <= Duration::from_millis(400), "{span:?}");
    }
}
