//! Jitter buffer tests on synthetic time: arrivals at given milliseconds, pops on a
//! 20 ms tick at 10, 30, 50, ... ms (half a frame out of phase with the sender).

use super::*;

const SSRC: u32 = 0x5eed;
const FRAME: u32 = 160;

#[derive(Debug, Clone, Copy)]
struct Arrival {
    at_ms: u64,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
}

fn pkt(at_ms: u64, seq: u16, ts: u32) -> Arrival {
    Arrival {
        at_ms,
        ssrc: SSRC,
        seq,
        ts,
        marker: false,
    }
}

/// A steady stream: packet i sent at i*20 ms, arriving `delay(i)` ms later.
fn stream(seq0: u16, ts0: u32, n: u32, delay: impl Fn(u32) -> u64) -> Vec<Arrival> {
    (0..n)
        .map(|i| {
            pkt(
                u64::from(i) * 20 + delay(i),
                seq0.wrapping_add(i as u16),
                ts0.wrapping_add(i * FRAME),
            )
        })
        .collect()
}

type Out = Vec<(u64, Option<Playout<u32>>)>;

struct Sim {
    jb: JitterBuffer<u32>,
    t0: Instant,
    pushes: Vec<Push>,
    /// Next pop time: runs continue where the last one stopped.
    tick: u64,
}

impl Sim {
    fn new() -> Self {
        Sim::with(JitterConfig::default())
    }

    fn with(cfg: JitterConfig) -> Self {
        Sim {
            jb: JitterBuffer::new(cfg),
            t0: Instant::now(),
            pushes: Vec::new(),
            tick: 10,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds arrivals (any order; sorted by time, stable) and pops on the tick until
    /// `end_ms`. The payload is the packet's position in `arrivals`' sequence numbers.
    fn run(&mut self, mut arrivals: Vec<Arrival>, end_ms: u64) -> Out {
        arrivals.sort_by_key(|a| a.at_ms);
        let mut out = Vec::new();
        let mut next = arrivals.into_iter().peekable();
        while self.tick <= end_ms {
            let tick = self.tick;
            while let Some(a) = next.next_if(|a| a.at_ms <= tick) {
                let p = self.jb.push(
                    a.ssrc,
                    a.seq,
                    a.ts,
                    a.marker,
                    u32::from(a.seq),
                    self.at(a.at_ms),
                );
                self.pushes.push(p);
            }
            out.push((tick, self.jb.pop(self.at(tick))));
            self.tick += 20;
        }
        out
    }
}

fn frames(out: &Out) -> Vec<u32> {
    out.iter()
        .filter_map(|(_, p)| match p {
            Some(Playout::Frame { payload, .. }) => Some(*payload),
            _ => None,
        })
        .collect()
}

/// Lost slots inside the stream (before its last frame; after it the buffer conceals a
/// few frames as the stream ends, which every test would otherwise have to count).
fn losts(out: &Out) -> Vec<u32> {
    let end = out
        .iter()
        .rposition(|(_, p)| matches!(p, Some(Playout::Frame { .. })))
        .unwrap_or(0);
    out[..end]
        .iter()
        .filter_map(|(_, p)| match p {
            Some(Playout::Lost { ts }) => Some(*ts),
            _ => None,
        })
        .collect()
}

/// Everything played in order: frame timestamps and lost timestamps together.
fn timeline(out: &Out) -> Vec<(char, u32)> {
    out.iter()
        .filter_map(|(_, p)| match p {
            Some(Playout::Frame { ts, .. }) => Some(('F', *ts)),
            Some(Playout::Lost { ts }) => Some(('L', *ts)),
            None => None,
        })
        .collect()
}

fn first_frame_tick(out: &Out) -> u64 {
    out.iter()
        .find(|(_, p)| matches!(p, Some(Playout::Frame { .. })))
        .map(|(t, _)| *t)
        .unwrap()
}

#[test]
fn in_order_stream_plays_after_initial_delay() {
    let mut s = Sim::new();
    let out = s.run(stream(100, 8000, 50, |_| 5), 1100);
    assert_eq!(frames(&out), (100..150).collect::<Vec<_>>());
    // first packet arrives at 5 ms, initial delay 60 ms: first frame at the 70 ms tick
    assert_eq!(first_frame_tick(&out), 70);
    let st = s.jb.stats();
    assert_eq!(
        (st.played, st.lost, st.late, st.duplicate, st.reordered),
        (50, 0, 0, 0, 0)
    );
    assert_eq!(st.talkspurts, 1);
    // consecutive timestamps, no gaps until the stream ends
    let tl = timeline(&out);
    for w in tl.windows(2).take(49) {
        assert_eq!(w[1].1.wrapping_sub(w[0].1), FRAME);
    }
}

#[test]
fn reorder_within_delay_is_put_right() {
    let mut s = Sim::new();
    // every pair swapped: odd packets 25 ms late, so they arrive after their successor
    let out = s.run(stream(0, 0, 40, |i| if i % 2 == 1 { 25 } else { 0 }), 1000);
    assert_eq!(frames(&out), (0..40).collect::<Vec<_>>());
    let st = s.jb.stats();
    assert_eq!(st.reordered, 19);
    assert_eq!((st.lost, st.late), (0, 0));
}

#[test]
fn single_loss_is_one_lost_slot() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 30, |_| 2);
    a.remove(10);
    let out = s.run(a, 800);
    assert_eq!(losts(&out), vec![10 * FRAME]);
    let tl = timeline(&out);
    assert_eq!(tl[10], ('L', 1600));
    assert_eq!(tl[11], ('F', 1760));
    assert_eq!(s.jb.stats().lost, 1);
}

