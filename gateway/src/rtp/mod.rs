//! RTP media transport, sans-IO: packet format, RTCP reports and statistics, the jitter
//! buffer, and the per-call peer logic (latching, RTP/RTCP demultiplexing).
//!
//! Nothing here touches a socket or a clock: the media driver hands in datagrams with
//! their source and arrival `Instant`, and calls `JitterBuffer::pop` on its 20 ms tick.
//!
//! - [`packet`]: RTP header parse/serialise (RFC 3550 §5.1), RFC 5761 demux rule.
//! - [`rtcp`]: SR/RR/SDES/BYE (RFC 3550 §6.4), reception stats (§A.1, §A.3, §A.8), NTP time.
//! - [`jitter`]: adaptive jitter buffer and loss concealment.
//! - [`session`]: symmetric RTP latching and which port/address media goes to.

pub mod jitter;
pub mod packet;
pub mod rtcp;
pub mod session;

pub use jitter::{Concealer, JitterBuffer, JitterConfig, JitterStats, Playout};
pub use packet::{classify, parse, write, PacketKind, RtpError, RtpHeader, RtpPacket};
pub use session::{Accepted, DropReason, RtpSession, SessionConfig, Verdict};
