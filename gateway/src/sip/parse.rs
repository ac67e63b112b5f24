//! Sans-IO SIP parser. Every function here is total: malformed input
//! yields an error, never a panic, because the bytes come off the network.
//!
//! This file and `message.rs` refer to each other only through `super::`
//! and depend on nothing but `std` and `thiserror`: the fuzz crate
//! (`fuzz/`) compiles them on their own, without the rest of the gateway.

use std::borrow::Cow;

use super::message::{
    can_reply, Headers, Message, Method, NameAddr, Param, Request, Response, Uri, Via, SIP_VERSION,
};

/// Bounds what one peer can make us buffer or scan.
pub const MAX_MESSAGE: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 256;
pub const MAX_HEADER_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed status line")]
    BadStatusLine,
    /// Answer 505.
    #[error("unsupported SIP version")]
    BadVersion,
    #[error("malformed Request-URI")]
    BadUri,
    /// Never produced by `parse`; see `Request::check_uri_scheme` (416).
    #[error("unsupported URI scheme {scheme}")]
    UnsupportedUriScheme { scheme: String },
    #[error("malformed header {name}")]
    BadHeader { name: String },
    #[error("missing header {name}")]
    MissingHeader { name: String },
    #[error("CSeq method does not match request method")]
    CSeqMismatch,
    #[error("message exceeds size limits")]
    TooLarge,
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Datagram carried fewer body bytes than Content-Length announced.
    #[error("body shorter than Content-Length ({expected} > {actual})")]
    BodyTruncated { expected: usize, actual: usize },
    #[error("incomplete message")]
    Incomplete,
}

impl ParseError {
    /// The status a UAS answers a request with when parsing failed this
    /// way (RFC 3261 8.2 and 21.4.19, 21.5.14, 21.5.6); check
    /// `ParseFailure::can_reply` first, since without Via/From/To/Call-ID/
    /// CSeq there is nobody to address it to.
    pub fn response(&self) -> (u16, &'static str) {
        match self {
            ParseError::BadVersion => (505, "Version Not Supported"),
            ParseError::TooLarge => (513, "Message Too Large"),
            ParseError::UnsupportedUriScheme { .. } => (416, "Unsupported URI Scheme"),
            _ => (400, "Bad Request"),
        }
    }
}

/// A failed parse plus whatever headers were recovered, so a UAS can
/// still send a 400 when the essentials are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    pub error: ParseError,
    pub is_request: bool,
    pub headers: Option<Headers>,
}

impl ParseFailure {
    /// True when a response can be addressed: it was a request and Via,
    /// From, To, Call-ID and CSeq were all found.
    pub fn can_reply(&self) -> bool {
        self.is_request && self.headers.as_ref().is_some_and(can_reply)
    }

    /// The status to answer with, or `None` when the failure must be
    /// dropped silently (a response, or a request nobody can be answered).
    pub fn response(&self) -> Option<(u16, &'static str)> {
        self.can_reply().then(|| self.error.response())
    }
}

pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Cursor over a header value. Positions only ever advance by whole
/// chars, so slicing stays on char boundaries.
pub struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(s: &'a str) -> Self {
        Scanner { s, pos: 0 }
    }

    pub fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    pub fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    pub fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    pub fn skip_ws(&mut self) -> usize {
        self.take_while(is_ws).len()
    }

    pub fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let n = rest.find(|c| !f(c)).unwrap_or(rest.len());
        self.pos += n;
        rest.get(..n).unwrap_or("")
    }

    /// Consumes a quoted-string starting at `"`; returns the unescaped
    /// content, or None if the quote never closes.
    pub fn quoted(&mut self) -> Option<String> {
        if !self.eat('"') {
            return None;
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None
    }

    /// Like `quoted` but returns the raw text including quotes.
    fn quoted_raw(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.quoted()?;
        self.s.get(start..self.pos)
    }
}

