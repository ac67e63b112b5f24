//! RTCP sender and receiver reports (RFC 3550 §6.4) and the statistics behind them
//! (§A.1 sequence validation, §A.3 loss, §A.8 jitter). Sans-IO: wall-clock time comes in
//! as a `SystemTime` (NTP timestamps), monotonic time as `Instant` (DLSR).
//!
//! Parsing is for hostile input: lengths are checked against the datagram, a report
//! carries at most 31 blocks (the 5-bit count), and SDES, BYE, APP and unknown packet
//! types in a compound packet are stepped over rather than rejected, because PBXes send
//! all sorts (XR, RTPFB, vendor APP) and losing their SR over it would lose the stats.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
/// The RC/SC field is five bits.
pub const MAX_BLOCKS: usize = 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("RTCP packet shorter than its header")]
    TooShort,
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP length field runs past the end of the datagram")]
    Truncated,
    #[error("RTCP padding invalid")]
    BadPadding,
    #[error("{0} packet body too short for its report count")]
    BadBody(u8),
}

/// 64-bit NTP timestamp: seconds since 1900 in the high word, binary fraction in the low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct NtpTime(pub u64);

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

impl NtpTime {
    /// Times before 1970 become the Unix epoch; seconds wrap at 2^32 like NTP eras do.
    pub fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
        // nanos < 1e9, so nanos << 32 fits u64 and the quotient < 2^32.
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// The middle 32 bits, the form used for LSR and DLSR arithmetic (§6.4.1).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// Converts monotonic arrival instants to RTP timestamp units for jitter (§A.8):
/// only differences matter, so the epoch is any instant the driver picks per stream.
#[derive(Debug, Clone, Copy)]
pub struct RtpClock {
    pub epoch: Instant,
    pub clock_rate: u32,
}

impl RtpClock {
    pub fn new(epoch: Instant, clock_rate: u32) -> Self {
        RtpClock { epoch, clock_rate }
    }

