//! SIP message layer (RFC 3261): types, sans-IO parser and serializer.

pub mod message;
pub mod parse;

pub use message::{
    can_reply, canonical_name, CSeq, Contacts, Header, Headers, Message, Method, NameAddr, Param,
    Request, Response, Uri, Via, SIP_VERSION,
};
pub use parse::{
    parse, parse_for_reply, parse_stream, ParseError, ParseFailure, MAX_HEADERS, MAX_HEADER_LINE,
    MAX_MESSAGE,
};
