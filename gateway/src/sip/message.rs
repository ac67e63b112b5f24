//! SIP message types, typed header accessors and the serializer.

use super::parse::{
    host_ip, parse_name_addr, parse_params, parse_via, split_list, ParseError, Scanner,
};

/// Only SIP/2.0 is spoken; anything else is rejected at parse time (505).
pub const SIP_VERSION: &str = "SIP/2.0";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Refer,
    Prack,
    Subscribe,
    Notify,
    Message,
    Publish,
    Other(String),
}

impl Method {
    /// Method names are case-sensitive (RFC 3261 7.1), so "invite" is an
    /// extension method, not INVITE.
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "REFER" => Method::Refer,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A generic `;name[=value]` parameter. Values are kept as written
/// (quotes included) so nothing is lost when a proxy-like component
/// re-emits them.
pub type Param = (String, Option<String>);

/// Looks a parameter up case-insensitively (parameter names are
/// case-insensitive in RFC 3261 19.1.4 / 20).
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// A URI as it appeared on the wire plus the parts a UAS routes on.
/// Unknown schemes parse (only `raw` and `scheme` are filled) so the UAS
/// can answer 416 instead of a generic 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub raw: String,
    pub scheme: String,
    /// Still percent-escaped: unescaping belongs to comparison, not parsing.
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        super::parse::parse_uri(s)
    }

    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }

    /// The schemes this gateway can route on; everything else earns a 416.
    pub fn is_supported_scheme(&self) -> bool {
        self.is_sip() || self.scheme.eq_ignore_ascii_case("tel")
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The escaped `?headers` of a SIP/SIPS URI (RFC 3261 19.1.1). Legal
    /// in Contact (RFC 4475 3.3.14) but not in a Request-URI, where
    /// `request_check` answers 400.
    pub fn headers(&self) -> Option<&str> {
        super::parse::uri_headers(&self.raw)
    }

    /// The host as an address when it is an IP literal (IPv6 references
    /// included, with RFC 5118 4.10's extra-colon form tolerated).
    pub fn host_ip(&self) -> Option<std::net::IpAddr> {
        host_ip(&self.host)
    }
}

/// Resolves `%HH` escapes (RFC 3986 2.1) for comparing URI parts, which
/// the parser keeps escaped. A `%` not followed by two hex digits stays as
/// written: outside the "escaped" production it is an ordinary character
/// (RFC 4475 3.1.1.5). Bytes, not a String, because `%00` and non-UTF-8
/// octets are legal (RFC 4475 3.1.1.4).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// As received (may be a compact form); lookups normalise instead.
    pub name: String,
    /// Unfolded and trimmed.
    pub value: String,
}

/// Compact forms (RFC 3261 7.3.3 plus the event/refer extensions).
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes().first().map(|b| b.to_ascii_lowercase()) {
        Some(b'i') => "Call-ID",
        Some(b'm') => "Contact",
        Some(b'e') => "Content-Encoding",
        Some(b'l') => "Content-Length",
        Some(b'c') => "Content-Type",
        Some(b'f') => "From",
        Some(b's') => "Subject",
        Some(b'k') => "Supported",
        Some(b't') => "To",
        Some(b'v') => "Via",
        Some(b'o') => "Event",
        Some(b'r') => "Refer-To",
        Some(b'u') => "Allow-Events",
        _ => name,
    }
}