/// Splits a comma list, ignoring commas inside quoted strings and
/// `<...>`; an empty element or unbalanced quote/bracket is an error,
/// since it means the sender's framing is broken.
pub fn split_list(v: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    let mut in_angle = false;
    for (i, c) in v.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '<' if !in_angle => in_angle = true,
            '>' if in_angle => in_angle = false,
            ',' if !in_angle => {
                out.push(v.get(start..i)?.trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quote || in_angle {
        return None;
    }
    out.push(v.get(start..)?.trim());
    if out.iter().any(|e| e.is_empty()) {
        return None;
    }
    Some(out)
}

fn param_value_char(c: char) -> bool {
    !(is_ws(c) || c == ';' || c == ',' || c == '"' || c == '<' || c == '>' || c == '?')
}

/// `*( LWS ";" LWS name [ LWS "=" LWS value ] )`, stopping before any
/// character that cannot continue a parameter list.
pub fn parse_params(sc: &mut Scanner<'_>) -> Option<Vec<Param>> {
    let mut params = Vec::new();
    loop {
        sc.skip_ws();
        if !sc.eat(';') {
            return Some(params);
        }
        sc.skip_ws();
        let name = sc.take_while(is_token_char);
        if name.is_empty() {
            return None;
        }
        sc.skip_ws();
        let value = if sc.eat('=') {
            sc.skip_ws();
            let v = if sc.peek() == Some('"') {
                sc.quoted_raw()?
            } else {
                sc.take_while(param_value_char)
            };
            if v.is_empty() {
                return None;
            }
            Some(v.to_string())
        } else {
            None
        };
        params.push((name.to_string(), value));
    }
}

/// The address inside an IPv6 reference, accepting the extra colon that
/// RFC 3261's IPv6reference ABNF let through (`2001:db8:::192.0.2.1`),
/// which RFC 5118 4.10 says receivers must tolerate.
pub fn ipv6_reference_addr(inner: &str) -> Option<std::net::Ipv6Addr> {
    inner
        .parse()
        .ok()
        .or_else(|| inner.replacen(":::", "::", 1).parse().ok())
}

/// `host` as an IP address when it is an IPv4 literal or an IPv6
/// reference (brackets optional, since Via `received` is written both
/// ways: RFC 5118 4.5); `None` for hostnames.
pub fn host_ip(host: &str) -> Option<std::net::IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(v4) = inner.parse::<std::net::Ipv4Addr>() {
        return Some(v4.into());
    }
    ipv6_reference_addr(inner).map(Into::into)
}

fn parse_host_port(sc: &mut Scanner<'_>) -> Option<(String, Option<u16>)> {
    let host = if sc.peek() == Some('[') {
        let rest = sc.rest();
        let end = rest.find(']')?;
        let h = rest.get(..=end)?;
        // Without this, "[anything]" would pass as a host and a typo'd
        // address would only surface as an unroutable destination.
        ipv6_reference_addr(h.get(1..end)?)?;
        sc.take_while(|c| c != ']');
        sc.eat(']');
        h
    } else {
        sc.take_while(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    if host.is_empty() {
        return None;
    }
    let save = sc.pos;
    sc.skip_ws();
    let port = if sc.eat(':') {
        sc.skip_ws();
        Some(sc.take_while(|c| c.is_ascii_digit()).parse::<u16>().ok()?)
    } else {
        sc.pos = save;
        None
    };
    Some((host.to_string(), port))
}

/// One via-parm (after list splitting).
pub fn parse_via(v: &str) -> Option<Via> {
    let mut sc = Scanner::new(v);
    sc.skip_ws();
    let name = sc.take_while(is_token_char);
    sc.skip_ws();
    if name.is_empty() || !sc.eat('/') {
        return None;
    }
    sc.skip_ws();
    let version = sc.take_while(is_token_char);
    sc.skip_ws();
    if version.is_empty() || !sc.eat('/') {
        return None;
    }
    sc.skip_ws();
    let transport = sc.take_while(is_token_char);
    if transport.is_empty() || sc.skip_ws() == 0 {
        return None;
    }
    let (host, port) = parse_host_port(&mut sc)?;
    let params = parse_params(&mut sc)?;
    sc.skip_ws();
    if !sc.at_end() {
        return None;
    }
    Some(Via {
        protocol_name: name.to_string(),
        protocol_version: version.to_string(),
        transport: transport.to_string(),
        host,
        port,
        params,
    })
}

/// name-addr / addr-spec with trailing header params (From, To, Contact,
/// Route...). In the addr-spec form, `;params` belong to the header, not
/// the URI (RFC 3261 20.10).
pub fn parse_name_addr(v: &str) -> Option<NameAddr> {
    let mut sc = Scanner::new(v);
    sc.skip_ws();
    let mut display_name = None;
    let uri;
    if sc.peek() == Some('"') {
        display_name = Some(sc.quoted()?);
        sc.skip_ws();
        uri = angle_uri(&mut sc)?;
    } else if let Some(lt) = sc.rest().find('<') {
        let dn = sc.rest().get(..lt)?.trim();
        if !dn
            .split(is_ws)
            .filter(|w| !w.is_empty())
            .all(|w| w.chars().all(is_token_char))
        {
            return None;
        }
        if !dn.is_empty() {
            display_name = Some(dn.to_string());
        }
        sc.take_while(|c| c != '<');
        uri = angle_uri(&mut sc)?;
    } else {
        let raw = sc.take_while(|c| c != ';').trim_end();
        // RFC 3261 20: a URI holding a comma, question mark or semicolon
        // must be in <>; unbracketed, "?" would make URI headers look like
        // part of the header value (RFC 4475 3.1.2.13 regbadct).
        if raw.contains([',', '?']) {
            return None;
        }
        uri = parse_uri(raw).ok()?;
    }
    let params = parse_params(&mut sc)?;
    sc.skip_ws();
    if !sc.at_end() {
        return None;
    }
    Some(NameAddr {
        display_name,
        uri,
        params,
    })
}

fn angle_uri(sc: &mut Scanner<'_>) -> Option<Uri> {
    if !sc.eat('<') {
        return None;
    }
    let raw = sc.take_while(|c| c != '>');
    if !sc.eat('>') {
        return None;
    }
    parse_uri(raw).ok()
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'
}

fn uri_params(s: &str) -> Result<Vec<Param>, ParseError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) if !n.is_empty() => Ok((n.to_string(), Some(v.to_string()))),
            Some(_) => Err(ParseError::BadUri),
            None => Ok((p.to_string(), None)),
        })
        .collect()
}

