//! Per-call RTP peer logic, sans-IO: which source we accept media from, where we send
//! ours, and RTP/RTCP demultiplexing (rtcp-mux on one port, or RTCP on port + 1).
//!
//! # Latching rule (symmetric RTP, RFC 4961 style)
//!
//! PBXes and SBCs behind NAT send from an address that is not the one in their SDP, so
//! the gateway sends to where the peer's packets actually come from:
//!
//! 1. **Unlatched**: the first RTP packet that parses (version 2, sane lengths) latches
//!    the session to its source address and SSRC. With `strict_source`, only a packet
//!    whose source IP equals the SDP connection address can latch (any port: SBCs often
//!    send from a port other than the one they advertise).
//! 2. **Latched to (A, S)**: packets from A are accepted whatever their SSRC (an SSRC
//!    change from the same address is the jitter buffer's business: it resets). Packets
//!    from any other address are dropped and counted, except:
//! 3. **Re-latch** to B when A has sent nothing for `relatch_after` (1 s) and either
//!    - B's packets carry an SSRC other than S (a new stream: transfer, media server
//!      switch), or
//!    - B's packets carry S and B has A's IP (NAT rebinding: same host, new port),
//!
//!    and B proves itself with two packets in sequence (seq n, then n+1, the RFC 3550
//!    §A.1 probation), so one stray or spoofed datagram cannot steal the call's media.
//!    The first of the two is dropped. Under `strict_source` B must still have the SDP IP.
//!    Same SSRC from a different IP is never re-latched (that is not a rebinding we can
//!    tell from a replay).
//! 4. A new SDP from the peer (`set_remote` with a different address) unlatches.
//!
//! RTCP is accepted from the latched address (or, before latching, under the rule for
//! the first RTP packet); on the separate RTCP port, from the latched IP, and its source
//! address is latched for sending RTCP back. RTCP arriving on the RTP port is accepted
//! even without `a=rtcp-mux`: the RFC 5761 packet-type rule tells them apart safely.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::packet::{self, PacketKind, RtpPacket};
use super::rtcp::{self, RtcpPacket};

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// RTP address from the peer's SDP (`c=` + `m=` port).
    pub remote_rtp: Option<SocketAddr>,
    /// RTCP address from the SDP (`a=rtcp:`), else RTP port + 1; unused with rtcp-mux.
    pub remote_rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux` negotiated: RTCP shares the RTP port both ways.
    pub rtcp_mux: bool,
    /// Accept (and latch) only sources with the SDP's IP.
    pub strict_source: bool,
    /// Silence of the latched source before another may take over.
    pub relatch_after: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            remote_rtp: None,
            remote_rtcp: None,
            rtcp_mux: false,
            strict_source: false,
            relatch_after: Duration::from_secs(1),
        }
    }
}

/// Why the session latched (or re-latched) onto a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latch {
    First,
    NewSsrc,
    NatRebinding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted<'a> {
    Rtp {
        packet: RtpPacket<'a>,
        /// Set when this packet (re)latched the session: `send_to` changed.
        latched: Option<Latch>,
    },
    Rtcp(Vec<RtcpPacket>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not RTP/RTCP version 2 (STUN, DTLS, garbage), or RTP on the RTCP port.
    NotMedia,
    Malformed,
    /// From a source other than the latched one.
    UnexpectedSource,
    /// Strict mode: source IP is not the SDP's.
    NotSdpSource,
    /// First packet of a would-be re-latch, waiting for its successor.
    RelatchProbation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    Accepted(Accepted<'a>),
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub rtp: u64,
    pub rtcp: u64,
    pub not_media: u64,
    pub malformed: u64,
    pub wrong_source: u64,
    pub relatches: u64,
}

#[derive(Debug, Clone, Copy)]
struct Latched {
    addr: SocketAddr,
    ssrc: u32,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    next_seq: u16,
    kind: Latch,
}

#[derive(Debug)]
pub struct RtpSession {
    cfg: SessionConfig,
    latched: Option<Latched>,
    candidate: Option<Candidate>,
    rtcp_from: Option<SocketAddr>,
    last_rtp: Option<Instant>,
    stats: SessionStats,
}

impl RtpSession {
    pub fn new(cfg: SessionConfig) -> Self {
        RtpSession {
            cfg,
            latched: None,
            candidate: None,
            rtcp_from: None,
            last_rtp: None,
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// When the last accepted RTP packet arrived (for the inactivity timeout).
    pub fn last_rtp_at(&self) -> Option<Instant> {
        self.last_rtp
    }

    /// Where to send RTP: the latched source, else the SDP address.
    pub fn send_to(&self) -> Option<SocketAddr> {
        self.latched.map(|l| l.addr).or(self.cfg.remote_rtp)
    }

    /// Where to send RTCP: the RTP destination with rtcp-mux; else where the peer's RTCP
    /// comes from, else the SDP's RTCP address, else the RTP destination's port + 1.
    pub fn rtcp_send_to(&self) -> Option<SocketAddr> {
        if self.cfg.rtcp_mux {
            return self.send_to();
        }
        self.rtcp_from.or(self.cfg.remote_rtcp).or_else(|| {
            self.send_to().map(|mut a| {
                a.set_port(a.port().wrapping_add(1));
                a
            })
        })
    }

    /// A new SDP from the peer (re-INVITE, UPDATE). A changed RTP address unlatches:
    /// the media is moving, so the first packet from anywhere (rule 1) latches again.
    pub fn set_remote(&mut self, cfg: SessionConfig) {
        if cfg.remote_rtp != self.cfg.remote_rtp {
            self.latched = None;
            self.candidate = None;
            self.rtcp_from = None;
        }
        self.cfg = cfg;
    }

    fn sdp_ip_ok(&self, from: SocketAddr) -> bool {
        !self.cfg.strict_source || self.cfg.remote_rtp.is_some_and(|r| r.ip() == from.ip())
    }

    fn drop(&mut self, reason: DropReason) -> Verdict<'static> {
        match reason {
            DropReason::NotMedia => self.stats.not_media += 1,
            DropReason::Malformed => self.stats.malformed += 1,
            _ => self.stats.wrong_source += 1,
        }
        Verdict::Dropped(reason)
    }

    /// A datagram on the RTP port: RTP, or RTCP multiplexed by packet type (RFC 5761).
    pub fn on_packet<'a>(
        &mut self,
        from: SocketAddr,
        bytes: &'a [u8],
        now: Instant,
    ) -> Verdict<'a> {
        match packet::classify(bytes) {
            PacketKind::Other => self.drop(DropReason::NotMedia),
            PacketKind::Rtcp => self.on_rtcp(from, bytes, false),
            PacketKind::Rtp => match packet::parse(bytes) {
                Ok(p) => self.on_rtp(from, p, now),
                Err(_) => self.drop(DropReason::Malformed),
            },
        }
    }

    /// A datagram on the separate RTCP port (RTP port + 1).
    pub fn on_rtcp_port(&mut self, from: SocketAddr, bytes: &[u8]) -> Verdict<'static> {
        match packet::classify(bytes) {
            PacketKind::Rtcp => self.on_rtcp(from, bytes, true),
            _ => self.drop(DropReason::NotMedia),
        }
    }

    fn on_rtcp(&mut self, from: SocketAddr, bytes: &[u8], own_port: bool) -> Verdict<'static> {
        let allowed = match self.latched {
            Some(l) if own_port => l.addr.ip() == from.ip(),
            Some(l) => l.addr == from,
            None => self.sdp_ip_ok(from),
        };
        if !allowed {
            return self.drop(DropReason::UnexpectedSource);
        }
        match rtcp::parse_compound(bytes) {
            Ok(packets) => {
                if own_port {
                    self.rtcp_from = Some(from);
                }
                self.stats.rtcp += 1;
                Verdict::Accepted(Accepted::Rtcp(packets))
            }
            Err(_) => self.drop(DropReason::Malformed),
        }
    }

    fn on_rtp<'a>(&mut self, from: SocketAddr, p: RtpPacket<'a>, now: Instant) -> Verdict<'a> {
        let ssrc = p.header.ssrc;
        let latched = match self.latched {
            None => {
                if !self.sdp_ip_ok(from) {
                    return self.drop(DropReason::NotSdpSource);
                }
                Some(Latch::First)
            }
            Some(l) if l.addr == from => None,
            Some(l) => {
                if !self.sdp_ip_ok(from) {
                    return self.drop(DropReason::NotSdpSource);
                }
                let silent = now.saturating_duration_since(l.last_seen) >= self.cfg.relatch_after;
                let kind = if ssrc != l.ssrc {
                    Latch::NewSsrc
                } else if from.ip() == l.addr.ip() {
                    Latch::NatRebinding
                } else {
                    return self.drop(DropReason::UnexpectedSource);
                };
                if !silent {
                    return self.drop(DropReason::UnexpectedSource);
                }
                let seq = p.header.sequence;
                match self.candidate {
                    Some(c) if c.addr == from && c.ssrc == ssrc && c.next_seq == seq => {
                        self.stats.relatches += 1;
                        Some(c.kind)
                    }
                    _ => {
                        self.candidate = Some(Candidate {
                            addr: from,
                            ssrc,
                            next_seq: seq.wrapping_add(1),
                            kind,
                        });
                        return self.drop(DropReason::RelatchProbation);
                    }
                }
            }
        };
        if latched.is_some() {
            self.candidate = None;
        }
        self.latched = Some(Latched {
            addr: from,
            ssrc,
            last_seen: now,
        });
        self.last_rtp = Some(now);
        self.stats.rtp += 1;
        Verdict::Accepted(Accepted::Rtp { packet: p, latched })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::{write, RtpHeader};
    use crate::rtp::rtcp::{write_rr, ReceiverReport};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut out = Vec::new();
        write(
            &RtpHeader::new(0, seq, u32::from(seq) * 160, ssrc),
            &[0xff; 160],
            &mut out,
        );
        out
    }

    fn rr() -> Vec<u8> {
        let mut out = Vec::new();
        write_rr(
            &ReceiverReport {
                ssrc: 1,
                blocks: vec![],
            },
            &mut out,
        );
        out
    }

    const SDP: &str = "10.0.0.7:40000";
    const NAT: &str = "203.0.113.5:51234";

    fn session(strict: bool) -> RtpSession {
        RtpSession::new(SessionConfig {
            remote_rtp: Some(addr(SDP)),
            strict_source: strict,
            ..SessionConfig::default()
        })
    }

    fn accepted_latch(v: Verdict<'_>) -> Option<Latch> {
        match v {
            Verdict::Accepted(Accepted::Rtp { latched, .. }) => latched,
            other => panic!("expected RTP accepted, got {other:?}"),
        }
    }

    #[test]
    fn first_packet_latches_and_sets_send_to() {
        let t = Instant::now();
        let mut s = session(false);
        assert_eq!(s.send_to(), Some(addr(SDP)));
        assert_eq!(s.rtcp_send_to(), Some(addr("10.0.0.7:40001")));
        assert_eq!(
            accepted_latch(s.on_packet(addr(NAT), &rtp(1, 10), t)),
            Some(Latch::First)
        );
        assert_eq!(s.send_to(), Some(addr(NAT)));
        assert_eq!(accepted_latch(s.on_packet(addr(NAT), &rtp(1, 11), t)), None);
        assert_eq!(s.last_rtp_at(), Some(t));
        assert_eq!(s.stats().rtp, 2);
    }

    #[test]
    fn strict_mode_needs_sdp_ip() {
        let t = Instant::now();
        let mut s = session(true);
        assert_eq!(
            s.on_packet(addr(NAT), &rtp(1, 10), t),
            Verdict::Dropped(DropReason::NotSdpSource)
        );
        assert_eq!(s.send_to(), Some(addr(SDP)));
        // same IP, other port: accepted
        let from = addr("10.0.0.7:40100");
        assert_eq!(
            accepted_latch(s.on_packet(from, &rtp(1, 10), t)),
            Some(Latch::First)
        );
        assert_eq!(s.send_to(), Some(from));
    }

    #[test]
    fn other_sources_dropped_while_latched_source_is_live() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        let evil = addr("198.51.100.9:4000");
        for i in 0..5u16 {
            let at = t + Duration::from_millis(20 * u64::from(i));
            s.on_packet(addr(NAT), &rtp(1, 11 + i), at);
            // different SSRC, in sequence, but the latched source is not silent
            assert_eq!(
                s.on_packet(evil, &rtp(2, 100 + i), at),
                Verdict::Dropped(DropReason::UnexpectedSource)
            );
        }
        assert_eq!(s.send_to(), Some(addr(NAT)));
        assert_eq!(s.stats().wrong_source, 5);
    }

    #[test]
    fn relatch_on_new_ssrc_after_silence_with_probation() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        let new = addr("198.51.100.9:4000");
        let later = t + Duration::from_millis(1200);
        assert_eq!(
            s.on_packet(new, &rtp(2, 500), later),
            Verdict::Dropped(DropReason::RelatchProbation)
        );
        // out of sequence: probation starts over
        assert_eq!(
            s.on_packet(new, &rtp(2, 502), later),
            Verdict::Dropped(DropReason::RelatchProbation)
        );
        assert_eq!(
            accepted_latch(s.on_packet(new, &rtp(2, 503), later)),
            Some(Latch::NewSsrc)
        );
        assert_eq!(s.send_to(), Some(new));
        // and now the old source is the stranger
        assert_eq!(
            s.on_packet(addr(NAT), &rtp(1, 11), later),
            Verdict::Dropped(DropReason::UnexpectedSource)
        );
        assert_eq!(s.stats().relatches, 1);
    }

    #[test]
    fn same_ssrc_relatches_only_as_nat_rebinding() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        let later = t + Duration::from_secs(2);
        // same SSRC from another IP: never
        let other_ip = addr("198.51.100.9:51234");
        for seq in 11..15 {
            assert_eq!(
                s.on_packet(other_ip, &rtp(1, seq), later),
                Verdict::Dropped(DropReason::UnexpectedSource)
            );
        }
        // same SSRC, same IP, new port, after silence: rebinding
        let rebound = addr("203.0.113.5:60000");
        assert_eq!(
            s.on_packet(rebound, &rtp(1, 15), later),
            Verdict::Dropped(DropReason::RelatchProbation)
        );
        assert_eq!(
            accepted_latch(s.on_packet(rebound, &rtp(1, 16), later)),
            Some(Latch::NatRebinding)
        );
        assert_eq!(s.send_to(), Some(rebound));
    }

    #[test]
    fn rebinding_not_before_silence() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        let rebound = addr("203.0.113.5:60000");
        let soon = t + Duration::from_millis(500);
        for seq in 11..14 {
            assert_eq!(
                s.on_packet(rebound, &rtp(1, seq), soon),
                Verdict::Dropped(DropReason::UnexpectedSource)
            );
        }
    }

    #[test]
    fn ssrc_change_from_latched_source_is_accepted() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        assert_eq!(accepted_latch(s.on_packet(addr(NAT), &rtp(9, 1), t)), None);
    }

    #[test]
    fn set_remote_unlatches_on_new_address() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        // same SDP again (e.g. hold re-INVITE): latch kept
        s.set_remote(SessionConfig {
            remote_rtp: Some(addr(SDP)),
            ..SessionConfig::default()
        });
        assert_eq!(s.send_to(), Some(addr(NAT)));
        let moved = addr("10.0.0.8:30000");
        s.set_remote(SessionConfig {
            remote_rtp: Some(moved),
            ..SessionConfig::default()
        });
        assert_eq!(s.send_to(), Some(moved));
        let from = addr("10.0.0.8:30002");
        assert_eq!(
            accepted_latch(s.on_packet(from, &rtp(3, 1), t)),
            Some(Latch::First)
        );
    }

    #[test]
    fn rtcp_mux_on_rtp_port() {
        let t = Instant::now();
        let mut s = RtpSession::new(SessionConfig {
            remote_rtp: Some(addr(SDP)),
            rtcp_mux: true,
            ..SessionConfig::default()
        });
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        match s.on_packet(addr(NAT), &rr(), t) {
            Verdict::Accepted(Accepted::Rtcp(p)) => assert!(matches!(p[0], RtcpPacket::Rr(_))),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.rtcp_send_to(), Some(addr(NAT)));
        // from elsewhere, or malformed
        assert_eq!(
            s.on_packet(addr("198.51.100.9:1"), &rr(), t),
            Verdict::Dropped(DropReason::UnexpectedSource)
        );
        assert_eq!(
            s.on_packet(addr(NAT), &[0x80, 201, 0, 9], t),
            Verdict::Dropped(DropReason::Malformed)
        );
        assert_eq!(s.stats().rtcp, 1);
    }

    #[test]
    fn rtcp_on_plus_one_port_latches_its_source() {
        let t = Instant::now();
        let mut s = session(false);
        s.on_packet(addr(NAT), &rtp(1, 10), t);
        let rtcp_src = addr("203.0.113.5:51235");
        assert!(matches!(
            s.on_rtcp_port(rtcp_src, &rr()),
            Verdict::Accepted(Accepted::Rtcp(_))
        ));
        assert_eq!(s.rtcp_send_to(), Some(rtcp_src));
        // another IP: dropped; RTP on the RTCP port: not media there
        assert_eq!(
            s.on_rtcp_port(addr("198.51.100.9:51235"), &rr()),
            Verdict::Dropped(DropReason::UnexpectedSource)
        );
        assert_eq!(
            s.on_rtcp_port(rtcp_src, &rtp(1, 11)),
            Verdict::Dropped(DropReason::NotMedia)
        );
    }

    #[test]
    fn garbage_never_latches() {
        let t = Instant::now();
        let mut s = session(false);
        assert_eq!(
            s.on_packet(addr(NAT), &[0, 1, 0, 0], t),
            Verdict::Dropped(DropReason::NotMedia)
        );
        assert_eq!(
            s.on_packet(addr(NAT), &[0x80, 0, 1], t),
            Verdict::Dropped(DropReason::Malformed)
        );
        assert_eq!(
            s.on_packet(addr(NAT), &[], t),
            Verdict::Dropped(DropReason::NotMedia)
        );
        assert_eq!(s.send_to(), Some(addr(SDP)));
        let st = s.stats();
        assert_eq!((st.not_media, st.malformed), (2, 1));
    }
}
