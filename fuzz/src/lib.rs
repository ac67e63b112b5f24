//! The gateway's SIP message layer, compiled from its own source files.
//!
//! `message.rs` and `parse.rs` only need `std` and `thiserror`, so the fuzz
//! build includes them directly instead of depending on `hotline-gateway`,
//! whose dependency tree (whisper.cpp, SQLite, tokio) would have to be
//! rebuilt under the sanitizer for no coverage gain. The two files refer to
//! each other through `super::`, which here is this crate's root.

#[path = "../../gateway/src/sip/message.rs"]
pub mod message;
#[path = "../../gateway/src/sip/parse.rs"]
pub mod parse;
