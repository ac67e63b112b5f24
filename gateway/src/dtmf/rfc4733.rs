//! RFC 4733 telephone-events (formerly RFC 2833): receive and send.
//!
//! Payload (RFC 4733 §2.3), one or more 4-byte events:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```
//!
//! A press is identified by the RTP timestamp of its packets: every packet of one event
//! carries the event's start time; the duration grows; the last packet has the E bit and
//! is sent three times (§2.5.1.4). So the receiver keys on the timestamp, not on the event
//! code or the marker bit (which may be lost with the first packet), and reports the press
//! once — see the crate-level [event model](super).

use std::time::{Duration, Instant};

use super::{event_to_key, key_to_event, DigitEvent};

/// Events decoded from one packet at most (a 1500-byte datagram could carry ~370; real
/// senders pack a handful). The rest of a longer payload is ignored.
const MAX_EVENTS_PER_PACKET: usize = 16;

/// Largest duration one packet can state; longer events continue in a new segment.
const MAX_SEGMENT: u32 = 0xFFFF;

/// One 4-byte telephone-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in −dBm0, 0–63.
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads one event from the first 4 bytes; `None` if there are fewer. The R bit is
    /// ignored, as §2.3.3 asks of receivers.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1, ..] = *b else {
            return None;
        };
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// A marked packet this long after the previous press ended starts a new
/// press whatever its timestamp; redundant end packets follow within a few
/// packet times and carry no marker.
const REPRESS_GAP: Duration = Duration::from_millis(100);

/// Receiver settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// With no packet for the event in progress for this long, the event is over (its end
    /// packets were lost). Senders refresh every 20–50 ms.
    pub end_timeout: Duration,
    /// A packet whose timestamp lies up to this far (timestamp units) *before* the current
    /// event is a late packet of an earlier event and is dropped; further back it is taken as
    /// a timestamp discontinuity and starts a new event.
    pub stale_window: u32,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            end_timeout: Duration::from_millis(250),
            stale_window: 10 * 8000,
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub packets: u64,
    /// Payloads shorter than one event.
    pub malformed: u64,
    /// Presses reported (start events).
    pub presses: u64,
    /// Packets (events) for an earlier event that arrived after a later one began.
    pub stale: u64,
    /// Events that are not DTMF keys (flash, tones, …).
    pub ignored: u64,
    /// Presses whose end was inferred: timeout, or a new event began first.
    pub lost_ends: u64,
    /// A packet with the current event's timestamp but another event code.
    pub conflicting: u64,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    event: u8,
    key: Option<char>,
    /// Timestamp of the first segment: the press's identity.
    start_ts: u32,
    /// Timestamp of the segment now running (long events, §2.5.1.3).
    seg_start: u32,
    /// Duration of the finished segments before `seg_start`.
    seg_base: u32,
    seg_duration: u32,
    volume: u8,
    ended: bool,
    last_seen: Instant,
}

impl Current {
    fn event(&self, ended: bool) -> Option<DigitEvent> {
        Some(DigitEvent {
            digit: self.key?,
            start_ts: self.start_ts,
            duration: self.seg_base.saturating_add(self.seg_duration),
            volume: self.volume,
            ended,
        })
    }
}

/// RFC 4733 receive side for one RTP stream (one SSRC): packets in, one start and one end
/// [`DigitEvent`] per press out.
#[derive(Debug, Clone)]
pub struct Rfc4733Receiver {
    cfg: ReceiverConfig,
    current: Option<Current>,
    stats: ReceiverStats,
}

impl Default for Rfc4733Receiver {
    fn default() -> Self {
        Self::new(ReceiverConfig::default())
    }
}