/// The `?hname=hvalue&...` part of a SIP/SIPS URI, still escaped; `None`
/// for other schemes, whose syntax this parser does not know.
pub fn uri_headers(raw: &str) -> Option<&str> {
    let (scheme, rest) = raw.split_once(':')?;
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    // Same separator logic as `parse_uri`: neither hvalue nor uri params
    // may hold an unescaped '@', but the userinfo may hold '?'.
    let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    hostpart.split_once('?').map(|(_, h)| h)
}

pub fn parse_uri(raw: &str) -> Result<Uri, ParseError> {
    // Whitespace, brackets and controls are never legal in a URI; seeing
    // them means the sender forgot to escape or used name-addr syntax.
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
    {
        return Err(ParseError::BadUri);
    }
    let (scheme, rest) = raw.split_once(':').ok_or(ParseError::BadUri)?;
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) || !chars.all(is_scheme_char) {
        return Err(ParseError::BadUri);
    }
    if rest.is_empty() {
        return Err(ParseError::BadUri);
    }
    let mut uri = Uri {
        raw: raw.to_string(),
        scheme: scheme.to_string(),
        user: None,
        host: String::new(),
        port: None,
        params: Vec::new(),
    };
    if scheme.eq_ignore_ascii_case("tel") {
        let (num, params) = rest.split_once(';').unwrap_or((rest, ""));
        if num.is_empty() {
            return Err(ParseError::BadUri);
        }
        uri.user = Some(num.to_string());
        uri.params = uri_params(params)?;
        return Ok(uri);
    }
    if !uri.is_sip() {
        return Ok(uri);
    }
    // userinfo may itself contain ';', '?' and ':' (RFC 4475 3.1.1.2), so
    // the last '@' is the only reliable separator.
    let (user, hostpart) = match rest.rsplit_once('@') {
        Some((ui, hp)) => {
            let u = ui.split_once(':').map_or(ui, |(u, _)| u);
            if u.is_empty() {
                return Err(ParseError::BadUri);
            }
            (Some(u.to_string()), hp)
        }
        None => (None, rest),
    };
    let hostpart = hostpart.split_once('?').map_or(hostpart, |(h, _)| h);
    let (hostport, params) = hostpart.split_once(';').unwrap_or((hostpart, ""));
    let mut sc = Scanner::new(hostport);
    let (host, port) = parse_host_port(&mut sc).ok_or(ParseError::BadUri)?;
    if !sc.at_end() {
        return Err(ParseError::BadUri);
    }
    uri.user = user;
    uri.host = host;
    uri.port = port;
    uri.params = uri_params(params)?;
    Ok(uri)
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

/// Offset just past the blank line ending the header section.
fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn skip_keepalive(buf: &[u8]) -> usize {
    let mut n = 0;
    while buf.get(n..n + 2) == Some(b"\r\n") {
        n += 2;
    }
    n
}

fn has_sip_prefix(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
}

