//! DTMF: key presses from the three places a trunk puts them, as one [`Digit`] per press.
//!
//! - [`rfc4733`]: RTP telephone-events (receive with dedupe by timestamp and end-packet
//!   redundancy, and send);
//! - SIP INFO `application/dtmf-relay`: parsed by the SIP endpoint (`Event::Dtmf`), turned
//!   into a [`Digit`] with [`Digit::from_info`];
//! - [`inband`]: Goertzel detection of tones left in the audio.
//!
//! All of it is sans-IO: packets and samples go in with the time they happened, events come
//! out, nothing here reads a clock.
//!
//! # Event model
//!
//! Both detectors report a press as exactly two [`DigitEvent`]s, whatever is lost:
//!
//! 1. the **start** (`ended == false`), as early as the press is certain: on the first
//!    telephone-event packet of a new timestamp, or when a tone has lasted the minimum
//!    duration. This is the one the IVR acts on (barge-in, menu choice), so it does not
//!    wait for the key to be released;
//! 2. the **end** (`ended == true`, same `start_ts`), with the final duration and
//!    volume, for the call record: on the end bit, or — when every end packet is lost —
//!    on the next event or after the receiver's end timeout; for tones, when the tone
//!    stops (or at [`inband::InbandDetector::finish`]).
//!
//! A call turns each start into one [`Digit`] and uses the end only to fill in
//! `duration_ms` of the digit with the same `start_ts`; redundant packets, retransmitted
//! ends and lost packets never make a second start.

pub mod inband;
pub mod rfc4733;

use std::collections::VecDeque;

pub use inband::InbandDetector;
pub use rfc4733::{Rfc4733Receiver, Rfc4733Sender};

/// The 16 DTMF keys in RFC 4733 event-code order (0–9, `*`, `#`, A–D).
pub const KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The key an RFC 4733 event code stands for; `None` for non-DTMF events (16 = flash, …).
pub fn event_to_key(event: u8) -> Option<char> {
    KEYS.get(usize::from(event)).copied()
}

/// The RFC 4733 event code of a key (`a`–`d` accepted for A–D).
pub fn key_to_event(key: char) -> Option<u8> {
    let key = key.to_ascii_uppercase();
    KEYS.iter().position(|&k| k == key).map(|i| i as u8)
}

/// What a detector reports about one key press (see the module docs for the start/end
/// pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitEvent {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    /// When the press began, in timestamp units: the RTP timestamp of the telephone-event
    /// for RFC 4733 (which also identifies the press), the sample index (wrapping) since
    /// the detector started for in-band tones.
    pub start_ts: u32,
    /// How long the key has been down, in timestamp units (8 kHz: 8 per ms).
    pub duration: u32,
    /// Tone power in −dBm0 (0 = 0 dBm0, 63 = −63 dBm0 or below), as RFC 4733 encodes it.
    pub volume: u8,
    /// false: the press starts (exactly once per press); true: the press is over and
    /// `duration` is final (exactly once per press, always after the start).
    pub ended: bool,
}