impl Rfc4733Receiver {
    pub fn new(cfg: ReceiverConfig) -> Self {
        Rfc4733Receiver {
            cfg,
            current: None,
            stats: ReceiverStats::default(),
        }
    }

    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// One telephone-event RTP packet: its timestamp, marker bit and payload, and when it
    /// arrived. Returns the events it produced, in order — usually none (a refresh or a
    /// redundant end), one start or one end. A packet can produce more: several events
    /// packed in one payload (§2.5.1.5: each starts where the previous one's duration ends),
    /// or a new press that closes one whose end packets were all lost.
    ///
    /// Returns a `Vec` rather than an `Option` for that reason; it allocates only when
    /// something is reported.
    pub fn on_packet(
        &mut self,
        ts: u32,
        marker: bool,
        payload: &[u8],
        now: Instant,
    ) -> Vec<DigitEvent> {
        let mut out = Vec::new();
        self.stats.packets += 1;
        if payload.len() < 4 {
            self.stats.malformed += 1;
            return out;
        }
        let mut start = ts;
        for (i, chunk) in payload
            .chunks_exact(4)
            .take(MAX_EVENTS_PER_PACKET)
            .enumerate()
        {
            let Some(ev) = TelephoneEvent::parse(chunk) else {
                break;
            };
            self.on_event(start, marker && i == 0, ev, now, &mut out);
            start = start.wrapping_add(u32::from(ev.duration));
        }
        out
    }

    fn on_event(
        &mut self,
        ts: u32,
        marker: bool,
        ev: TelephoneEvent,
        now: Instant,
        out: &mut Vec<DigitEvent>,
    ) {
        if let Some(cur) = &mut self.current {
            // The marker bit opens an event (RFC 4733 2.5.1.2). On a press well
            // after the last one ended it means a new press even when the
            // timestamp says otherwise: PBXes that replay canned event packets
            // reuse timestamps, and some restart them per press.
            let fresh_start =
                marker && cur.ended && now.saturating_duration_since(cur.last_seen) >= REPRESS_GAP;
            if ts == cur.seg_start && !fresh_start {
                if ev.event != cur.event {
                    self.stats.conflicting += 1;
                    return;
                }
                if cur.ended {
                    // Redundant end packet, or a refresh overtaken by the end: nothing new.
                    return;
                }
                cur.last_seen = now;
                cur.seg_duration = cur.seg_duration.max(u32::from(ev.duration));
                cur.volume = ev.volume;
                if ev.end {
                    cur.ended = true;
                    out.extend(cur.event(true));
                }
                return;
            }
            let ahead = ts.wrapping_sub(cur.seg_start);
            // §2.5.1.3: an event longer than 0xFFFF goes on in a new segment, with the same
            // code, no marker, and a timestamp where the previous segment ran out.
            if !marker
                && !cur.ended
                && ev.event == cur.event
                && ahead.abs_diff(MAX_SEGMENT) <= 1600
                && cur.seg_duration + 1600 >= MAX_SEGMENT
            {
                cur.seg_base = cur.seg_base.saturating_add(ahead);
                cur.seg_start = ts;
                cur.seg_duration = u32::from(ev.duration);
                cur.volume = ev.volume;
                cur.last_seen = now;
                if ev.end {
                    cur.ended = true;
                    out.extend(cur.event(true));
                }
                return;
            }
            let behind = cur.seg_start.wrapping_sub(ts);
            let earlier_segment = cur.start_ts.wrapping_sub(ts) <= self.cfg.stale_window;
            if !fresh_start && (behind <= self.cfg.stale_window || earlier_segment) {
                self.stats.stale += 1;
                return;
            }
            if !cur.ended {
                cur.ended = true;
                if cur.key.is_some() {
                    self.stats.lost_ends += 1;
                }
                out.extend(cur.event(true));
            }
        }
        let key = event_to_key(ev.event);
        let cur = Current {
            event: ev.event,
            key,
            start_ts: ts,
            seg_start: ts,
            seg_base: 0,
            seg_duration: u32::from(ev.duration),
            volume: ev.volume,
            ended: ev.end,
            last_seen: now,
        };
        self.current = Some(cur);
        if key.is_none() {
            self.stats.ignored += 1;
            return;
        }
        self.stats.presses += 1;
        out.extend(cur.event(false));
        if ev.end {
            out.extend(cur.event(true));
        }
    }

