//! RTP fixed header (RFC 3550 §5.1): parse and serialise, zero-copy, never panics.
//!
//! Every byte here comes from the network, so parsing only ever uses checked slicing
//! (`get`) and returns an [`RtpError`] for anything short, truncated or inconsistent.
//! The header is `Copy` and the payload borrows the datagram: nothing is allocated per
//! packet. Header extensions (RFC 3550 §5.3.1 / RFC 8285) are skipped but their bounds
//! are validated, and exposed raw for whoever wants them later.

use thiserror::Error;

/// The only RTP version there is (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed header, before CSRCs and extension.
pub const FIXED_HEADER_LEN: usize = 12;
/// The CC field is four bits.
pub const MAX_CSRC: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("datagram shorter than the 12-byte RTP header")]
    TooShort,
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("CSRC list runs past the end of the datagram")]
    CsrcTruncated,
    #[error("header extension runs past the end of the datagram")]
    ExtensionTruncated,
    #[error("padding length is zero or longer than the payload")]
    BadPadding,
}

/// Contributing sources, inline (at most 15), so the header stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Csrcs {
    len: u8,
    ids: [u32; MAX_CSRC],
}

impl Csrcs {
    /// At most [`MAX_CSRC`] ids are kept; extra ones are ignored (the CC field cannot say more).
    pub fn from_slice(ids: &[u32]) -> Self {
        let mut c = Csrcs::default();
        for (slot, id) in c.ids.iter_mut().zip(ids) {
            *slot = *id;
            c.len += 1;
        }
        c
    }

    pub fn as_slice(&self) -> &[u32] {
        // `len` is only ever set by `from_slice`/`parse`, both capped at MAX_CSRC.
        self.ids.get(..usize::from(self.len)).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The fields of an RTP header that the gateway uses. Padding and the extension are
/// consumed by [`parse`] (payload is what is left); [`write`] never emits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: Csrcs,
}

impl RtpHeader {
    pub fn new(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32) -> Self {
        RtpHeader {
            marker: false,
            payload_type: payload_type & 0x7f,
            sequence,
            timestamp,
            ssrc,
            csrc: Csrcs::default(),
        }
    }

    /// Bytes [`write`] produces before the payload.
    pub fn wire_len(&self) -> usize {
        FIXED_HEADER_LEN + 4 * self.csrc.as_slice().len()
    }
}

/// A header extension, skipped by the parser but kept as bounds-checked bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// "defined by profile" (0xBEDE = RFC 8285 one-byte, 0x100x = two-byte).
    pub profile: u16,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub extension: Option<RtpExtension<'a>>,
    /// The payload with any padding removed.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one RTP datagram (RFC 3550 §5.1, with the §A.1 header validity checks that
/// need only the packet itself: version 2, CSRC/extension/padding inside the datagram).
/// Payload type is not checked here: see [`classify`] for RTP/RTCP demultiplexing.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let fixed: &[u8; FIXED_HEADER_LEN] = buf
        .get(..FIXED_HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(RtpError::TooShort)?;
    let b0 = fixed[0];
    let version = b0 >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let cc = usize::from(b0 & 0x0f);
    let b1 = fixed[1];

    let mut csrc = Csrcs {
        len: cc as u8,
        ids: [0; MAX_CSRC],
    };
    let mut at = FIXED_HEADER_LEN;
    for slot in csrc.ids.iter_mut().take(cc) {
        *slot = be32(buf, at).ok_or(RtpError::CsrcTruncated)?;
        at += 4;
    }

    let extension = if has_extension {
        let profile = be16(buf, at).ok_or(RtpError::ExtensionTruncated)?;
        let words = be16(buf, at + 2).ok_or(RtpError::ExtensionTruncated)?;
        let start = at + 4;
        let end = start + 4 * usize::from(words);
        let data = buf.get(start..end).ok_or(RtpError::ExtensionTruncated)?;
        at = end;
        Some(RtpExtension { profile, data })
    } else {
        None
    };

    let mut payload = buf.get(at..).unwrap_or(&[]);
    if has_padding {
        // The last octet counts the padding, itself included (§5.1), so 0 is invalid.
        let pad = usize::from(*payload.last().ok_or(RtpError::BadPadding)?);
        if pad == 0 || pad > payload.len() {
            return Err(RtpError::BadPadding);
        }
        payload = payload.get(..payload.len() - pad).unwrap_or(&[]);
    }

    Ok(RtpPacket {
        header: RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc,
        },
        extension,
        payload,
    })
}