enum StartLine {
    Request(Method, Uri, String),
    Response(String, u16, String),
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if line.starts_with(b"SIP/") {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::BadStatusLine)?;
        let (version, rest) = line.split_once(' ').ok_or(ParseError::BadStatusLine)?;
        if version != SIP_VERSION {
            return Err(ParseError::BadVersion);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStatusLine);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::BadStatusLine)?;
        if !(100..=699).contains(&status) || reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::BadStatusLine);
        }
        return Ok(StartLine::Response(
            version.to_string(),
            status,
            reason.to_string(),
        ));
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::BadRequestLine)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let (method, uri, version) = match parts.as_slice() {
        // An empty part means doubled or trailing SP (lwsstart, trws).
        p if p.iter().any(|x| x.is_empty()) => return Err(ParseError::BadRequestLine),
        [m, u, v] => (*m, *u, *v),
        // Extra single SPs with a plausible version mean whitespace inside
        // the URI (lwsruri): blame the URI so the 400 reason is precise.
        [_, .., v] if has_sip_prefix(v) => return Err(ParseError::BadUri),
        _ => return Err(ParseError::BadRequestLine),
    };
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(ParseError::BadRequestLine);
    }
    if !has_sip_prefix(version) {
        return Err(ParseError::BadRequestLine);
    }
    // ABNF literals are case-insensitive, so "sip/2.0" is still 2.0.
    if !version.eq_ignore_ascii_case(SIP_VERSION) {
        return Err(ParseError::BadVersion);
    }
    let uri = parse_uri(uri)?;
    Ok(StartLine::Request(
        Method::from_token(method),
        uri,
        version.to_string(),
    ))
}

/// Splits and unfolds the header block (between start line and blank line).
fn parse_header_block(block: &[u8]) -> Result<Headers, ParseError> {
    let mut headers = Headers::new();
    // Borrowed unless folding forces a join, to avoid copying every line.
    let mut logical: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let end = find_crlf(block, pos).unwrap_or(block.len());
        let line = block.get(pos..end).ok_or(ParseError::Incomplete)?;
        pos = end + 2;
        match (line.first(), logical.last_mut()) {
            (Some(b' ' | b'\t'), Some(prev)) => {
                // Folding: LWS collapses to a single SP (RFC 3261 7.3.1).
                let joined = prev.to_mut();
                joined.truncate(joined.trim_ascii_end().len());
                joined.push(b' ');
                joined.extend_from_slice(line.trim_ascii_start());
                if joined.len() > MAX_HEADER_LINE {
                    return Err(ParseError::TooLarge);
                }
            }
            (Some(b' ' | b'\t'), None) => {
                return Err(ParseError::BadHeader {
                    name: String::new(),
                })
            }
            _ => {
                if line.len() > MAX_HEADER_LINE {
                    return Err(ParseError::TooLarge);
                }
                if logical.len() >= MAX_HEADERS {
                    return Err(ParseError::TooLarge);
                }
                logical.push(Cow::Borrowed(line));
            }
        }
    }
    for line in &logical {
        let line: &[u8] = line;
        let colon = line.iter().position(|&b| b == b':');
        let raw_name = colon.and_then(|c| line.get(..c)).unwrap_or(line);
        let name = String::from_utf8_lossy(raw_name).trim_end().to_string();
        let bad = || ParseError::BadHeader { name: name.clone() };
        let (Some(c), false) = (colon, name.is_empty()) else {
            return Err(bad());
        };
        if !name.chars().all(is_token_char) {
            return Err(bad());
        }
        let value = line.get(c + 1..).ok_or_else(bad)?;
        let value = std::str::from_utf8(value).map_err(|_| bad())?;
        // Controls other than CR/LF are legal inside quoted-pairs
        // (RFC 4475 3.1.1.2), so only a stray line break is fatal.
        if value.contains(['\r', '\n']) {
            return Err(bad());
        }
        headers.push(name.clone(), value.trim_matches(is_ws));
    }
    Ok(headers)
}