#[test]
fn burst_loss_is_one_lost_per_slot() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 40, |_| 2);
    a.drain(10..16);
    let out = s.run(a, 1000);
    // The buffer ran dry for longer than its delay, which looks like a delay spike: it
    // held its position (same ts reported again) for the 3 frames of the 60 ms delay.
    let mut l = losts(&out);
    assert_eq!(l.len(), 6 + 3);
    l.dedup();
    assert_eq!(l, (10..16).map(|i| i * FRAME).collect::<Vec<_>>());
    assert_eq!(frames(&out), (0..10).chain(16..40).collect::<Vec<_>>());
    let st = s.jb.stats();
    assert_eq!((st.lost, st.talkspurts), (6, 1));
    assert!(st.stretched >= 3, "{st:?}"); // and more as the stream ends
}

#[test]
fn duplicates_are_counted_and_played_once() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 20, |_| 1);
    let dups: Vec<Arrival> = a
        .iter()
        .step_by(3)
        .map(|p| Arrival {
            at_ms: p.at_ms + 3,
            ..*p
        })
        .collect();
    a.extend(dups);
    // and a duplicate of an already played packet, long after
    a.push(pkt(300, 2, 2 * FRAME));
    let out = s.run(a, 600);
    assert_eq!(frames(&out), (0..20).collect::<Vec<_>>());
    assert_eq!(s.jb.stats().duplicate, 8);
    assert_eq!(
        s.pushes.iter().filter(|p| **p == Push::Duplicate).count(),
        8
    );
}

#[test]
fn sequence_and_timestamp_wrap() {
    let mut s = Sim::new();
    let ts0 = u32::MAX - 5 * FRAME + 1;
    let mut a = stream(65530, ts0, 20, |i| if i == 7 { 25 } else { 3 });
    a.remove(12); // a loss just after both wraps
    let out = s.run(a, 600);
    let want: Vec<u32> = (0..20u32)
        .filter(|i| *i != 12)
        .map(|i| u32::from(65530u16.wrapping_add(i as u16)))
        .collect();
    assert_eq!(frames(&out), want);
    assert_eq!(losts(&out), vec![ts0.wrapping_add(12 * FRAME)]);
    let st = s.jb.stats();
    assert_eq!((st.lost, st.late, st.talkspurts, st.restarts), (1, 0, 1, 0));
    assert_eq!(st.reordered, 1);
}

#[test]
fn late_packet_is_dropped_counted_and_raises_target() {
    let mut s = Sim::new();
    assert_eq!(s.jb.target_delay(), Duration::from_millis(60));
    // packet 10 arrives 150 ms late: its slot went by as Lost
    let out = s.run(stream(0, 0, 30, |i| if i == 10 { 150 } else { 1 }), 800);
    assert_eq!(losts(&out), vec![10 * FRAME]);
    assert!(!frames(&out).contains(&10));
    let st = s.jb.stats();
    assert_eq!((st.late, st.lost), (1, 1));
    assert!(s.pushes.contains(&Push::Late));
    assert!(
        s.jb.target_delay() > Duration::from_millis(60),
        "{:?}",
        s.jb.target_delay()
    );
    assert!(s.jb.target_delay() <= Duration::from_millis(200));
}