/// Appends header (with CSRCs, no extension, no padding) and payload to `out`.
/// Appending rather than overwriting lets a driver reuse one buffer (`clear()` first).
pub fn write(h: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) {
    let csrc = h.csrc.as_slice();
    out.reserve(FIXED_HEADER_LEN + 4 * csrc.len() + payload.len());
    out.push((RTP_VERSION << 6) | csrc.len() as u8);
    out.push((u8::from(h.marker) << 7) | (h.payload_type & 0x7f));
    out.extend_from_slice(&h.sequence.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&h.ssrc.to_be_bytes());
    for id in csrc {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// What a datagram on a media port is, by its first two octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Rtp,
    Rtcp,
    /// Not version 2 RTP/RTCP (STUN, DTLS, ZRTP, garbage: RFC 7983 first-octet ranges).
    Other,
}

/// RTP/RTCP demultiplexing on one port (RFC 5761 §4): RTCP packet types 192–223 sit where
/// an RTP octet 1 would hold marker=1 and PT 64–95, which is why those PTs are not used
/// for RTP. Packets from that range are RTCP (SR=200, RR=201, SDES, BYE, APP, RTPFB/PSFB,
/// XR, and the historic FIR/NACK 192/193).
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf {
        [b0, b1, ..] if b0 >> 6 == RTP_VERSION => {
            if is_rtcp_packet_type(*b1) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Other,
    }
}

/// RFC 5761 §4: octet 1 in 192..=223 (RTP marker set with PT 64..=95) means RTCP.
pub fn is_rtcp_packet_type(octet1: u8) -> bool {
    (192..=223).contains(&octet1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut h = RtpHeader::new(8, 0xfffe, 0xdead_beef, 0x1234_5678);
        h.marker = true;
        let mut out = Vec::new();
        write(&h, &[1, 2, 3, 4], &mut out);
        out
    }

    #[test]
    fn round_trip_fixed_header() {
        let buf = sample();
        assert_eq!(buf.len(), 16);
        assert_eq!(&buf[..2], &[0x80, 0x88]);
        let p = parse(&buf).unwrap();
        assert!(p.header.marker);
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(p.header.sequence, 0xfffe);
        assert_eq!(p.header.timestamp, 0xdead_beef);
        assert_eq!(p.header.ssrc, 0x1234_5678);
        assert!(p.header.csrc.is_empty());
        assert_eq!(p.extension, None);
        assert_eq!(p.payload, &[1, 2, 3, 4]);
    }

    #[test]
    fn round_trip_csrcs() {
        let mut h = RtpHeader::new(0, 1, 2, 3);
        h.csrc = Csrcs::from_slice(&[10, 11, 12]);
        let mut out = Vec::new();
        write(&h, b"xy", &mut out);
        assert_eq!(out.len(), h.wire_len() + 2);
        let p = parse(&out).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.header.csrc.as_slice(), &[10, 11, 12]);
        assert_eq!(p.payload, b"xy");
        // more than 15 are capped, never written as a corrupt CC
        let many: Vec<u32> = (0..20).collect();
        assert_eq!(Csrcs::from_slice(&many).as_slice().len(), MAX_CSRC);
    }

    #[test]
    fn write_appends() {
        let mut out = vec![0xaa];
        write(&RtpHeader::new(0, 0, 0, 0), &[], &mut out);
        assert_eq!(out.len(), 13);
        assert_eq!(out[0], 0xaa);
    }

    #[test]
    fn extension_skipped_and_padding_stripped() {
        // V=2 P=1 X=1 CC=1, PT 0, then CSRC, extension of 1 word, payload 3, padding 5
        let mut b = vec![0xb1, 0x00, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1];
        b.extend_from_slice(&[0, 0, 0, 42]); // CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // extension
        b.extend_from_slice(&[7, 8, 9]); // payload
        b.extend_from_slice(&[0, 0, 0, 0, 5]); // padding, count last
        let p = parse(&b).unwrap();
        assert_eq!(p.header.sequence, 7);
        assert_eq!(p.header.csrc.as_slice(), &[42]);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[0x10, 0xff, 0, 0]);
        assert_eq!(p.payload, &[7, 8, 9]);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort));
        let mut b = sample();
        b[0] = 0x40; // version 1
        assert_eq!(parse(&b), Err(RtpError::BadVersion(1)));
        let mut b = sample();
        b[0] = 0x8f; // 15 CSRCs that are not there
        assert_eq!(parse(&b), Err(RtpError::CsrcTruncated));
        let mut b = sample()[..12].to_vec();
        b[0] = 0x90; // extension header missing
        assert_eq!(parse(&b), Err(RtpError::ExtensionTruncated));
        b.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]); // 65535 words claimed
        assert_eq!(parse(&b), Err(RtpError::ExtensionTruncated));
        let mut b = sample();
        b[0] |= 0x20;
        *b.last_mut().unwrap() = 0; // zero padding count
        assert_eq!(parse(&b), Err(RtpError::BadPadding));
        *b.last_mut().unwrap() = 5; // more than the 4 payload bytes
        assert_eq!(parse(&b), Err(RtpError::BadPadding));
        let mut b = sample()[..12].to_vec();
        b[0] |= 0x20; // padding flag with no payload at all
        assert_eq!(parse(&b), Err(RtpError::BadPadding));
        // padding exactly the whole payload is fine: empty payload
        let mut b = sample();
        b[0] |= 0x20;
        *b.last_mut().unwrap() = 4;
        assert_eq!(parse(&b).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn never_panics_on_any_prefix_or_mutation() {
        let mut b = vec![0xb3, 0x80];
        b.extend_from_slice(&[0u8; 10]);
        b.extend_from_slice(&[0u8; 12]);
        b.extend_from_slice(&[0xbe, 0xde, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 3]);
        for n in 0..=b.len() {
            let _ = parse(&b[..n]);
        }
        // every single-byte value at every position
        for i in 0..b.len() {
            for v in [0u8, 1, 0x0f, 0x10, 0x20, 0x7f, 0x80, 0xbf, 0xff] {
                let mut m = b.clone();
                m[i] = v;
                if let Ok(p) = parse(&m) {
                    assert!(p.payload.len() <= m.len());
                }
            }
        }
    }

    #[test]
    fn demux_rule() {
        let rtp = sample();
        assert_eq!(classify(&rtp), PacketKind::Rtp);
        // SR (200), RR (201), and the bounds of RFC 5761's range
        for pt in [192u8, 200, 201, 202, 203, 204, 205, 206, 207, 223] {
            assert_eq!(classify(&[0x80, pt, 0, 1]), PacketKind::Rtcp, "{pt}");
        }
        // RTP with marker and PT 0..63 or 96..127 is RTP
        for b1 in [0x80u8, 0x80 | 63, 0x80 | 96, 0xff, 0x00, 0x65] {
            assert_eq!(classify(&[0x80, b1]), PacketKind::Rtp, "{b1}");
        }
        assert_eq!(classify(&[0x00, 0x01]), PacketKind::Other); // STUN
        assert_eq!(classify(&[22, 0xfe]), PacketKind::Other); // DTLS
        assert_eq!(classify(&[0x80]), PacketKind::Other);
    }
}