/// Checks the headers a UAS relies on, so a message that parses is one
/// the transaction layer can use without further error paths.
fn validate(msg: &Message) -> Result<(), ParseError> {
    let h = msg.headers();
    for name in super::message::REPLY_HEADERS {
        if !h.contains(name) {
            return Err(ParseError::MissingHeader {
                name: (*name).to_string(),
            });
        }
    }
    if h.call_id().is_none() {
        return Err(ParseError::BadHeader {
            name: "Call-ID".into(),
        });
    }
    let vias = h.via()?;
    if vias.is_empty() {
        return Err(ParseError::MissingHeader { name: "Via".into() });
    }
    h.from()?;
    h.to()?;
    h.contacts()?;
    h.max_forwards()?;
    h.content_length()?;
    let cseq = h.cseq()?.ok_or(ParseError::MissingHeader {
        name: "CSeq".into(),
    })?;
    if let Message::Request(r) = msg {
        // ACK and CANCEL reuse the INVITE's number but name themselves.
        if cseq.method != r.method {
            return Err(ParseError::CSeqMismatch);
        }
    }
    Ok(())
}

struct Head {
    start: StartLine,
    headers: Headers,
}

/// Parses `buf[..end]` where `end` is just past the blank line.
fn parse_head(head: &[u8]) -> Result<Head, (ParseError, Option<Headers>, bool)> {
    let first = find_crlf(head, 0).ok_or((ParseError::Incomplete, None, false))?;
    let line = head.get(..first).unwrap_or_default();
    let looks_request = !line.starts_with(b"SIP/");
    let block = head
        .get(first + 2..head.len().saturating_sub(2))
        .unwrap_or_default();
    let headers = parse_header_block(block);
    let start = parse_start_line(line);
    match (start, headers) {
        (Ok(start), Ok(headers)) => Ok(Head { start, headers }),
        (Err(e), h) => Err((e, h.ok(), looks_request)),
        (Ok(_), Err(e)) => Err((e, None, looks_request)),
    }
}

fn assemble(head: Head, body: Vec<u8>) -> Message {
    match head.start {
        StartLine::Request(method, uri, version) => Message::Request(Request {
            method,
            uri,
            version,
            headers: head.headers,
            body,
        }),
        StartLine::Response(version, status, reason) => Message::Response(Response {
            version,
            status,
            reason,
            headers: head.headers,
            body,
        }),
    }
}

/// Datagram parse; see `parse_for_reply` for the error-recovery variant.
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    parse_for_reply(buf).map_err(|f| f.error)
}

/// Datagram parse that, on failure, hands back the headers it could
/// split so the UAS can still answer 400/505 (check `can_reply`).
pub fn parse_for_reply(buf: &[u8]) -> Result<Message, ParseFailure> {
    let fail = |error, headers, is_request| ParseFailure {
        error,
        is_request,
        headers,
    };
    if buf.len() > MAX_MESSAGE {
        return Err(fail(ParseError::TooLarge, None, false));
    }
    let buf = buf.get(skip_keepalive(buf)..).unwrap_or_default();
    let end = header_end(buf).ok_or_else(|| fail(ParseError::Incomplete, None, false))?;
    let head_bytes = buf.get(..end).unwrap_or_default();
    let head = parse_head(head_bytes).map_err(|(e, h, r)| fail(e, h, r))?;
    let is_request = matches!(head.start, StartLine::Request(..));
    let headers_copy = |h: &Headers| Some(h.clone());
    let rest = buf.get(end..).unwrap_or_default();
    // Missing Content-Length on a datagram means "the rest" (RFC 3261 18.3);
    // surplus bytes past it are discarded.
    let body_len = match head.headers.content_length() {
        Ok(Some(n)) if n > rest.len() => {
            return Err(fail(
                ParseError::BodyTruncated {
                    expected: n,
                    actual: rest.len(),
                },
                headers_copy(&head.headers),
                is_request,
            ))
        }
        Ok(Some(n)) => n,
        Ok(None) => rest.len(),
        Err(e) => return Err(fail(e, headers_copy(&head.headers), is_request)),
    };
    let body = rest.get(..body_len).unwrap_or_default().to_vec();
    let msg = assemble(head, body);
    match validate(&msg) {
        Ok(()) => Ok(msg),
        Err(e) => Err(fail(e, Some(msg.headers().clone()), is_request)),
    }
}

