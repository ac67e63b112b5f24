//! Call lifecycle events: the one call event bus. The SIP core emits them,
//! the store persists them, and later the media plane, ASR, IVR and QA add
//! their own variants and consumers.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

/// Gateway-wide call identifier: a UUIDv7 string, so ids sort by start
/// time and stay unique across several gateways sharing one database.
pub type CallId = String;

pub fn new_call_id() -> CallId {
    uuid::Uuid::now_v7().to_string()
}

/// How the SIP request reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Why a call ended. Stored as its `as_str()` form; later issues add
/// reasons (e.g. `rtp-timeout`), so readers must accept unknown strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum EndReason {
    /// The caller sent BYE.
    CallerBye,
    /// We sent BYE (hangup policy, session timer expiry, shutdown).
    GatewayBye,
    /// The caller cancelled before answer.
    Cancel,
    /// No ACK for our 2xx within 64*T1 (RFC 3261 13.3.1.4) or session
    /// timer expiry without refresh.
    Timeout,
    /// Rejected with this final status (403, 488, 503, ...).
    Rejected(u16),
    /// The gateway stopped while the call was up.
    Shutdown,
    /// Found open at start-up: the previous process died with the call up.
    Crash,
    /// No RTP from the peer for the configured time (hold excepted).
    RtpTimeout,
}

impl EndReason {
    pub fn as_str(&self) -> String {
        match self {
            EndReason::CallerBye => "caller-bye".into(),
            EndReason::GatewayBye => "gateway-bye".into(),
            EndReason::Cancel => "cancel".into(),
            EndReason::Timeout => "timeout".into(),
            EndReason::Rejected(code) => format!("rejected-{code}"),
            EndReason::Shutdown => "shutdown".into(),
            EndReason::Crash => "crash".into(),
            EndReason::RtpTimeout => "rtp-timeout".into(),
        }
    }

    /// The SIP status that ended the call, when there is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            EndReason::Rejected(code) => Some(*code),
            EndReason::Cancel => Some(487),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// An INVITE that created a dialog attempt (before admission checks
    /// that may reject it, so rejected calls leave a record too).
    Started {
        id: CallId,
        sip_call_id: String,
        /// From header value as received (display name, URI, tag).
        from: String,
        /// Dialed number: the To URI's user part, or the whole To URI.
        to: String,
        source: SocketAddr,
        transport: Transport,
        at: SystemTime,
    },
    Answered {
        id: CallId,
        at: SystemTime,
    },
    Ended {
        id: CallId,
        at: SystemTime,
        reason: EndReason,
    },
    /// The negotiated audio codec (again on every renegotiation).
    Media {
        id: CallId,
        codec: String,
        remote_rtp: Option<SocketAddr>,
    },
    /// One key press, whichever way it arrived.
    Digit {
        id: CallId,
        key: char,
        /// Milliseconds from the answer (the recording's time zero).
        at_ms: u64,
        /// `rfc4733`, `info` or `inband`.
        source: &'static str,
        duration_ms: Option<u32>,
    },
    /// Where the call's recording is, as soon as the file exists.
    Recording {
        id: CallId,
        path: String,
    },
    /// Receive/send statistics, written when the media stops.
    RtpStats {
        id: CallId,
        stats: RtpStats,
    },
    /// A final transcript of one utterance (partials go only to the live feed).
    Segment {
        id: CallId,
        /// `caller` or `gateway`.
        channel: &'static str,
        /// Utterance number on that side (0, 1, ...).
        utterance: u64,
        /// Milliseconds from the answer (the recording's time zero).
        start_ms: u64,
        end_ms: u64,
        text: String,
        /// When the end of the utterance was decided (the final's latency
        /// runs from here to when the store writes it).
        eou_at: SystemTime,
        /// Time whisper spent on the final decode (queueing excluded).
        decode_ms: u64,
    },
}

/// What the media plane measured for one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RtpStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Packets from sources other than the latched peer.
    pub rejected: u64,
    /// RTCP compound packets received from the peer.
    pub rtcp_received: u64,
    /// The peer's last report on our stream (RFC 3550 6.4): packets it lost,
    /// its interarrival jitter, and the round trip from its LSR/DLSR.
    pub peer_lost: Option<i64>,
    pub peer_jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
}

impl Eq for RtpStats {}

impl CallEvent {
    pub fn call_id(&self) -> &str {
        match self {
            CallEvent::Started { id, .. }
            | CallEvent::Answered { id, .. }
            | CallEvent::Ended { id, .. }
            | CallEvent::Media { id, .. }
            | CallEvent::Digit { id, .. }
            | CallEvent::Recording { id, .. }
            | CallEvent::RtpStats { id, .. }
            | CallEvent::Segment { id, .. } => id,
        }
    }
}