#[test]
fn ssrc_change_resets_and_old_ssrc_is_ignored() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 20, |_| 1);
    // at 400 ms a new source takes over with unrelated seq/ts
    let b: Vec<Arrival> = stream(30000, 999_999, 20, |_| 1)
        .into_iter()
        .map(|p| Arrival {
            at_ms: p.at_ms + 400,
            ssrc: 0xbeef,
            ..p
        })
        .collect();
    a.extend(b);
    // a straggler from the old SSRC after the switch must not switch back
    a.push(pkt(450, 20, 20 * FRAME));
    let out = s.run(a, 1000);
    // what was buffered of the old stream still plays, then the new one
    let f = frames(&out);
    assert_eq!(
        &f[..],
        &[(0..20).collect::<Vec<_>>(), (30000..30020).collect()].concat()[..]
    );
    let st = s.jb.stats();
    assert_eq!(
        (st.ssrc_changes, st.discarded, st.lost, st.talkspurts),
        (1, 1, 0, 2)
    );
    // no flood of Lost between the two streams
    assert!(losts(&out).len() <= 10, "{:?}", losts(&out));
}

#[test]
fn talkspurts_resync_without_lost_frames_for_the_silence() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 10, |_| 2);
    // 2 s of silence (ts advances, seq continues), new talkspurt with marker
    let mut b = stream(10, 10 * FRAME + 16000, 10, |_| 2);
    b[0].marker = true;
    for p in &mut b {
        p.at_ms += 200 + 2000;
    }
    a.extend(b);
    let out = s.run(a, 3000);
    assert_eq!(frames(&out), (0..20).collect::<Vec<_>>());
    let st = s.jb.stats();
    assert_eq!(st.talkspurts, 2);
    assert_eq!(st.lost, 0);
    // the end of each talkspurt is concealed for at most `underrun_limit` frames, then
    // silence (None), not a Lost for every one of the 100 silent slots
    assert!(st.concealed <= 20, "{st:?}");
    let silent = out
        .iter()
        .filter(|(t, p)| (500..2200).contains(t) && p.is_none())
        .count();
    assert_eq!(silent, 85);
    // the second talkspurt starts one target delay after its first packet
    let second = out
        .iter()
        .find(|(_, p)| matches!(p, Some(Playout::Frame { payload: 10, .. })))
        .map(|(t, _)| *t)
        .unwrap();
    // first packet at 2202 ms; the target had come down from 60 to 40 ms after 2 s
    // with no jitter, so the first tick at or after 2242 ms
    assert_eq!(second, 2250);
}

#[test]
fn marker_on_every_packet_is_not_a_resync() {
    let mut s = Sim::new();
    let a: Vec<Arrival> = stream(0, 0, 30, |i| if i % 5 == 0 { 12 } else { 0 })
        .into_iter()
        .map(|p| Arrival { marker: true, ..p })
        .collect();
    let out = s.run(a, 800);
    assert_eq!(frames(&out), (0..30).collect::<Vec<_>>());
    assert_eq!(s.jb.stats().talkspurts, 1);
}

#[test]
fn delay_changes_at_talkspurt_boundaries() {
    let mut s = Sim::new();
    // first talkspurt with up to 100 ms of jitter: the target grows
    let out1 = s.run(
        stream(0, 0, 50, |i| [0, 70, 10, 100, 30][i as usize % 5]),
        1500,
    );
    let target = s.jb.target_delay();
    assert!(target > Duration::from_millis(60), "{target:?}");
    // the first talkspurt kept the delay it started with (plus stretches), it did not
    // jump to the new target mid-talkspurt
    assert_eq!(first_frame_tick(&out1), 70);
    // second talkspurt, clean, starting at 1600 ms
    let mut b = stream(50, 50 * FRAME + 8000, 50, |_| 1590);
    b[0].marker = true;
    let out2 = s.run(b, 3000);
    // it starts one (new) target after its first packet: the first tick at or after that
    let start = 1590 + target.as_millis() as u64;
    let want = (start - 10).div_ceil(20) * 20 + 10;
    assert_eq!(first_frame_tick(&out2), want, "target {target:?}");
    assert_eq!(frames(&out2), (50..100).collect::<Vec<_>>());
}