/// Stream (TCP/TLS) framing. `Ok(None)`: need more bytes. On success,
/// returns the message and how many bytes (incl. leading CRLF keepalives)
/// it used. Content-Length is mandatory on streams (RFC 3261 18.3).
pub fn parse_stream(buf: &[u8]) -> Result<Option<(Message, usize)>, ParseError> {
    let skip = skip_keepalive(buf);
    let data = buf.get(skip..).unwrap_or_default();
    let Some(end) = header_end(data) else {
        return if data.len() > MAX_MESSAGE {
            Err(ParseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = parse_head(data.get(..end).unwrap_or_default()).map_err(|(e, _, _)| e)?;
    let len = head
        .headers
        .content_length()?
        .ok_or(ParseError::MissingHeader {
            name: "Content-Length".into(),
        })?;
    let total = end.checked_add(len).ok_or(ParseError::TooLarge)?;
    if total > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let Some(body) = data.get(end..total) else {
        return Ok(None);
    };
    let msg = assemble(head, body.to_vec());
    validate(&msg)?;
    Ok(Some((msg, skip + total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK776;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice, A.\" <sip:alice@example.com>;tag=1928\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.example.com>\r\n\
Content-Length: 4\r\n\r\nv=0\r";

    #[test]
    fn ipv6_sent_by_and_valueless_rport() {
        let m = parse(INVITE.as_bytes()).unwrap();
        let via = m.headers().via().unwrap();
        assert_eq!(via.len(), 1);
        assert_eq!(via[0].host, "[::1]");
        assert_eq!(via[0].port, Some(5060));
        assert_eq!(via[0].rport(), Some(None));
        assert_eq!(via[0].branch(), Some("z9hG4bK776"));
        assert_eq!(via[0].received(), None);
        assert_eq!(m.body(), b"v=0\r");
    }

    #[test]
    fn rport_with_value_and_received() {
        let v = parse_via("SIP/2.0/UDP h.example.com;received=[::2];rport=5070").unwrap();
        assert_eq!(v.rport(), Some(Some(5070)));
        assert_eq!(v.received(), Some("[::2]"));
        assert_eq!(v.port, None);
    }

    #[test]
    fn quoted_display_name_with_comma() {
        let m = parse(INVITE.as_bytes()).unwrap();
        let from = m.headers().from().unwrap().unwrap();
        assert_eq!(from.display_name.as_deref(), Some("Alice, A."));
        assert_eq!(from.tag(), Some("1928"));
        assert_eq!(from.uri.user.as_deref(), Some("alice"));
        let to = m.headers().to().unwrap().unwrap();
        assert_eq!(to.display_name.as_deref(), Some("Bob"));
        assert_eq!(to.tag(), None);
    }

    #[test]
    fn split_list_respects_quotes_and_brackets() {
        let l = split_list(r#""a, \"b\"" <sip:x@y;p=1,2>;q=1 , <sip:z@w>"#).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1], "<sip:z@w>");
        assert!(split_list("\"open, x").is_none());
        assert!(split_list("a,,b").is_none());
    }

    #[test]
    fn uri_parts() {
        let u = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr?x=y").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
        let t = parse_uri("tel:+86-12345;phone-context=example.com").unwrap();
        assert_eq!(t.user.as_deref(), Some("+86-12345"));
        assert!(parse_uri("sip:").is_err());
        assert!(parse_uri("sip:host:99999").is_err());
        assert!(parse_uri("1sip:x").is_err());
    }

    #[test]
    fn uri_headers_and_host_ip() {
        assert_eq!(uri_headers("sip:a?b@h?x=1&y=2"), Some("x=1&y=2"));
        assert_eq!(uri_headers("sip:a@h;p=1"), None);
        assert_eq!(uri_headers("http://h?x=1"), None);
        assert_eq!(host_ip("192.0.2.1"), Some([192, 0, 2, 1].into()));
        assert_eq!(host_ip("[::1]"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(host_ip("::1"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(host_ip("[2001:db8:::1]"), "2001:db8::1".parse().ok());
        assert_eq!(host_ip("example.com"), None);
        assert_eq!(host_ip("[::1"), None);
    }

    #[test]
    fn error_to_response() {
        assert_eq!(ParseError::BadVersion.response().0, 505);
        assert_eq!(ParseError::TooLarge.response().0, 513);
        assert_eq!(ParseError::BadUri.response().0, 400);
        assert_eq!(ParseError::CSeqMismatch.response().0, 400);
    }

    #[test]
    fn reply_info_on_failure() {
        let bad = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
        let f = parse_for_reply(bad.as_bytes()).unwrap_err();
        assert_eq!(f.error, ParseError::CSeqMismatch);
        assert!(f.can_reply());
        let bad = INVITE.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia");
        let f = parse_for_reply(bad.as_bytes()).unwrap_err();
        assert_eq!(f.error, ParseError::BadVersion);
        assert!(f.can_reply());
        let bad = INVITE.replace("Call-ID: a84b4c76e66710\r\n", "");
        let f = parse_for_reply(bad.as_bytes()).unwrap_err();
        assert!(!f.can_reply());
    }
}
