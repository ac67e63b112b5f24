//! Audio codecs of the media plane: the seam between RTP payloads and 8 kHz PCM.
//!
//! [`Codec`] is what SDP negotiated for a call; the RTP receive path decodes each payload
//! with it and the send path encodes each 20 ms frame. Both directions write into buffers
//! the caller owns and reuses, so the per-packet path does not allocate once the buffers
//! have grown to a frame.
//!
//! G.711 is stateless and has the same rate for samples and RTP timestamps, so a `Copy`
//! enum is enough. The codecs this seam is for next differ in both ways, which is why the
//! rates and the frame size are methods and not constants: G.722 samples at 16 kHz but
//! advertises an 8000 Hz RTP clock (RFC 3551 §4.5.2), and Opus (RFC 7587) runs a 48 kHz
//! RTP clock and keeps encoder/decoder state per stream. Adding those means a variant
//! here plus per-stream state (`Codec::encoder()` / `decoder()` handing out state
//! objects), without touching the callers of `encode`/`decode`.

pub mod g711;

use crate::sdp;

/// A negotiated audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// Every codec the gateway implements, in its order of preference.
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// The codec a static RTP payload type stands for (RFC 3551 table 4), if we have it.
    pub fn from_static_pt(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The codec an `a=rtpmap` names (encoding names are case-insensitive, RFC 4855 §3).
    pub fn from_rtpmap(encoding: &str, clock_rate: u32, channels: Option<u32>) -> Option<Self> {
        if clock_rate != 8000 || channels.is_some_and(|c| c != 1) {
            return None;
        }
        Codec::ALL
            .into_iter()
            .find(|c| encoding.eq_ignore_ascii_case(c.encoding_name()))
    }

    /// The static RTP payload type.
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name as SDP writes it.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Rate of the PCM that `decode` produces and `encode` consumes, in Hz.
    pub fn sample_rate(self) -> u32 {
        8000
    }

    /// Rate of the RTP timestamp clock, in Hz (the `a=rtpmap` clock rate).
    pub fn rtp_clock_rate(self) -> u32 {
        8000
    }

    /// PCM samples in one frame of `ptime_ms` milliseconds (160 for 20 ms).
    pub fn samples_per_frame(self, ptime_ms: u32) -> usize {
        (u64::from(self.sample_rate()) * u64::from(ptime_ms) / 1000) as usize
    }

    /// RTP timestamp increment from one frame of `ptime_ms` to the next.
    pub fn timestamp_step(self, ptime_ms: u32) -> u32 {
        (u64::from(self.rtp_clock_rate()) * u64::from(ptime_ms) / 1000).min(u64::from(u32::MAX))
            as u32
    }

    /// Encoded payload bytes for one frame of `ptime_ms` (G.711: one byte per sample).
    pub fn payload_len(self, ptime_ms: u32) -> usize {
        self.samples_per_frame(ptime_ms)
    }

    /// PCM samples a payload of `len` bytes decodes to.
    pub fn samples_in_payload(self, len: usize) -> usize {
        len
    }

    /// Appends the encoding of `pcm` to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + pcm.len(), 0);
        let tail = &mut out[start..];
        match self {
            Codec::Pcmu => g711::ulaw_encode_into(pcm, tail),
            Codec::Pcma => g711::alaw_encode_into(pcm, tail),
        };
    }

    /// Appends the PCM that `payload` decodes to onto `out`. Every byte string is a valid
    /// G.711 payload.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        out.resize(start + self.samples_in_payload(payload.len()), 0);
        let tail = &mut out[start..];
        match self {
            Codec::Pcmu => g711::ulaw_decode_into(payload, tail),
            Codec::Pcma => g711::alaw_decode_into(payload, tail),
        };
    }
}

impl From<sdp::G711> for Codec {
    fn from(c: sdp::G711) -> Self {
        match c {
            sdp::G711::Pcmu => Codec::Pcmu,
            sdp::G711::Pcma => Codec::Pcma,
        }
    }
}

impl From<Codec> for sdp::G711 {
    fn from(c: Codec) -> Self {
        match c {
            Codec::Pcmu => sdp::G711::Pcmu,
            Codec::Pcma => sdp::G711::Pcma,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_geometry() {
        for c in Codec::ALL {
            assert_eq!(c.sample_rate(), 8000);
            assert_eq!(c.rtp_clock_rate(), 8000);
            assert_eq!(c.samples_per_frame(20), 160);
            assert_eq!(c.samples_per_frame(30), 240);
            assert_eq!(c.payload_len(20), 160);
            assert_eq!(c.timestamp_step(20), 160);
            assert_eq!(c.samples_per_frame(0), 0);
            // Hostile ptime from SDP: no overflow.
            assert_eq!(c.timestamp_step(u32::MAX), u32::MAX);
            assert_eq!(Codec::from_static_pt(c.static_pt()), Some(c));
            assert_eq!(Codec::from_rtpmap(c.encoding_name(), 8000, None), Some(c));
            assert_eq!(Codec::from(sdp::G711::from(c)), c);
        }
        assert_eq!(Codec::from_rtpmap("pcmu", 8000, Some(1)), Some(Codec::Pcmu));
        assert_eq!(Codec::from_rtpmap("PCMU", 16000, None), None);
        assert_eq!(Codec::from_rtpmap("PCMA", 8000, Some(2)), None);
        assert_eq!(Codec::from_rtpmap("G722", 8000, None), None);
        assert_eq!(Codec::from_static_pt(9), None);
    }

    #[test]
    fn encode_decode_append_into_caller_buffers() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i as f32 * 0.3).sin() * 12_000.0) as i16)
            .collect();
        for c in Codec::ALL {
            let mut payload = vec![0xAA];
            c.encode(&pcm, &mut payload);
            assert_eq!(payload.len(), 161);
            assert_eq!(payload[0], 0xAA, "encode appends");
            let mut back = Vec::with_capacity(160);
            c.decode(&payload[1..], &mut back);
            assert_eq!(back.len(), 160);
            for (&x, &y) in pcm.iter().zip(&back) {
                assert!((x as i32 - y as i32).abs() <= (x as i32).abs() / 16 + 16);
            }
            // Same as the per-sample reference.
            for (&s, &b) in pcm.iter().zip(&payload[1..]) {
                let want = match c {
                    Codec::Pcmu => g711::ulaw_encode(s),
                    Codec::Pcma => g711::alaw_encode(s),
                };
                assert_eq!(b, want);
            }
        }
    }
}
