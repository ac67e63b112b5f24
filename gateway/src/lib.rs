//! The SIP/RTP gateway: SIP, SDP, RTP, media, calls, the IVR runtime and the HTTP API.
//!
//! Empty until the SIP signalling issue: the workspace carries the crate so that the
//! binary, the layout and CI already have their final shape. The G.711 codec lives in
//! `hotline_asr::g711` (the recognizer's telephone simulation needs it too) and is
//! re-exported here as the gateway's codec.

pub mod codec {
    pub use hotline_asr::g711;
}