#[test]
fn jitter_raises_target_and_stability_lowers_it_slowly() {
    let mut s = Sim::new();
    // 10 s of stream; the first 2 s with ±40 ms jitter, then clean
    let a = stream(0, 0, 500, |i| {
        if i < 100 {
            [0, 40, 20, 35, 5][i as usize % 5]
        } else {
            0
        }
    });
    let mut peak = Duration::ZERO;
    let mut targets = Vec::new();
    let mut arrivals = a.into_iter().peekable();
    let mut tick = 10;
    while tick <= 10_500 {
        while let Some(p) = arrivals.next_if(|p| p.at_ms <= tick) {
            s.jb.push(SSRC, p.seq, p.ts, false, u32::from(p.seq), s.at(p.at_ms));
        }
        s.jb.pop(s.at(tick));
        peak = peak.max(s.jb.target_delay());
        if tick % 1000 == 10 {
            targets.push(s.jb.target_delay());
        }
        tick += 20;
    }
    assert!(peak >= Duration::from_millis(80), "{peak:?}");
    // shrinks at most one frame per 2 s
    for w in targets.windows(2) {
        assert!(w[0] <= w[1] + Duration::from_millis(20), "{targets:?}");
    }
    assert!(s.jb.target_delay() < peak, "{targets:?}");
    assert!(s.jb.jitter() < Duration::from_millis(5));
    let st = s.jb.stats();
    assert_eq!(st.played + st.compressed, 500, "{st:?}");
}

#[test]
fn delay_spike_in_continuous_stream_stretches_instead_of_losing() {
    let mut s = Sim::new();
    // 120 ms network stall at packet 50: packets 50..56 arrive together at the end of it
    let a = stream(0, 0, 300, |i| {
        if (50..56).contains(&i) {
            120 - (i - 50) as u64 * 20
        } else {
            0
        }
    });
    // stop looking at 5 s, before the stream ends (its end stretches the delay again)
    let out = s.run(a, 5000);
    let st = s.jb.stats();
    assert_eq!((st.late, st.lost), (0, 0), "{st:?}");
    assert!(st.stretched >= 1, "{st:?}");
    // every packet played (or dropped to shrink back), in order
    let f = frames(&out);
    assert!(f.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        f.len() as u64 + st.compressed,
        u64::from(*f.last().unwrap()) + 1
    );
    // and the extra delay is given back once the stream is steady again
    assert!(st.compressed >= 2, "{st:?}");
    assert!(
        s.jb.current_delay() < Duration::from_millis(200),
        "{:?}",
        s.jb.current_delay()
    );
}

#[test]
fn reordered_packet_of_a_new_ssrc_does_not_overwrite_old_frames() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 10, |_| 0);
    // new SSRC at 100 ms while old frames are buffered; its seq 4 arrives after seq 5,
    // and would extend to a number among the old stream's
    a.push(Arrival {
        at_ms: 100,
        ssrc: 7,
        ..pkt(0, 5, 50_000)
    });
    a.push(Arrival {
        at_ms: 101,
        ssrc: 7,
        ..pkt(0, 4, 50_000 - FRAME)
    });
    a.push(Arrival {
        at_ms: 120,
        ssrc: 7,
        ..pkt(0, 6, 50_000 + FRAME)
    });
    let out = s.run(a, 800);
    let f = frames(&out);
    assert_eq!(&f[..], &[0, 1, 2, 3, 4, 5, 5, 6][..], "{f:?}");
    assert_eq!(s.jb.stats().late, 1);
}

#[test]
fn sender_stops_then_resumes() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 10, |_| 0);
    // resumes 5 s later, no marker, seq and ts continuing as if nothing happened
    a.extend(stream(10, 10 * FRAME, 10, |_| 5000));
    let out = s.run(a, 6000);
    assert_eq!(frames(&out), (0..20).collect::<Vec<_>>());
    // at most underrun_limit concealed frames before going quiet
    assert!(losts(&out).len() <= 10, "{}", losts(&out).len());
    let quiet = out
        .iter()
        .filter(|(t, p)| *t > 1000 && *t < 5000 && p.is_some())
        .count();
    assert_eq!(quiet, 0);
    assert_eq!(s.jb.stats().talkspurts, 2);
}

#[test]
fn consistent_seq_and_ts_jump_resyncs_instead_of_flooding_lost() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 20, |_| 0);
    // the sender skips 2000 packets' worth of seq and ts with no time passing
    a.extend(stream(2020, 2020 * FRAME, 20, |_| 400));
    let out = s.run(a, 1200);
    assert_eq!(frames(&out).len(), 40);
    assert!(losts(&out).len() <= 10, "{:?}", losts(&out).len());
    assert_eq!(s.jb.stats().talkspurts, 2);
    assert_eq!(s.jb.stats().lost, 2000);
}

