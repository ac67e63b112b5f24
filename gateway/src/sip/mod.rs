//! SIP (RFC 3261): the message layer (types, sans-IO parser and
//! serializer), transactions, dialogs, digest auth and the UAS endpoint
//! that ties them together. Everything here is sans-IO; `crate::transport`
//! moves the bytes.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod message;
pub mod multipart;
pub mod parse;
pub mod transaction;

pub use message::{
    can_reply, canonical_name, CSeq, Contacts, Header, Headers, Message, Method, NameAddr, Param,
    Request, Response, Uri, Via, SIP_VERSION,
};
pub use parse::{
    parse, parse_for_reply, parse_stream, ParseError, ParseFailure, MAX_HEADERS, MAX_HEADER_LINE,
    MAX_MESSAGE,
};