    /// When [`on_timeout`](Self::on_timeout) wants to be called: the end timeout of a press
    /// in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let cur = self.current.as_ref()?;
        (!cur.ended).then(|| cur.last_seen + self.cfg.end_timeout)
    }

    /// Ends a press whose end packets never came; returns its end event.
    pub fn on_timeout(&mut self, now: Instant) -> Option<DigitEvent> {
        let deadline = self.poll_timeout()?;
        if now < deadline {
            return None;
        }
        let cur = self.current.as_mut()?;
        cur.ended = true;
        let ev = cur.event(true);
        if ev.is_some() {
            self.stats.lost_ends += 1;
        }
        ev
    }

    /// Forgets the stream's state (new SSRC: timestamps start afresh). A press in progress
    /// is ended and its end event returned.
    pub fn reset(&mut self) -> Option<DigitEvent> {
        let cur = self.current.take()?;
        if cur.ended {
            return None;
        }
        let ev = cur.event(true);
        if ev.is_some() {
            self.stats.lost_ends += 1;
        }
        ev
    }
}

/// One telephone-event packet to send: the RTP header fields that differ from audio, the
/// payload, and when to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// RTP timestamp: the start of the press, the same in every packet of it.
    pub ts: u32,
    /// Set on the first packet of the press only.
    pub marker: bool,
    pub payload: [u8; 4],
    /// When to send it, in timestamp units after the press began.
    pub send_at: u32,
}

/// RFC 4733 send side: the packets for one key press.
///
/// The RTP sender owns sequence numbers and SSRC (shared with the audio stream), sends
/// each packet at `start + send_at`, and holds back audio while the event runs (§2.5.1.2
/// asks senders not to send the tone in the audio as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc4733Sender {
    /// Power level to state, −dBm0 (0–63).
    pub volume: u8,
    /// Update interval in timestamp units (160 = 20 ms at 8 kHz).
    pub interval: u32,
    /// How many times the end packet goes out (§2.5.1.4: three).
    pub end_packets: u8,
}

impl Default for Rfc4733Sender {
    fn default() -> Self {
        Rfc4733Sender {
            volume: 10,
            interval: 160,
            end_packets: 3,
        }
    }
}

