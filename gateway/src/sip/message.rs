//! SIP message types, typed header accessors and the serializer.

use super::parse::{parse_name_addr, parse_params, parse_via, split_list, ParseError, Scanner};

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
        let mut out = Vec::new();
        for v in self.get_all(name) {
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

// Params are re-exported for callers that hold a raw `;a=b` string.
pub fn params_from_str(s: &str) -> Option<Vec<Param>> {
    let mut sc = Scanner::new(s);
    let p = parse_params(&mut sc)?;
    sc.skip_ws();
    sc.at_end().then_some(p)
}
