//! The SIP/RTP gateway: SIP, SDP, RTP, media, calls, the IVR runtime and the HTTP API.
//!
//! So far: the SIP message layer (`sip`: parser, typed headers, serializer) and SDP offer/
//! answer for G.711 + telephone-event (`sdp`). Transactions,
//! dialogs, transports and the media plane follow with the SIP and media issues.
//! The G.711 companding lives in
//! `hotline_asr::g711` (the recognizer's telephone simulation needs it too); `codec` builds
//! the gateway's codec seam on it, and `dtmf` turns RFC 4733 events, SIP INFO and in-band
//! tones into one `Digit` per key press.

pub mod api;
pub mod call;
pub mod call_media;
pub mod codec;
pub mod config;
pub mod dtmf;
pub mod media;
pub mod rtp;
pub mod sdp;
pub mod serve;
pub mod sip;
pub mod store;
pub mod transport;