impl Rfc4733Sender {
    /// The packets for `key` pressed at timestamp `start_ts` for `duration` timestamp units
    /// (capped at 0xFFFF, 8.2 s at 8 kHz: longer digits are not a thing an IVR sends).
    /// Updates go out every `interval` while the key is down (the first one marked), then
    /// the end packet `end_packets` times, `interval` apart. `None` for a key that is not
    /// DTMF.
    pub fn packets(&self, key: char, start_ts: u32, duration: u32) -> Option<Vec<EventPacket>> {
        let event = key_to_event(key)?;
        let duration = duration.min(MAX_SEGMENT);
        let interval = self.interval.max(1);
        let volume = self.volume.min(63);
        let mut out = Vec::new();
        let mut at = interval;
        while at < duration {
            out.push(EventPacket {
                ts: start_ts,
                marker: out.is_empty(),
                payload: TelephoneEvent {
                    event,
                    end: false,
                    volume,
                    duration: at as u16,
                }
                .to_bytes(),
                send_at: at,
            });
            at = at.saturating_add(interval);
        }
        let end = TelephoneEvent {
            event,
            end: true,
            volume,
            duration: duration as u16,
        }
        .to_bytes();
        for i in 0..u32::from(self.end_packets.max(1)) {
            out.push(EventPacket {
                ts: start_ts,
                marker: out.is_empty(),
                payload: end,
                send_at: duration.saturating_add(i.saturating_mul(interval)),
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_press_after_a_gap_is_new_even_with_an_old_or_equal_timestamp() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(ReceiverConfig::default());
        let pkt = |event: u8, end: bool, duration: u16| {
            TelephoneEvent {
                event,
                end,
                volume: 10,
                duration,
            }
            .to_bytes()
        };
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut keys = Vec::new();
        let mut press = |rx: &mut Rfc4733Receiver, ts: u32, event: u8, at: u64| {
            for (i, (end, d)) in [(false, 160u16), (false, 320), (true, 480), (true, 480)]
                .into_iter()
                .enumerate()
            {
                for ev in rx.on_packet(ts, i == 0, &pkt(event, end, d), ms(at + 20 * i as u64)) {
                    if !ev.ended {
                        keys.push(ev.digit);
                    }
                }
            }
        };
        press(&mut rx, 92_640, 11, 0); // '#'
        press(&mut rx, 17_632, 0, 400); // '0', timestamp far behind
        press(&mut rx, 30_000, 1, 800); // '1'
        press(&mut rx, 30_000, 1, 1200); // '1' replayed with the same timestamp
        assert_eq!(keys, ['#', '0', '1', '1']);
    }

    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pkt(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume,
            duration,
        }
        .to_bytes()
    }

    /// Feeds a sender's packets (arrival = send time) and collects every event.
    fn feed(rx: &mut Rfc4733Receiver, base: Instant, pkts: &[EventPacket]) -> Vec<DigitEvent> {
        let mut out = Vec::new();
        for p in pkts {
            let now = base + ms(u64::from(p.send_at) / 8);
            out.extend(rx.on_timeout(now));
            out.extend(rx.on_packet(p.ts, p.marker, &p.payload, now));
        }
        out
    }

    fn starts(evs: &[DigitEvent]) -> String {
        evs.iter().filter(|e| !e.ended).map(|e| e.digit).collect()
    }

    #[test]
    fn payload_fields() {
        let e = TelephoneEvent::parse(&[11, 0x80 | 0x40 | 37, 0x03, 0x20]).unwrap();
        assert_eq!(
            e,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 37,
                duration: 800
            }
        );
        // R bit is not sent.
        assert_eq!(e.to_bytes(), [11, 0x80 | 37, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn one_press_start_then_end_with_duration_and_volume() {
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        let a = rx.on_packet(1000, true, &pkt(5, false, 12, 160), now);
        assert_eq!(
            a,
            vec![DigitEvent {
                digit: '5',
                start_ts: 1000,
                duration: 160,
                volume: 12,
                ended: false
            }]
        );
        assert!(rx
            .on_packet(1000, false, &pkt(5, false, 12, 320), now + ms(20))
            .is_empty());
        let end = rx.on_packet(1000, false, &pkt(5, true, 12, 800), now + ms(100));
        assert_eq!(end.len(), 1);
        assert!(end[0].ended);
        assert_eq!((end[0].duration, end[0].start_ts), (800, 1000));
        assert_eq!(end[0].duration_ms(8000), 100);
        // The two redundant end packets and a retransmitted first packet: nothing.
        assert!(rx
            .on_packet(1000, false, &pkt(5, true, 12, 800), now + ms(120))
            .is_empty());
        assert!(rx
            .on_packet(1000, false, &pkt(5, true, 12, 800), now + ms(140))
            .is_empty());
        assert!(rx
            .on_packet(1000, true, &pkt(5, false, 12, 160), now + ms(150))
            .is_empty());
        assert_eq!(rx.poll_timeout(), None);
        assert_eq!(rx.stats().presses, 1);
    }

    #[test]
    fn every_key_and_non_digit_events_ignored() {
        let mut rx = Rfc4733Receiver::default();
        let tx = Rfc4733Sender::default();
        let now = t0();
        let mut evs = Vec::new();
        for (i, k) in "0123456789*#ABCD".chars().enumerate() {
            let ts = 8000 * i as u32;
            evs.extend(feed(&mut rx, now, &tx.packets(k, ts, 800).unwrap()));
        }
        assert_eq!(starts(&evs), "0123456789*#ABCD");
        assert_eq!(evs.len(), 32);
        // Flash (16) and a tone event (e.g. 32) make no digit.
        for (j, code) in [16u8, 32, 255].into_iter().enumerate() {
            let ts = 200_000 + 8000 * j as u32;
            assert!(rx
                .on_packet(ts, true, &pkt(code, false, 10, 160), now)
                .is_empty());
            assert!(rx
                .on_packet(ts, false, &pkt(code, true, 10, 800), now)
                .is_empty());
        }
        assert_eq!(rx.stats().ignored, 3);
    }

    #[test]
    fn same_digit_twice_is_two_presses() {
        let mut rx = Rfc4733Receiver::default();
        let tx = Rfc4733Sender::default();
        let now = t0();
        let mut evs = feed(&mut rx, now, &tx.packets('1', 5000, 640).unwrap());
        // Second press 30 ms after the first ended.
        let second = tx.packets('1', 5000 + 640 + 240, 640).unwrap();
        evs.extend(feed(&mut rx, now + ms(110), &second));
        assert_eq!(starts(&evs), "11");
        assert_eq!(evs.iter().filter(|e| e.ended).count(), 2);
    }

    #[test]
    fn exactly_one_start_and_one_end_whatever_is_lost() {
        // A 100 ms press: 4 updates + 3 end packets = 7 packets; every loss pattern that
        // leaves at least one packet gives exactly one start and one end.
        let tx = Rfc4733Sender::default();
        let pkts = tx.packets('9', 4_294_967_000, 800).unwrap();
        assert_eq!(pkts.len(), 7);
        let base = t0();
        for mask in 1u32..(1 << pkts.len()) {
            let kept: Vec<EventPacket> = pkts
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, p)| *p)
                .collect();
            let mut rx = Rfc4733Receiver::default();
            let mut evs = feed(&mut rx, base, &kept);
            // Time passes with no more packets.
            evs.extend(rx.on_timeout(base + ms(2000)));
            assert_eq!(starts(&evs), "9", "mask {mask:#b}");
            let ends: Vec<&DigitEvent> = evs.iter().filter(|e| e.ended).collect();
            assert_eq!(ends.len(), 1, "mask {mask:#b}: {evs:?}");
            assert!(evs.last().unwrap().ended, "end comes last");
            // With any end packet kept the duration is exact.
            if mask >> 4 != 0 {
                assert_eq!(ends[0].duration, 800);
            }
        }
    }

    #[test]
    fn reordering_and_loss_across_consecutive_presses() {
        let tx = Rfc4733Sender::default();
        let mut all = Vec::new();
        for (i, k) in "1234".chars().enumerate() {
            for mut p in tx.packets(k, 100_000 + 2400 * i as u32, 960).unwrap() {
                p.send_at += 2400 * i as u32;
                all.push(p);
            }
        }
        // Swap neighbours (reorder by one) and drop every 3rd packet.
        for i in (0..all.len() - 1).step_by(2) {
            all.swap(i, i + 1);
        }
        let kept: Vec<EventPacket> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 2)
            .map(|(_, p)| *p)
            .collect();
        let mut rx = Rfc4733Receiver::default();
        let base = t0();
        let mut evs = Vec::new();
        for p in &kept {
            let now = base + ms(u64::from(p.send_at) / 8);
            evs.extend(rx.on_packet(p.ts, p.marker, &p.payload, now));
        }
        evs.extend(rx.on_timeout(base + ms(5000)));
        assert_eq!(starts(&evs), "1234");
        assert_eq!(evs.iter().filter(|e| e.ended).count(), 4);
    }

    #[test]
    fn end_packets_lost_new_press_closes_the_old_one() {
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        rx.on_packet(0, true, &pkt(1, false, 10, 160), now);
        rx.on_packet(0, false, &pkt(1, false, 10, 480), now + ms(40));
        let evs = rx.on_packet(1600, true, &pkt(2, false, 10, 160), now + ms(200));
        assert_eq!(evs.len(), 2);
        assert!(evs[0].ended && evs[0].digit == '1' && evs[0].duration == 480);
        assert!(!evs[1].ended && evs[1].digit == '2');
        assert_eq!(rx.stats().lost_ends, 1);
    }

    #[test]
    fn end_timeout_closes_a_press_and_late_packets_add_nothing() {
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        rx.on_packet(7, true, &pkt(0, false, 10, 160), now);
        assert_eq!(rx.poll_timeout(), Some(now + ms(250)));
        assert_eq!(rx.on_timeout(now + ms(249)), None);
        let e = rx.on_timeout(now + ms(250)).unwrap();
        assert!(e.ended && e.digit == '0' && e.duration == 160);
        assert_eq!(rx.poll_timeout(), None);
        assert_eq!(rx.on_timeout(now + ms(900)), None);
        // The end packets turn up after all.
        assert!(rx
            .on_packet(7, false, &pkt(0, true, 10, 800), now + ms(300))
            .is_empty());
    }

    #[test]
    fn stale_packets_of_an_earlier_press_are_dropped() {
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        let tx = Rfc4733Sender::default();
        let a = tx.packets('4', 1000, 800).unwrap();
        let b = tx.packets('6', 3000, 800).unwrap();
        let mut evs = feed(&mut rx, now, &a);
        evs.extend(feed(&mut rx, now, &b[..2]));
        // A late, reordered end packet of '4' after '6' began: no new press.
        evs.extend(rx.on_packet(1000, false, &a[a.len() - 1].payload, now + ms(5)));
        evs.extend(feed(&mut rx, now, &b[2..]));
        assert_eq!(starts(&evs), "46");
        assert!(rx.stats().stale >= 1);
    }

    #[test]
    fn timestamp_wrap() {
        let mut rx = Rfc4733Receiver::default();
        let tx = Rfc4733Sender::default();
        let now = t0();
        let mut evs = feed(&mut rx, now, &tx.packets('7', u32::MAX - 100, 800).unwrap());
        // The next press starts after the wrap.
        evs.extend(feed(&mut rx, now, &tx.packets('8', 1500, 800).unwrap()));
        // A late packet of the first press after the wrap is stale.
        evs.extend(rx.on_packet(u32::MAX - 100, false, &pkt(7, true, 10, 800), now));
        assert_eq!(starts(&evs), "78");
        // A jump far back (beyond the stale window) is a discontinuity: a new press.
        evs.extend(rx.on_packet(2_000_000_000, true, &pkt(3, false, 10, 160), now));
        assert_eq!(starts(&evs), "783");
    }

    #[test]
    fn packed_events_in_one_packet() {
        // §2.5.1.5: '1' (ended, 640) then '2' (ended, 480) then '3' in progress, all in one
        // payload with the timestamp of the first.
        let mut payload = Vec::new();
        payload.extend(pkt(1, true, 10, 640));
        payload.extend(pkt(2, true, 10, 480));
        payload.extend(pkt(3, false, 10, 160));
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        let evs = rx.on_packet(10_000, true, &payload, now);
        let summary: Vec<(char, u32, bool)> =
            evs.iter().map(|e| (e.digit, e.start_ts, e.ended)).collect();
        assert_eq!(
            summary,
            vec![
                ('1', 10_000, false),
                ('1', 10_000, true),
                ('2', 10_640, false),
                ('2', 10_640, true),
                ('3', 11_120, false),
            ]
        );
        // The same packet again (redundancy) adds nothing; '3' then ends on its own.
        assert!(rx.on_packet(10_000, true, &payload, now).is_empty());
        let e = rx.on_packet(11_120, false, &pkt(3, true, 10, 800), now + ms(100));
        assert_eq!(e.len(), 1);
        assert!(e[0].ended && e[0].digit == '3');
    }

    #[test]
    fn long_event_continues_in_a_new_segment() {
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        let ts = 50_000u32;
        let mut evs = rx.on_packet(ts, true, &pkt(10, false, 10, 160), now);
        evs.extend(rx.on_packet(ts, false, &pkt(10, false, 10, 0xFFFF), now + ms(40)));
        // Next segment: no marker, timestamp where the first ran out.
        let ts2 = ts.wrapping_add(0xFFFF);
        evs.extend(rx.on_packet(ts2, false, &pkt(10, false, 10, 160), now + ms(60)));
        evs.extend(rx.on_packet(ts2, false, &pkt(10, true, 10, 800), now + ms(160)));
        assert_eq!(starts(&evs), "*");
        let end = evs.iter().find(|e| e.ended).unwrap();
        assert_eq!(end.duration, 0xFFFF + 800);
        assert_eq!(end.start_ts, ts);
        // A late packet of the first segment is stale, not a new press.
        assert!(rx
            .on_packet(ts, false, &pkt(10, false, 10, 0xFFFF), now)
            .is_empty());
    }

    #[test]
    fn hostile_payloads_never_panic() {
        let mut rx = Rfc4733Receiver::default();
        let now = t0();
        assert!(rx.on_packet(0, true, &[], now).is_empty());
        assert!(rx.on_packet(0, true, &[1, 2, 3], now).is_empty());
        assert_eq!(rx.stats().malformed, 2);
        // Same timestamp, different code: ignored.
        rx.on_packet(9, true, &pkt(1, false, 10, 160), now);
        assert!(rx
            .on_packet(9, false, &pkt(2, true, 10, 320), now)
            .is_empty());
        assert_eq!(rx.stats().conflicting, 1);
        // Pseudo-random bytes of every length.
        let mut x = 0x1234_5678u32;
        let mut presses = 0;
        for len in 0..1500usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let evs = rx.on_packet(x, x & 1 == 0, &bytes, now + ms(len as u64));
            assert!(evs.len() <= 2 * MAX_EVENTS_PER_PACKET + 1);
            presses += evs.iter().filter(|e| !e.ended).count();
            let _ = rx.on_timeout(now + ms(len as u64 + 1000));
        }
        assert!(presses > 0);
        let _ = rx.reset();
    }