    /// `now` in RTP units since the epoch, wrapping like an RTP timestamp.
    pub fn rtp_ts(&self, now: Instant) -> u32 {
        let d = now.saturating_duration_since(self.epoch);
        (d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire; negative when duplicates outnumber losses.
    pub cumulative_lost: i32,
    /// Cycles in the high 16 bits, highest sequence number in the low 16.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR from this source (0: none yet).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Round-trip time to the reporter (§6.4.1): arrival − LSR − DLSR. `None` when the
    /// reporter has seen no SR from us yet, or the clocks make it negative.
    pub fn round_trip(&self, arrival: NtpTime) -> Option<Duration> {
        if self.last_sr == 0 {
            return None;
        }
        let rtt = arrival
            .middle32()
            .wrapping_sub(self.last_sr)
            .wrapping_sub(self.delay_since_last_sr);
        if rtt > i32::MAX as u32 {
            return None;
        }
        Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp: NtpTime,
    pub rtp_ts: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    pub ssrc: u32,
    pub info: SenderInfo,
    pub blocks: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub blocks: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    Sr(SenderReport),
    Rr(ReceiverReport),
    /// Sources saying goodbye (the rest of the BYE, a reason, is ignored).
    Bye(Vec<u32>),
    /// SDES, APP, feedback, XR or anything newer: recognised as well-formed, skipped.
    Other {
        packet_type: u8,
    },
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn parse_block(b: &[u8], at: usize) -> Option<ReportBlock> {
    let lost = be32(b, at + 4)?;
    // sign-extend the 24-bit cumulative loss
    let cumulative = ((lost << 8) as i32) >> 8;
    Some(ReportBlock {
        ssrc: be32(b, at)?,
        fraction_lost: (lost >> 24) as u8,
        cumulative_lost: cumulative,
        highest_seq: be32(b, at + 8)?,
        jitter: be32(b, at + 12)?,
        last_sr: be32(b, at + 16)?,
        delay_since_last_sr: be32(b, at + 20)?,
    })
}

fn parse_blocks(
    body: &[u8],
    start: usize,
    count: usize,
    pt: u8,
) -> Result<Vec<ReportBlock>, RtcpError> {
    (0..count)
        .map(|i| parse_block(body, start + 24 * i).ok_or(RtcpError::BadBody(pt)))
        .collect()
}

/// Parses a compound RTCP datagram into its packets, in order. Any packet with a bad
/// version or a length past the datagram fails the whole datagram (RFC 3550 §A.2: the
/// rest cannot be framed); unknown types are returned as `Other`.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    let mut rest = buf;
    if rest.is_empty() {
        return Err(RtcpError::TooShort);
    }
    while !rest.is_empty() {
        let hdr = rest.get(..4).ok_or(RtcpError::TooShort)?;
        let version = hdr[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padding = hdr[0] & 0x20 != 0;
        let count = usize::from(hdr[0] & 0x1f);
        let pt = hdr[1];
        let len = 4 * (usize::from(u16::from_be_bytes([hdr[2], hdr[3]])) + 1);
        let packet = rest.get(..len).ok_or(RtcpError::Truncated)?;
        rest = rest.get(len..).unwrap_or(&[]);
        let mut body = packet.get(4..).unwrap_or(&[]);
        if padding {
            let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = body.get(..body.len() - pad).unwrap_or(&[]);
        }
        out.push(match pt {
            PT_SR => {
                let bad = RtcpError::BadBody(pt);
                let info = SenderInfo {
                    ntp: NtpTime(
                        (u64::from(be32(body, 4).ok_or(bad)?) << 32)
                            | u64::from(be32(body, 8).ok_or(bad)?),
                    ),
                    rtp_ts: be32(body, 12).ok_or(bad)?,
                    packet_count: be32(body, 16).ok_or(bad)?,
                    octet_count: be32(body, 20).ok_or(bad)?,
                };
                RtcpPacket::Sr(SenderReport {
                    ssrc: be32(body, 0).ok_or(bad)?,
                    info,
                    blocks: parse_blocks(body, 24, count, pt)?,
                })
            }
            PT_RR => RtcpPacket::Rr(ReceiverReport {
                ssrc: be32(body, 0).ok_or(RtcpError::BadBody(pt))?,
                blocks: parse_blocks(body, 4, count, pt)?,
            }),
            PT_BYE => RtcpPacket::Bye(
                (0..count)
                    .map(|i| be32(body, 4 * i).ok_or(RtcpError::BadBody(pt)))
                    .collect::<Result<_, _>>()?,
            ),
            other => RtcpPacket::Other { packet_type: other },
        });
    }
    Ok(out)
}

/// Writes the common header; `words` is the body length in 32-bit words.
fn header(out: &mut Vec<u8>, count: usize, pt: u8, words: usize) {
    out.push(0x80 | (count.min(MAX_BLOCKS) as u8));
    out.push(pt);
    out.extend_from_slice(&(words as u16).to_be_bytes());
}

fn write_block(out: &mut Vec<u8>, b: &ReportBlock) {
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

/// Appends an SR. Blocks past the 31st are not written (the count field cannot say more).
pub fn write_sr(sr: &SenderReport, out: &mut Vec<u8>) {
    let blocks = &sr.blocks[..sr.blocks.len().min(MAX_BLOCKS)];
    header(out, blocks.len(), PT_SR, 6 + 6 * blocks.len());
    out.extend_from_slice(&sr.ssrc.to_be_bytes());
    out.extend_from_slice(&sr.info.ntp.0.to_be_bytes());
    out.extend_from_slice(&sr.info.rtp_ts.to_be_bytes());
    out.extend_from_slice(&sr.info.packet_count.to_be_bytes());
    out.extend_from_slice(&sr.info.octet_count.to_be_bytes());
    for b in blocks {
        write_block(out, b);
    }
}

/// Appends an RR (at most 31 blocks, as for [`write_sr`]).
pub fn write_rr(rr: &ReceiverReport, out: &mut Vec<u8>) {
    let blocks = &rr.blocks[..rr.blocks.len().min(MAX_BLOCKS)];
    header(out, blocks.len(), PT_RR, 1 + 6 * blocks.len());
    out.extend_from_slice(&rr.ssrc.to_be_bytes());
    for b in blocks {
        write_block(out, b);
    }
}

/// Appends an SDES with one chunk holding a CNAME (required in every compound packet,
/// §6.1). The CNAME is cut at 255 bytes, the item length limit.
pub fn write_sdes_cname(ssrc: u32, cname: &str, out: &mut Vec<u8>) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // ssrc + type + len + name + at least one null terminator, padded to 32 bits
    let chunk = 4 + 2 + name.len();
    let padded = (chunk + 1).div_ceil(4) * 4;
    header(out, 1, PT_SDES, padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1); // CNAME
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + padded - chunk, 0);
}

/// Appends a BYE for `ssrc` (no reason).
pub fn write_bye(ssrc: u32, out: &mut Vec<u8>) {
    header(out, 1, PT_BYE, 1);
    out.extend_from_slice(&ssrc.to_be_bytes());
}

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// Reception statistics for one remote source: RFC 3550 §A.1 (`update_seq`, with its
/// probation and restart on a confirmed jump), §A.3 (loss) and §A.8 (jitter).
#[derive(Debug, Clone)]
pub struct ReceptionStats {
    ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    last_transit: Option<u32>,
    /// §A.8 jitter scaled by 16 (the RFC's integer form), in u64 so hostile timestamps
    /// cannot overflow it.
    jitter16: u64,
    last_sr: u32,
    last_sr_at: Option<Instant>,
    started: bool,
}

impl ReceptionStats {
    /// Starts in probation; the first packet's sequence number is taken on arrival.
    pub fn new(ssrc: u32) -> Self {
        ReceptionStats {
            ssrc,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter16: 0,
            last_sr: 0,
            last_sr_at: None,
            started: false,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// §A.1 `update_seq`: false for packets not counted (probation, or an unconfirmed jump).
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= (RTP_SEQ_MOD - u32::from(MAX_MISORDER)) as u16 {
            if u32::from(seq) == self.bad_seq {
                // two sequential packets after a big jump: the source restarted
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered, counted as received (§A.3)
        self.received = self.received.wrapping_add(1);
        true
    }

    /// One RTP packet from this source. `arrival_rtp_ts` is the arrival time in the same
    /// units as `ts` (see [`RtpClock`]). Returns whether the packet passed §A.1 validation.
    pub fn on_packet(&mut self, seq: u16, ts: u32, arrival_rtp_ts: u32) -> bool {
        if !self.started {
            // first packet ever: §A.1 initialisation, then probation
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        if !self.update_seq(seq) {
            return false;
        }
        // §A.8: D(i-1,i) from relative transit times, J += (|D| - J) / 16
        let transit = arrival_rtp_ts.wrapping_sub(ts);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        true
    }

    /// Records an SR from this source for the LSR/DLSR fields of our next block.
    pub fn on_sender_report(&mut self, ntp: NtpTime, now: Instant) {
        self.last_sr = ntp.middle32();
        self.last_sr_at = Some(now);
    }

    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected since the first counted one (§A.3).
    pub fn expected(&self) -> u32 {
        if self.received == 0 {
            return 0;
        }
        self.extended_max_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative loss, clamped to the 24-bit signed field (§A.3).
    pub fn cumulative_lost(&self) -> i32 {
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter16 >> 4).min(u64::from(u32::MAX)) as u32
    }

    /// The report block for this source; starts a new interval for `fraction_lost`.
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let delay_since_last_sr = match self.last_sr_at {
            Some(at) => {
                let d = now.saturating_duration_since(at);
                (d.as_nanos() * 65536 / 1_000_000_000).min(u128::from(u32::MAX)) as u32
            }
            None => 0,
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            highest_seq: self.extended_max_seq(),
            jitter: self.jitter(),
            last_sr: self.last_sr,
            delay_since_last_sr,
        }
    }
}

/// What an SR says about our own sending: packets and payload octets (§6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub packets: u32,
    pub octets: u32,
}

impl SenderStats {
    /// One RTP packet sent with `payload_len` payload octets (header and padding excluded).
    pub fn on_sent(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// Sender info for an SR sent at wall-clock `now`, whose media time is `rtp_ts`.
    pub fn sender_info(&self, now: SystemTime, rtp_ts: u32) -> SenderInfo {
        SenderInfo {
            ntp: NtpTime::from_system_time(now),
            rtp_ts,
            packet_count: self.packets,
            octet_count: self.octets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32, lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 64,
            cumulative_lost: lost,
            highest_seq: 0x0001_0005,
            jitter: 37,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(
            NtpTime::from_system_time(UNIX_EPOCH).0,
            NTP_UNIX_OFFSET << 32
        );
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        let n = NtpTime::from_system_time(t);
        assert_eq!(n.0 >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(n.0 & 0xffff_ffff, 0x8000_0000);
        assert_eq!(
            n.middle32(),
            (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000
        );
        // before 1970: clamped, not a panic
        let early = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(NtpTime::from_system_time(early).0, NTP_UNIX_OFFSET << 32);
    }

    #[test]
    fn rtp_clock() {
        let t0 = Instant::now();
        let c = RtpClock::new(t0, 8000);
        assert_eq!(c.rtp_ts(t0), 0);
        assert_eq!(c.rtp_ts(t0 + Duration::from_millis(20)), 160);
        assert_eq!(c.rtp_ts(t0 + Duration::from_secs(1)), 8000);
    }

    #[test]
    fn sr_rr_compound_round_trip_with_sdes_and_bye() {
        let sr = SenderReport {
            ssrc: 0xaabb_ccdd,
            info: SenderInfo {
                ntp: NtpTime(0x0102_0304_0506_0708),
                rtp_ts: 160_000,
                packet_count: 1000,
                octet_count: 160_000,
            },
            blocks: vec![block(1, 25), block(2, -3)],
        };
        let rr = ReceiverReport {
            ssrc: 7,
            blocks: vec![block(3, 0x7f_ffff)],
        };
        let mut buf = Vec::new();
        write_sr(&sr, &mut buf);
        assert_eq!(buf.len(), 28 + 2 * 24);
        write_sdes_cname(sr.ssrc, "hotline@gw1", &mut buf);
        write_rr(&rr, &mut buf);
        write_bye(sr.ssrc, &mut buf);
        assert_eq!(buf.len() % 4, 0);
        let got = parse_compound(&buf).unwrap();
        assert_eq!(
            got,
            vec![
                RtcpPacket::Sr(sr),
                RtcpPacket::Other {
                    packet_type: PT_SDES
                },
                RtcpPacket::Rr(rr),
                RtcpPacket::Bye(vec![0xaabb_ccdd]),
            ]
        );
    }

    #[test]
    fn sdes_lengths_are_word_aligned() {
        for n in 0..12 {
            let name = "x".repeat(n);
            let mut buf = Vec::new();
            write_sdes_cname(1, &name, &mut buf);
            assert_eq!(buf.len() % 4, 0, "{n}");
            let words = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            assert_eq!((words + 1) * 4, buf.len());
            // at least one null after the item
            assert_eq!(buf[8 + 2 + n], 0);
        }
    }

    #[test]
    fn skips_app_and_unknown_and_padding() {
        let mut buf = Vec::new();
        write_rr(
            &ReceiverReport {
                ssrc: 9,
                blocks: vec![],
            },
            &mut buf,
        );
        // APP: subtype 0, ssrc, name, 4 bytes data
        buf.extend_from_slice(&[
            0x80, PT_APP, 0, 3, 0, 0, 0, 9, b'A', b'B', b'C', b'D', 1, 2, 3, 4,
        ]);
        // an XR (207) with padding: 4 bytes body of which 4 are padding
        buf.extend_from_slice(&[0xa0, 207, 0, 1, 0, 0, 0, 4]);
        let got = parse_compound(&buf).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            RtcpPacket::Other {
                packet_type: PT_APP
            }
        );
        assert_eq!(got[2], RtcpPacket::Other { packet_type: 207 });
    }

    #[test]
    fn rejects_malformed_without_panic() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::TooShort));
        assert_eq!(parse_compound(&[0x80, 201]), Err(RtcpError::TooShort));
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::BadVersion(1))
        );
        // length says 2 words, only 1 present
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 2, 0, 0, 0, 1]),
            Err(RtcpError::Truncated)
        );
        // RR claiming 31 blocks with none present
        assert_eq!(
            parse_compound(&[0x9f, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::BadBody(PT_RR))
        );
        // SR too short for sender info
        assert_eq!(
            parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::BadBody(PT_SR))
        );
        // padding count larger than the body
        assert_eq!(
            parse_compound(&[0xa0, 201, 0, 1, 0, 0, 0, 9]),
            Err(RtcpError::BadPadding)
        );
        // mutation sweep over a real compound packet
        let mut buf = Vec::new();
        write_sr(
            &SenderReport {
                ssrc: 1,
                info: SenderInfo::default(),
                blocks: vec![block(2, 1)],
            },
            &mut buf,
        );
        write_sdes_cname(1, "a", &mut buf);
        for n in 0..=buf.len() {
            let _ = parse_compound(&buf[..n]);
        }
        for i in 0..buf.len() {
            for v in [0u8, 0x1f, 0x20, 0x3f, 0x80, 0xbf, 0xff] {
                let mut m = buf.clone();
                m[i] = v;
                let _ = parse_compound(&m);
            }
        }
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed() {
        for lost in [0, 1, -1, 0x7f_ffff, -0x80_0000, 50_000_000, -50_000_000] {
            let mut buf = Vec::new();
            write_rr(
                &ReceiverReport {
                    ssrc: 1,
                    blocks: vec![block(2, lost)],
                },
                &mut buf,
            );
            let Ok(got) = parse_compound(&buf) else {
                panic!()
            };
            let RtcpPacket::Rr(rr) = &got[0] else {
                panic!()
            };
            assert_eq!(
                rr.blocks[0].cumulative_lost,
                lost.clamp(-0x80_0000, 0x7f_ffff)
            );
            assert_eq!(rr.blocks[0].fraction_lost, 64);
        }
    }

    #[test]
    fn reception_stats_probation_then_counts() {
        let mut s = ReceptionStats::new(5);
        assert!(!s.on_packet(100, 0, 0), "first packet is on probation");
        assert!(s.on_packet(101, 160, 160));
        assert_eq!(s.received(), 1);
        assert_eq!(s.expected(), 1);
        for seq in 102..=110u16 {
            assert!(s.on_packet(seq, 0, 0));
        }
        assert_eq!(
            (s.expected(), s.received(), s.cumulative_lost()),
            (10, 10, 0)
        );
    }

    fn started(seq: u16) -> ReceptionStats {
        let mut s = ReceptionStats::new(1);
        s.on_packet(seq.wrapping_sub(1), 0, 0);
        s.on_packet(seq, 0, 0);
        s
    }

    #[test]
    fn loss_and_fraction_per_a3() {
        let mut s = started(0);
        // 100 expected (0..=99), 75 received: every 4th lost
        for seq in 1..100u16 {
            if seq % 4 != 0 {
                s.on_packet(seq, 0, 0);
            }
        }
        assert_eq!(s.expected(), 100);
        assert_eq!(s.received(), 76); // 0 plus 75 of 1..=99
        let b = s.report_block(Instant::now());
        assert_eq!(b.cumulative_lost, 24);
        assert_eq!(b.fraction_lost, ((24u32 << 8) / 100) as u8);
        // next interval: nothing lost, fraction 0, cumulative unchanged
        for seq in 100..150u16 {
            s.on_packet(seq, 0, 0);
        }
        let b = s.report_block(Instant::now());
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 24));
        // duplicates make the interval loss negative: fraction clamps to 0 (§A.3)
        for _ in 0..10 {
            s.on_packet(149, 0, 0);
        }
        let b = s.report_block(Instant::now());
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 14));
        assert_eq!(s.cumulative_lost(), 14);
        // a jump within MAX_DROPOUT: 250 of 251 lost in the interval
        s.on_packet(400, 0, 0);
        assert_eq!(
            s.report_block(Instant::now()).fraction_lost,
            (250u32 * 256 / 251) as u8
        );
    }

    #[test]
    fn sequence_wrap_counts_cycles() {
        let mut s = started(65530);
        for i in 1..=20u16 {
            s.on_packet(65530u16.wrapping_add(i), 0, 0);
        }
        assert_eq!(s.extended_max_seq(), (1 << 16) + 14);
        assert_eq!((s.expected(), s.cumulative_lost()), (21, 0));
        assert_eq!(s.report_block(Instant::now()).highest_seq, 0x0001_000e);
    }

    #[test]
    fn big_jump_needs_two_sequential_packets() {
        let mut s = started(10);
        assert!(!s.on_packet(30000, 0, 0), "lone jump not counted");
        assert!(!s.on_packet(11 + 5000, 0, 0));
        assert!(s.on_packet(11, 0, 0));
        assert!(!s.on_packet(40000, 0, 0));
        assert!(s.on_packet(40001, 0, 0), "confirmed restart");
        assert_eq!((s.expected(), s.received()), (1, 1));
    }

    #[test]
    fn jitter_per_a8() {
        // constant transit: zero jitter
        let mut s = started(0);
        for i in 1..50u32 {
            s.on_packet(i as u16, i * 160, i * 160);
        }
        assert_eq!(s.jitter(), 0);
        // transit alternating by 80 units: J converges to 80
        let mut s = started(0);
        for i in 1..2000u32 {
            let wobble = if i % 2 == 0 { 80 } else { 0 };
            s.on_packet(i as u16, i * 160, i * 160 + wobble);
        }
        assert!((79..=80).contains(&s.jitter()), "{}", s.jitter());
        // one step of the recurrence exactly: J = 0 + (|D| - 0)/16 with D = 320
        let mut s = started(0);
        s.on_packet(1, 160, 160);
        s.on_packet(2, 320, 640);
        assert_eq!(s.jitter(), 20);
        // hostile timestamps do not overflow
        let mut s = started(0);
        for i in 1..1000u32 {
            s.on_packet(i as u16, i.wrapping_mul(0x9e37_79b9), 0);
        }
        assert!(s.jitter() <= i32::MAX as u32);
    }

    #[test]
    fn lsr_dlsr_and_rtt() {
        let t0 = Instant::now();
        let mut s = started(0);
        let sr_ntp = NtpTime::from_system_time(UNIX_EPOCH + Duration::from_secs(1000));
        s.on_sender_report(sr_ntp, t0);
        let b = s.report_block(t0 + Duration::from_millis(500));
        assert_eq!(b.last_sr, sr_ntp.middle32());
        assert_eq!(b.delay_since_last_sr, 32768);
        // the peer receives our block 100 ms after its SR + our 500 ms hold
        let arrival = NtpTime::from_system_time(UNIX_EPOCH + Duration::from_millis(1_000_600));
        let rtt = b.round_trip(arrival).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(100)) < Duration::from_millis(1));
        assert_eq!(ReportBlock::default().round_trip(arrival), None);
    }

    #[test]
    fn sender_stats_for_sr() {
        let mut st = SenderStats::default();
        for _ in 0..50 {
            st.on_sent(160);
        }
        let info = st.sender_info(UNIX_EPOCH, 8000);
        assert_eq!(
            (info.packet_count, info.octet_count, info.rtp_ts),
            (50, 8000, 8000)
        );
        st.octets = u32::MAX;
        st.on_sent(2); // wraps like the 32-bit field
        assert_eq!(st.octets, 1);
    }
}