pub fn same_header(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

/// Headers whose grammar is a comma list (`#element`), so several header
/// lines and one comma-joined line mean the same. Others (Authorization,
/// Date, ...) carry commas inside a single value and must not be split.
const LIST_HEADERS: &[&str] = &[
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "Path",
    "Service-Route",
    "Allow",
    "Allow-Events",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Content-Encoding",
    "Content-Language",
    "In-Reply-To",
    "Warning",
    "Alert-Info",
    "Call-Info",
    "Error-Info",
];

/// List headers whose grammar allows an empty value (`[ element ... ]`):
/// an empty `Accept:` means "nothing acceptable", not a syntax error.
const MAY_BE_EMPTY: &[&str] = &[
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow",
    "Supported",
];

pub fn is_list_header(name: &str) -> bool {
    let c = canonical_name(name);
    LIST_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(c))
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    entries: Vec<Header>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.entries.iter()
    }

    /// Removes every line of `name` (any spelling); returns how many.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|h| !same_header(&h.name, name));
        before - self.entries.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// First line's raw value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|h| same_header(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Raw value of each line, in order, without list splitting.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |h| same_header(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// All elements across all lines; list headers are split on commas
    /// outside quotes and `<...>`, others yield one element per line.
    pub fn values<'a>(&'a self, name: &'a str) -> Result<Vec<&'a str>, ParseError> {
        let split = is_list_header(name);
        let c = canonical_name(name);
        let may_be_empty = MAY_BE_EMPTY.iter().any(|h| h.eq_ignore_ascii_case(c));
        let mut out = Vec::new();
        for v in self.get_all(name) {
            if may_be_empty && v.trim().is_empty() {
                continue;
            }
            if split {
                out.extend(split_list(v).ok_or_else(|| ParseError::BadHeader {
                    name: canonical_name(name).to_string(),
                })?);
            } else {
                out.push(v);
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub protocol_name: String,
    pub protocol_version: String,
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch").flatten()
    }

    pub fn received(&self) -> Option<&str> {
        find_param(&self.params, "received").flatten()
    }

    /// `None`: no rport; `Some(None)`: client asked for rport (RFC 3581);
    /// `Some(Some(p))`: filled in. A non-numeric value reads as requested.
    pub fn rport(&self) -> Option<Option<u16>> {
        find_param(&self.params, "rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `received` as an address, with or without the brackets RFC 3261's
    /// grammar forbids but RFC 5118 4.5 says receivers must accept.
    pub fn received_addr(&self) -> Option<std::net::IpAddr> {
        self.received().and_then(host_ip)
    }

    /// The sent-by host as an address when it is an IP literal.
    pub fn host_ip(&self) -> Option<std::net::IpAddr> {
        host_ip(&self.host)
    }
}

/// From/To/Contact/Route value: name-addr or addr-spec plus header params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Unquoted, escapes resolved.
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Vec<Param>,
}

impl NameAddr {
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").flatten()
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The Contact `expires` parameter. RFC 3261 20.10 says malformed
    /// values (overlarge ones included, RFC 4475 3.1.2.4) read as 3600.
    pub fn expires(&self) -> Option<u32> {
        self.param("expires").map(|v| {
            v.and_then(|n| parse_digits(n)?.try_into().ok())
                .unwrap_or(3600)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (REGISTER remove-all).
    Wildcard,
    List(Vec<NameAddr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

fn bad(name: &str) -> ParseError {
    ParseError::BadHeader {
        name: name.to_string(),
    }
}

fn single<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.get(name)
}

impl Headers {
    pub fn via(&self) -> Result<Vec<Via>, ParseError> {
        self.values("Via")?
            .into_iter()
            .map(|v| parse_via(v).ok_or_else(|| bad("Via")))
            .collect()
    }

    pub fn from(&self) -> Result<Option<NameAddr>, ParseError> {
        self.name_addr("From")
    }

    pub fn to(&self) -> Result<Option<NameAddr>, ParseError> {
        self.name_addr("To")
    }

    fn name_addr(&self, name: &str) -> Result<Option<NameAddr>, ParseError> {
        match single(self, name) {
            None => Ok(None),
            Some(v) => parse_name_addr(v).map(Some).ok_or_else(|| bad(name)),
        }
    }

    pub fn contacts(&self) -> Result<Option<Contacts>, ParseError> {
        let vals = self.values("Contact")?;
        if vals.is_empty() {
            return Ok(None);
        }
        if vals.contains(&"*") {
            // RFC 3261 10.2.2: "*" must stand alone.
            return if vals.len() == 1 {
                Ok(Some(Contacts::Wildcard))
            } else {
                Err(bad("Contact"))
            };
        }
        vals.into_iter()
            .map(|v| parse_name_addr(v).ok_or_else(|| bad("Contact")))
            .collect::<Result<Vec<_>, _>>()
            .map(|l| Some(Contacts::List(l)))
    }

    /// Route / Record-Route entries.
    pub fn routes(&self, name: &str) -> Result<Vec<NameAddr>, ParseError> {
        self.values(name)?
            .into_iter()
            .map(|v| parse_name_addr(v).ok_or_else(|| bad(name)))
            .collect()
    }

    pub fn call_id(&self) -> Option<&str> {
        single(self, "Call-ID").filter(|v| !v.is_empty())
    }

    pub fn cseq(&self) -> Result<Option<CSeq>, ParseError> {
        let Some(v) = single(self, "CSeq") else {
            return Ok(None);
        };
        let mut sc = Scanner::new(v);
        let num = sc.take_while(|c| c.is_ascii_digit());
        let seq: u32 = num.parse().map_err(|_| bad("CSeq"))?;
        if sc.skip_ws() == 0 {
            return Err(bad("CSeq"));
        }
        let m = sc.take_while(super::parse::is_token_char);
        sc.skip_ws();
        if m.is_empty() || !sc.at_end() {
            return Err(bad("CSeq"));
        }
        Ok(Some(CSeq {
            seq,
            method: Method::from_token(m),
        }))
    }

    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.number("Max-Forwards")
    }

    /// delta-seconds, which RFC 3261 20.19 bounds by 2**32-1: anything
    /// larger or non-numeric is an error (RFC 4475 3.1.2.4 scalar02).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.number("Expires")
    }

    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let mut found: Option<usize> = None;
        for v in self.get_all("Content-Length") {
            let n = parse_digits(v).ok_or(ParseError::BadContentLength)?;
            // Conflicting copies leave the framing undefined.
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::BadContentLength);
            }
            found = Some(n);
        }
        Ok(found)
    }

    pub fn content_type(&self) -> Option<&str> {
        single(self, "Content-Type")
    }

    pub fn require(&self) -> Result<Vec<&str>, ParseError> {
        self.values("Require")
    }

    pub fn supported(&self) -> Result<Vec<&str>, ParseError> {
        self.values("Supported")
    }

    fn number(&self, name: &str) -> Result<Option<u32>, ParseError> {
        match single(self, name) {
            None => Ok(None),
            Some(v) => parse_digits(v)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(name)),
        }
    }
}

