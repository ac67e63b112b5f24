//! The SIP/RTP gateway: SIP (message layer, transactions, dialogs, the UAS
//! endpoint), SDP, RTP (packets, jitter buffer, RTCP, latching), G.711,
//! DTMF, prompt playback and recording, the call store and config, and the
//! tokio drivers (`transport`, `call_media`, `serve`) plus the HTTP API.
//! Protocol cores are sans-IO; see docs/ARCHITECTURE.md for the map.

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
pub mod transcript;
pub mod transport;