    #[test]
    fn sender_schedule() {
        let tx = Rfc4733Sender::default();
        let p = tx.packets('#', 1234, 800).unwrap();
        let sends: Vec<(u32, bool)> = p.iter().map(|p| (p.send_at, p.marker)).collect();
        assert_eq!(
            sends,
            vec![
                (160, true),
                (320, false),
                (480, false),
                (640, false),
                (800, false),
                (960, false),
                (1120, false)
            ]
        );
        assert!(p.iter().all(|p| p.ts == 1234));
        let evs: Vec<TelephoneEvent> = p
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        assert!(evs.iter().all(|e| e.event == 11 && e.volume == 10));
        assert_eq!(evs.iter().filter(|e| e.end).count(), 3);
        assert!(evs[4..].iter().all(|e| e.end && e.duration == 800));
        assert_eq!(evs[0].duration, 160);
        // A press shorter than one interval: only the (marked) end packets.
        let short = tx.packets('1', 0, 100).unwrap();
        assert_eq!(short.len(), 3);
        assert!(short[0].marker && !short[1].marker);
        assert!(tx.packets('x', 0, 800).is_none());
        // Over-long durations are capped.
        let long = tx.packets('1', 0, 1_000_000).unwrap();
        let last = TelephoneEvent::parse(&long.last().unwrap().payload).unwrap();
        assert_eq!(last.duration, 0xFFFF);
        // Odd settings do not overflow: one update per interval at most, ends saturate.
        let odd = Rfc4733Sender {
            volume: 200,
            interval: u32::MAX,
            end_packets: 255,
        };
        let p = odd.packets('0', u32::MAX, 1000).unwrap();
        assert_eq!(p.len(), 255);
        assert_eq!(TelephoneEvent::parse(&p[0].payload).unwrap().volume, 63);
        assert!(p.iter().skip(1).all(|p| p.send_at == u32::MAX));
        let zero = Rfc4733Sender {
            interval: 0,
            end_packets: 0,
            ..Rfc4733Sender::default()
        };
        // Interval 0 acts as 1: updates at 1 and 2, then one end packet.
        assert_eq!(zero.packets('5', 0, 3).unwrap().len(), 2 + 1);
    }
}