fn parse_digits(v: &str) -> Option<usize> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The five headers RFC 3261 8.2.6 needs to build any response.
pub const REPLY_HEADERS: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq"];

/// Whether a response (e.g. 400) can be built from these headers.
pub fn can_reply(headers: &Headers) -> bool {
    REPLY_HEADERS.iter().all(|h| headers.contains(h))
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Canonical wire form: CRLF endings, headers in stored order, and a
    /// single Content-Length (last) that always matches the body so a
    /// stale value can never desynchronise a stream peer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body().len());
        match self {
            Message::Request(r) => {
                out.extend_from_slice(r.method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(r.uri.raw.as_bytes());
                out.push(b' ');
                out.extend_from_slice(r.version.as_bytes());
            }
            Message::Response(r) => {
                out.extend_from_slice(r.version.as_bytes());
                out.extend_from_slice(format!(" {:03} ", r.status).as_bytes());
                out.extend_from_slice(r.reason.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        for h in self.headers().iter() {
            if same_header(&h.name, "Content-Length") {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body().len()).as_bytes());
        out.extend_from_slice(self.body());
        out
    }
}

impl Request {
    /// Lets a UAS map an unroutable scheme to 416 (RFC 3261 8.2.2.1).
    pub fn check_uri_scheme(&self) -> Result<(), ParseError> {
        if self.uri.is_supported_scheme() {
            Ok(())
        } else {
            Err(ParseError::UnsupportedUriScheme {
                scheme: self.uri.scheme.clone(),
            })
        }
    }
}

/// Option tags this UAS implements. A Require naming anything else is
/// answered 420 with the rest listed in Unsupported (RFC 3261 8.2.2.3).
pub const SUPPORTED_EXTENSIONS: &[&str] = &["timer"];

/// Body types the gateway's UAS can process (compared without
/// parameters, case-insensitively). A request body of any other type is
/// answered 415 (RFC 3261 8.2.3); the caller should list these in Accept.
pub const ACCEPTED_BODY_TYPES: &[&str] = &[
    "application/sdp",
    "multipart/mixed",
    "application/dtmf-relay",
    "application/dtmf",
];

/// Headers RFC 3261 defines with a single value (7.3.1: only `#list`
/// headers may repeat), with the reason used when copies disagree.
const SINGLE_VALUED: &[(&str, &str)] = &[
    ("Call-ID", "Conflicting Call-ID"),
    ("CSeq", "Conflicting CSeq"),
    ("From", "Conflicting From"),
    ("To", "Conflicting To"),
    ("Max-Forwards", "Conflicting Max-Forwards"),
    ("Content-Type", "Conflicting Content-Type"),
    ("Expires", "Conflicting Expires"),
];

/// The RFC 3261 17.2.3 magic cookie; a branch that is only the cookie
/// carries no transaction identifier (RFC 4475 3.2.1).
const MAGIC_COOKIE: &str = "z9hG4bK";

/// `type/subtype` of a Content-Type or Accept element, lowercased;
/// `None` when it is not of that shape.
fn media_type(v: &str) -> Option<String> {
    let t = v.split(';').next()?.trim();
    let (ty, sub) = t.split_once('/')?;
    let token = |s: &str| !s.is_empty() && s.chars().all(super::parse::is_token_char);
    (token(ty.trim()) && token(sub.trim()))
        .then(|| format!("{}/{}", ty.trim(), sub.trim()).to_ascii_lowercase())
}

/// Require option tags this UAS does not implement, in order and without
/// duplicates, for the Unsupported header of a 420. Empty for ACK and
/// CANCEL, where RFC 3261 8.2.2.3 says Require is ignored.
pub fn unsupported_requires(req: &Request) -> Vec<String> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    // Split by hand rather than with `values`, so a malformed list still
    // yields the tags a 420 should name (request_check reports it as 400).
    for tag in req
        .headers
        .get_all("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let known = SUPPORTED_EXTENSIONS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(tag));
        if !known && !out.iter().any(|o| o == tag) {
            out.push(tag.to_string());
        }
    }
    out
}

/// Whether the request's Accept admits `mime` for a response body. No
/// Accept means application/sdp only (RFC 3261 20.1); an empty one means
/// nothing. A UAS that cannot answer in an acceptable type sends 406
/// (RFC 4475 3.3.15 sdp01), which is session logic, not `request_check`.
pub fn accepts_body_type(req: &Request, mime: &str) -> bool {
    let Some(want) = media_type(mime) else {
        return false;
    };
    if !req.headers.contains("Accept") {
        return want == "application/sdp";
    }
    let Ok(ranges) = req.headers.values("Accept") else {
        return false;
    };
    let (want_ty, _) = want.split_once('/').unwrap_or((&want, ""));
    ranges.iter().any(|r| {
        let refused = r.split(';').skip(1).any(|p| {
            p.split_once('=').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("q")
                    && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            })
        });
        let range = r
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        !refused && (range == want || range == "*/*" || range == format!("{want_ty}/*"))
    })
}