#[test]
fn sequence_jump_beyond_dropout_needs_confirmation() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 20, |_| 0);
    a.push(pkt(200, 40_000, 5)); // a lone stray: discarded
    a.extend(stream(50_000, 77, 20, |_| 400)); // a real restart: first confirms nothing
    let out = s.run(a, 1300);
    let f = frames(&out);
    assert_eq!(&f[..20], &(0..20).collect::<Vec<_>>()[..]);
    assert_eq!(&f[20..], &(50_001..50_020).collect::<Vec<_>>()[..]);
    let st = s.jb.stats();
    assert_eq!((st.discarded, st.restarts), (2, 1));
}

#[test]
fn overtaken_talkspurt_start_becomes_the_sync_point() {
    let mut s = Sim::new();
    let mut a = stream(0, 0, 10, |_| 0);
    let mut b = stream(10, 10 * FRAME + 8000, 10, |_| 0);
    b[0].marker = true;
    for p in &mut b {
        p.at_ms += 1200;
    }
    b[0].at_ms += 25; // the marker packet arrives after its successor
    a.extend(b);
    let out = s.run(a, 2500);
    assert_eq!(frames(&out), (0..20).collect::<Vec<_>>());
    assert_eq!(s.jb.stats().lost, 0);
}

#[test]
fn capacity_is_bounded_and_oldest_dropped() {
    let mut s = Sim::with(JitterConfig {
        capacity: 16,
        ..JitterConfig::default()
    });
    let t = s.at(0);
    for i in 0..1000u16 {
        s.jb.push(SSRC, i, u32::from(i) * FRAME, false, u32::from(i), t);
        assert!(s.jb.len() <= 16);
    }
    assert_eq!(s.jb.stats().overflow, 1000 - 16);
    // what is left is the newest
    let p = s.jb.pop(s.at(100));
    assert!(
        matches!(p, Some(Playout::Frame { payload: 984, .. })),
        "{p:?}"
    );
}

#[test]
fn hostile_input_never_panics_and_stays_bounded() {
    let mut s = Sim::new();
    // xorshift: deterministic garbage
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut outputs = 0;
    for step in 0..200_000u64 {
        let r = rnd();
        let now = s.at(step / 4);
        let ssrc = if r % 97 == 0 { (r >> 8) as u32 } else { SSRC };
        s.jb.push(ssrc, (r >> 16) as u16, (r >> 32) as u32, r & 1 == 0, 0, now);
        assert!(s.jb.len() <= 64);
        if step % 4 == 0 && s.jb.pop(now).is_some() {
            outputs += 1;
        }
    }
    // at most one output per pop
    assert!(outputs <= 50_000);
    assert!(s.jb.target_delay() <= Duration::from_millis(200));
    assert!(s.jb.target_delay() >= Duration::from_millis(20));
}

#[test]
fn concealer_fades_then_silence() {
    let mut c = Concealer::new(160);
    let mut out = [1i16; 160];
    // nothing good yet: silence
    c.conceal(&mut out);
    assert!(out.iter().all(|s| *s == 0));

    c.good(&[10_000; 160]);
    let mut frames = Vec::new();
    for _ in 0..5 {
        let mut f = [0i16; 160];
        c.conceal(&mut f);
        frames.push(f);
    }
    // first sample of the first concealed frame is the last frame at full level
    assert_eq!(frames[0][0], 10_000);
    // monotonic fade across the three frames, continuous at frame edges
    let flat: Vec<i16> = frames[..3].iter().flatten().copied().collect();
    assert!(flat.windows(2).all(|w| w[1] <= w[0]));
    assert!((frames[0][159] - frames[1][0]).abs() <= 100);
    assert!(frames[2][159] < 200);
    assert!(frames[3].iter().chain(frames[4].iter()).all(|s| *s == 0));
    // a good frame ends the run
    c.good(&[-8_000; 160]);
    let mut f = [0i16; 160];
    c.conceal(&mut f);
    assert_eq!(f[0], -8_000);
    // a shorter last frame is cycled, extremes do not overflow
    c.good(&[i16::MIN, i16::MAX]);
    let mut f = [0i16; 160];
    c.conceal(&mut f);
    assert_eq!(f[0], i16::MIN);
    assert!(f[1] > 32_000);
}