impl DigitEvent {
    /// `duration` in milliseconds for a timestamp clock of `clock_rate` Hz.
    pub fn duration_ms(&self, clock_rate: u32) -> u32 {
        if clock_rate == 0 {
            return 0;
        }
        (u64::from(self.duration) * 1000 / u64::from(clock_rate)) as u32
    }
}

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// RTP telephone-event (RFC 4733 / 2833).
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay`, `application/dtmf`).
    Info,
    /// Tones detected in the audio.
    Inband,
}

impl DigitSource {
    /// The name the call record stores.
    pub fn as_str(self) -> &'static str {
        match self {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::Info => "info",
            DigitSource::Inband => "inband",
        }
    }
}

impl std::fmt::Display for DigitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key press, as the call, the IVR and the call record see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    pub key: char,
    pub source: DigitSource,
    /// When the press began, as an offset from the start of the call (the caller fills
    /// it in; for RTP sources from the event's start timestamp, so that copies of one press
    /// from two sources carry close times).
    pub at_ms: u64,
    /// How long the key was down, once known.
    pub duration_ms: Option<u32>,
}

impl Digit {
    /// The digit for a detector's start event (or a lone end event) at `at_ms`.
    pub fn from_event(ev: &DigitEvent, source: DigitSource, at_ms: u64, clock_rate: u32) -> Self {
        Digit {
            key: ev.digit,
            source,
            at_ms,
            duration_ms: ev.ended.then(|| ev.duration_ms(clock_rate)),
        }
    }

    /// The digit for a SIP INFO `Signal=` (`None` for a key that is not DTMF).
    pub fn from_info(key: char, duration_ms: Option<u32>, at_ms: u64) -> Option<Self> {
        let e = key_to_event(key)?;
        Some(Digit {
            key: event_to_key(e)?,
            source: DigitSource::Info,
            at_ms,
            duration_ms,
        })
    }
}

/// Suppresses the second copy of a press that arrives by two paths.
///
/// Trunks that send RFC 4733 often leave the tones in the audio too (and some send
/// SIP INFO as well), so one press reaches the call as an RFC 4733 digit *and* an in-band
/// digit. The deduper admits the first copy and drops a digit with the same key from a
/// *different* source whose `at_ms` lies within `window_ms` of an admitted one. Digits from
/// one source are never merged (that source's detector already made one per press, and two
/// quick presses of the same key are two digits). Times come from `Digit::at_ms`; nothing
/// here reads a clock.
///
/// The caller drops the end event (duration) of a press whose start was suppressed.
#[derive(Debug, Clone)]
pub struct DigitDeduper {
    window_ms: u64,
    admitted: VecDeque<Digit>,
}

/// How many admitted digits the deduper remembers.
const DEDUPER_MEMORY: usize = 16;

impl Default for DigitDeduper {
    fn default() -> Self {
        Self::new(100)
    }
}

impl DigitDeduper {
    /// A deduper treating copies up to `window_ms` apart as one press.
    pub fn new(window_ms: u64) -> Self {
        DigitDeduper {
            window_ms,
            admitted: VecDeque::with_capacity(DEDUPER_MEMORY),
        }
    }

    /// Whether `d` is a new press (deliver it) or a copy of one already admitted (drop it).
    pub fn admit(&mut self, d: &Digit) -> bool {
        let dup = self.admitted.iter().any(|a| {
            a.key == d.key && a.source != d.source && a.at_ms.abs_diff(d.at_ms) <= self.window_ms
        });
        if dup {
            return false;
        }
        if self.admitted.len() == DEDUPER_MEMORY {
            self.admitted.pop_front();
        }
        self.admitted.push_back(*d);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_and_keys() {
        for (i, &k) in KEYS.iter().enumerate() {
            assert_eq!(event_to_key(i as u8), Some(k));
            assert_eq!(key_to_event(k), Some(i as u8));
        }
        assert_eq!(key_to_event('a'), Some(12));
        assert_eq!(key_to_event('E'), None);
        assert_eq!(event_to_key(10), Some('*'));
        assert_eq!(event_to_key(11), Some('#'));
        assert_eq!(event_to_key(16), None, "flash is not a digit");
        assert_eq!(event_to_key(255), None);
    }

    #[test]
    fn digit_from_event_and_info() {
        let start = DigitEvent {
            digit: '5',
            start_ts: 1000,
            duration: 160,
            volume: 10,
            ended: false,
        };
        let d = Digit::from_event(&start, DigitSource::Rfc4733, 1234, 8000);
        assert_eq!(d.duration_ms, None);
        assert_eq!((d.key, d.at_ms, d.source.as_str()), ('5', 1234, "rfc4733"));
        let end = DigitEvent {
            ended: true,
            duration: 800,
            ..start
        };
        let d = Digit::from_event(&end, DigitSource::Inband, 0, 8000);
        assert_eq!(d.duration_ms, Some(100));
        assert_eq!(end.duration_ms(0), 0);
        let i = Digit::from_info('b', Some(160), 7).unwrap();
        assert_eq!(
            (i.key, i.source, i.duration_ms),
            ('B', DigitSource::Info, Some(160))
        );
        assert!(Digit::from_info('x', None, 0).is_none());
    }

    fn digit(key: char, source: DigitSource, at_ms: u64) -> Digit {
        Digit {
            key,
            source,
            at_ms,
            duration_ms: None,
        }
    }

    #[test]
    fn deduper_drops_the_inband_copy_of_an_rfc4733_press() {
        use DigitSource::*;
        let mut d = DigitDeduper::default();
        assert!(d.admit(&digit('1', Rfc4733, 1000)));
        // The tone left in the audio, detected a little later or earlier.
        assert!(!d.admit(&digit('1', Inband, 1040)));
        assert!(!d.admit(&digit('1', Info, 960)));
        // Same key, same source, 150 ms later: a second press.
        assert!(d.admit(&digit('1', Rfc4733, 1150)));
        assert!(!d.admit(&digit('1', Inband, 1160)));
        // A different key at the same time is its own press.
        assert!(d.admit(&digit('2', Inband, 1160)));
        // Outside the window: a new press even from the other source.
        assert!(d.admit(&digit('1', Inband, 1400)));
        // In-band first, RFC 4733 late: still one press.
        assert!(d.admit(&digit('7', Inband, 5000)));
        assert!(!d.admit(&digit('7', Rfc4733, 5060)));
    }

    #[test]
    fn deduper_memory_is_bounded() {
        let mut d = DigitDeduper::new(100);
        for i in 0..1000u64 {
            assert!(d.admit(&digit('3', DigitSource::Rfc4733, i * 200)));
        }
        assert!(d.admitted.len() <= DEDUPER_MEMORY);
        assert!(!d.admit(&digit('3', DigitSource::Inband, 999 * 200 + 50)));
    }
}