fn missing(name: &str) -> (u16, &'static str) {
    match name {
        "Via" => (400, "Missing Via"),
        "From" => (400, "Missing From"),
        "To" => (400, "Missing To"),
        "Call-ID" => (400, "Missing Call-ID"),
        _ => (400, "Missing CSeq"),
    }
}

/// The 400s: things a UAS cannot act on that the parser either lets
/// through (they are well-formed SIP, just contradictory) or that a
/// hand-built `Request` might carry.
fn check_well_formed(req: &Request) -> Result<(), (u16, &'static str)> {
    let h = &req.headers;
    for name in REPLY_HEADERS {
        if !h.contains(name) {
            return Err(missing(name));
        }
    }
    // Max-Forwards is mandatory in RFC 3261 but absent from RFC 2543
    // requests, which RFC 4475 3.4.1 (inv2543) says to keep accepting.
    for (name, reason) in SINGLE_VALUED {
        let mut copies = h.get_all(name);
        if let Some(first) = copies.next() {
            if copies.any(|v| v != first) {
                return Err((400, reason));
            }
        }
    }
    if h.call_id().is_none() {
        return Err((400, "Bad Call-ID"));
    }
    let vias = h.via().map_err(|_| (400, "Bad Via"))?;
    let top = vias.first().ok_or((400, "Missing Via"))?;
    if top.branch() == Some(MAGIC_COOKIE) {
        // Preferred over falling back to RFC 2543 matching: every request
        // from such a sender would otherwise share one transaction key.
        return Err((400, "Missing Transaction Identifier"));
    }
    let _from = h.from().map_err(|_| (400, "Bad From"))?;
    let to = h.to().map_err(|_| (400, "Bad To"))?;
    let cseq = h
        .cseq()
        .map_err(|_| (400, "Bad CSeq"))?
        .ok_or((400, "Missing CSeq"))?;
    if cseq.method != req.method {
        return Err((400, "CSeq Method Mismatch"));
    }
    h.max_forwards().map_err(|_| (400, "Bad Max-Forwards"))?;
    match h.content_length() {
        Err(_) => return Err((400, "Bad Content-Length")),
        Ok(Some(n)) if n != req.body.len() => return Err((400, "Bad Content-Length")),
        Ok(_) => {}
    }
    h.contacts().map_err(|_| (400, "Bad Contact"))?;
    h.expires().map_err(|_| (400, "Bad Expires"))?;
    h.require().map_err(|_| (400, "Bad Require"))?;
    h.values("Proxy-Require")
        .map_err(|_| (400, "Bad Proxy-Require"))?;
    if req.uri.headers().is_some() {
        // RFC 3261 19.1.1, Table 1: headers are not allowed in a
        // Request-URI (RFC 4475 3.1.2.11 escruri).
        return Err((400, "Headers in Request-URI"));
    }
    if req.method == Method::Register && to.is_some_and(|t| !t.uri.is_sip()) {
        // RFC 3261 10.3: the AOR in To must be SIP or SIPS (RFC 4475 3.3.4).
        return Err((400, "To Not a SIP URI"));
    }
    if !req.body.is_empty() {
        // RFC 3261 20.15: a non-empty body must say what it is.
        let ct = h.content_type().ok_or((400, "Missing Content-Type"))?;
        media_type(ct).ok_or((400, "Bad Content-Type"))?;
    }
    Ok(())
}

/// The message-level checks a UAS owes a request before any dialog or
/// method logic, returning the response to send on failure.
///
/// Order, following RFC 3261 8.2 after the parse itself (400/505/513 come
/// from `ParseError::response`):
/// 1. 400: missing or contradictory essentials the parser lets through:
///    copies of a single-valued header that disagree (RFC 4475 3.3.8),
///    CSeq method mismatch, a branch that is only the magic cookie,
///    Content-Length not matching the body, non-numeric or >2**32-1
///    Expires, headers in the Request-URI, a REGISTER whose To is not
///    SIP/SIPS, a body without a usable Content-Type. Checked first
///    because nothing in such a request can be trusted further.
/// 2. 416: Request-URI scheme other than sip, sips or tel (8.2.2.1).
/// 3. 420: Require names an option tag outside `SUPPORTED_EXTENSIONS`
///    (8.2.2.3); put `unsupported_requires` in the Unsupported header.
///    Proxy-Require is for proxies and is not checked.
/// 4. 415: a non-empty body whose Content-Type is not in
///    `ACCEPTED_BODY_TYPES`, or with a Content-Encoding other than
///    identity (8.2.3); send Accept / Accept-Encoding with it.
///
/// Not here, by design: 405/501 for the method (8.2.1, the caller knows
/// its methods; the RFC puts it before 416), 482 merged requests and 481
/// (transaction/dialog state), 483 (Max-Forwards 0 concerns proxies; a
/// UAS processes the request normally, RFC 4475 3.3.11), 406 (see
/// `accepts_body_type`). An ACK is never answered: an error there means
/// drop it.
pub fn request_check(req: &Request) -> Result<(), (u16, &'static str)> {
    check_well_formed(req)?;
    if !req.uri.is_supported_scheme() {
        return Err((416, "Unsupported URI Scheme"));
    }
    if !unsupported_requires(req).is_empty() {
        return Err((420, "Bad Extension"));
    }
    if !req.body.is_empty() {
        let identity = req
            .headers
            .get_all("Content-Encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity"));
        let accepted = req
            .headers
            .content_type()
            .and_then(media_type)
            .is_some_and(|t| {
                ACCEPTED_BODY_TYPES
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&t))
            });
        if !identity || !accepted {
            return Err((415, "Unsupported Media Type"));
        }
    }
    Ok(())
}

// Params are re-exported for callers that hold a raw `;a=b` string.
pub fn params_from_str(s: &str) -> Option<Vec<Param>> {
    let mut sc = Scanner::new(s);
    let p = parse_params(&mut sc)?;
    sc.skip_ws();
    sc.at_end().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_leaves_non_escapes_alone() {
        assert_eq!(unescape("a%20b%2fc"), b"a b/c");
        assert_eq!(unescape("%00%ff"), [0, 0xff]);
        for (input, want) in [
            ("%", "%"),
            ("%4", "%4"),
            ("100%", "100%"),
            ("%%41", "%A"),
            ("%Z%45", "%ZE"),
        ] {
            assert_eq!(unescape(input), want.as_bytes(), "{input}");
        }
    }
}
