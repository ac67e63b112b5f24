//! SDP (RFC 4566) parsing/serialisation and RFC 3264 offer/answer for a
//! G.711-only gateway.
//!
//! Sans-IO on purpose: everything here is a pure function over strings and
//! values, so the SIP layer decides how errors map to responses (400 for an
//! unparseable body, 488 for a negotiation failure) and the media layer
//! decides when to open sockets.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Bodies larger than this are refused before parsing so that a hostile peer
/// cannot make us allocate without bound.
pub const MAX_SDP_LEN: usize = 8 * 1024;
/// Same reasoning as [`MAX_SDP_LEN`]: a real call never needs more sections.
pub const MAX_MEDIA: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body is {len} bytes, limit is 8192")]
    TooLarge { len: usize },
    #[error("line {line}: more than 64 media sections")]
    TooManyMedia { line: usize },
    #[error("SDP does not start with a v= line")]
    MissingVersion,
    #[error("SDP has no o= line")]
    MissingOrigin,
    #[error("SDP has no m= line")]
    MissingMedia,
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
}

fn bad(line: usize, reason: impl Into<String>) -> SdpError {
    SdpError::Malformed {
        line,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    // Kept as text: RFC 4566 only says "numeric", and some stacks emit values
    // wider than u64; refusing a call over that would be pointless.
    pub session_id: String,
    pub session_version: String,
    pub net_type: String,
    pub addr_type: String,
    // May legitimately be an FQDN, and we never route on it.
    pub address: String,
}

/// `c=` line. Only the address is kept: a unicast gateway has no use for the
/// multicast TTL / count suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub address: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// RFC 3264 §6.1: the answer mirrors the offer from our point of view.
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    RtpMap {
        pt: u8,
        encoding: String,
        clock_rate: u32,
        channels: Option<u32>,
    },
    Fmtp {
        format: String,
        params: String,
    },
    Ptime(u32),
    MaxPtime(u32),
    Direction(Direction),
    Other {
        name: String,
        value: Option<String>,
    },
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::RtpMap {
                pt,
                encoding,
                clock_rate,
                channels,
            } => {
                write!(f, "rtpmap:{pt} {encoding}/{clock_rate}")?;
                if let Some(ch) = channels {
                    write!(f, "/{ch}")?;
                }
                Ok(())
            }
            Attribute::Fmtp { format, params } => write!(f, "fmtp:{format} {params}"),
            Attribute::Ptime(p) => write!(f, "ptime:{p}"),
            Attribute::MaxPtime(p) => write!(f, "maxptime:{p}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::Other { name, value: None } => f.write_str(name),
            Attribute::Other {
                name,
                value: Some(v),
            } => write!(f, "{name}:{v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub attributes: Vec<Attribute>,
    /// Lines we do not interpret (i=, b=, k=, ...), kept so a re-serialised
    /// description loses nothing the peer might care about.
    pub extra: Vec<(char, String)>,
}

impl MediaDescription {
    pub fn rtpmap(&self, pt: u8) -> Option<(&str, u32, Option<u32>)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::RtpMap {
                pt: p,
                encoding,
                clock_rate,
                channels,
            } if *p == pt => Some((encoding.as_str(), *clock_rate, *channels)),
            _ => None,
        })
    }

    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Fmtp { format: f, params } if f == format => Some(params.as_str()),
            _ => None,
        })
    }

    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.attributes)
    }

    pub fn ptime(&self) -> Option<u32> {
        ptime_of(&self.attributes)
    }
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| match a {
        Attribute::Direction(d) => Some(*d),
        _ => None,
    })
}

fn ptime_of(attrs: &[Attribute]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        Attribute::Ptime(p) => Some(*p),
        _ => None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<Connection>,
    pub timing: Vec<Timing>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
    /// Uninterpreted session-level lines, see [`MediaDescription::extra`].
    pub extra: Vec<(char, String)>,
}

impl SessionDescription {
    pub fn parse(input: &str) -> Result<Self, SdpError> {
        if input.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge { len: input.len() });
        }
        let mut version_seen = false;
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut timing = Vec::new();
        let mut attributes = Vec::new();
        let mut extra = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();

        for (idx, raw) in input.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            // Blank lines are not legal SDP, but a trailing newline (or a
            // sloppy peer's extra one) is no reason to fail a call.
            if line.trim().is_empty() {
                continue;
            }
            let (kind, value) = split_line(line, line_no)?;
            if !version_seen {
                if kind != 'v' {
                    return Err(SdpError::MissingVersion);
                }
                if value.trim() != "0" {
                    return Err(bad(line_no, format!("unsupported SDP version {value:?}")));
                }
                version_seen = true;
                continue;
            }
            match kind {
                'v' => return Err(bad(line_no, "duplicate v= line")),
                'm' => {
                    if media.len() >= MAX_MEDIA {
                        return Err(SdpError::TooManyMedia { line: line_no });
                    }
                    media.push(parse_media_line(value, line_no)?);
                }
                'c' => {
                    let c = parse_connection(value, line_no)?;
                    let slot = match media.last_mut() {
                        Some(m) => &mut m.connection,
                        None => &mut connection,
                    };
                    if slot.is_some() {
                        return Err(bad(line_no, "duplicate c= line"));
                    }
                    *slot = Some(c);
                }
                'a' => {
                    let a = parse_attribute(value, line_no)?;
                    match media.last_mut() {
                        Some(m) => m.attributes.push(a),
                        None => attributes.push(a),
                    }
                }
                'o' | 's' | 't' if !media.is_empty() => {
                    return Err(bad(line_no, format!("{kind}= line inside a media section")));
                }
                'o' => {
                    if origin.is_some() {
                        return Err(bad(line_no, "duplicate o= line"));
                    }
                    origin = Some(parse_origin(value, line_no)?);
                }
                's' => {
                    if session_name.is_some() {
                        return Err(bad(line_no, "duplicate s= line"));
                    }
                    session_name = Some(value.to_string());
                }
                't' => timing.push(parse_timing(value, line_no)?),
                other => match media.last_mut() {
                    Some(m) => m.extra.push((other, value.to_string())),
                    None => extra.push((other, value.to_string())),
                },
            }
        }

        if !version_seen {
            return Err(SdpError::MissingVersion);
        }
        let origin = origin.ok_or(SdpError::MissingOrigin)?;
        if media.is_empty() {
            return Err(SdpError::MissingMedia);
        }
        Ok(SessionDescription {
            origin,
            // Many stacks omit s= or leave it empty; "-" is the RFC's filler.
            session_name: session_name
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "-".to_string()),
            connection,
            timing,
            attributes,
            media,
            extra,
        })
    }

    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.attributes)
    }
}

fn split_line(line: &str, line_no: usize) -> Result<(char, &str), SdpError> {
    let mut chars = line.chars();
    let kind = chars.next();
    let eq = chars.next();
    match (kind, eq) {
        (Some(k), Some('=')) if k.is_ascii_lowercase() => Ok((k, chars.as_str())),
        _ => Err(bad(line_no, "expected <letter>=<value>")),
    }
}

fn parse_num<T: std::str::FromStr>(s: &str, line_no: usize, what: &str) -> Result<T, SdpError> {
    s.trim()
        .parse()
        .map_err(|_| bad(line_no, format!("invalid {what} {s:?}")))
}

fn parse_origin(value: &str, line_no: usize) -> Result<Origin, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    match f.as_slice() {
        [user, id, ver, net, addr_type, addr] => Ok(Origin {
            username: user.to_string(),
            session_id: id.to_string(),
            session_version: ver.to_string(),
            net_type: net.to_string(),
            addr_type: addr_type.to_string(),
            address: addr.to_string(),
        }),
        _ => Err(bad(line_no, "o= needs 6 fields")),
    }
}

fn parse_connection(value: &str, line_no: usize) -> Result<Connection, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, addr_type, addr] = f.as_slice() else {
        return Err(bad(line_no, "c= needs 3 fields"));
    };
    if *net != "IN" {
        return Err(bad(line_no, format!("unsupported network type {net:?}")));
    }
    // Strip multicast "/ttl[/count]"; we only do unicast.
    let host = addr.split('/').next().unwrap_or(addr);
    let address: IpAddr = host
        .parse()
        .map_err(|_| bad(line_no, format!("invalid connection address {addr:?}")))?;
    match (*addr_type, address) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(Connection { address }),
        _ => Err(bad(
            line_no,
            format!("address type {addr_type:?} does not match {addr:?}"),
        )),
    }
}

fn parse_timing(value: &str, line_no: usize) -> Result<Timing, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [start, stop] = f.as_slice() else {
        return Err(bad(line_no, "t= needs 2 fields"));
    };
    Ok(Timing {
        start: parse_num(start, line_no, "start time")?,
        stop: parse_num(stop, line_no, "stop time")?,
    })
}

fn parse_media_line(value: &str, line_no: usize) -> Result<MediaDescription, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [media, port, proto, formats @ ..] = f.as_slice() else {
        return Err(bad(line_no, "m= needs media, port, proto and formats"));
    };
    if formats.is_empty() {
        return Err(bad(line_no, "m= has no formats"));
    }
    let (port, port_count) = match port.split_once('/') {
        Some((p, n)) => (p, Some(parse_num(n, line_no, "port count")?)),
        None => (*port, None),
    };
    Ok(MediaDescription {
        media: media.to_string(),
        port: parse_num(port, line_no, "port")?,
        port_count,
        proto: proto.to_string(),
        formats: formats.iter().map(|s| s.to_string()).collect(),
        connection: None,
        attributes: Vec::new(),
        extra: Vec::new(),
    })
}

/// A known attribute with a value we cannot read (RFC 4475's `a=rtpmap:31
/// LPC`, a typo in a video line) is kept as `Other` rather than failing the
/// whole offer: it only matters if it names the codec we would pick, and
/// then negotiation finds no usable rtpmap and moves on.
fn parse_attribute(value: &str, line_no: usize) -> Result<Attribute, SdpError> {
    let (name, val) = match value.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (value, None),
    };
    Ok(
        parse_known_attribute(name, val, line_no).unwrap_or_else(|_| Attribute::Other {
            name: name.to_string(),
            value: val.map(str::to_string),
        }),
    )
}

fn parse_known_attribute(
    name: &str,
    val: Option<&str>,
    line_no: usize,
) -> Result<Attribute, SdpError> {
    let need = || val.ok_or_else(|| bad(line_no, format!("a={name} needs a value")));
    Ok(match name {
        "rtpmap" => {
            let v = need()?;
            let (pt, rest) = v
                .trim()
                .split_once(' ')
                .ok_or_else(|| bad(line_no, "rtpmap needs <pt> <encoding>/<clock>"))?;
            let pt: u8 = parse_num(pt, line_no, "payload type")?;
            if pt > 127 {
                return Err(bad(line_no, "payload type above 127"));
            }
            let parts: Vec<&str> = rest.trim().split('/').collect();
            let (encoding, clock, channels) = match parts.as_slice() {
                [e, c] => (*e, *c, None),
                [e, c, ch] => (*e, *c, Some(parse_num(ch, line_no, "channel count")?)),
                _ => return Err(bad(line_no, "rtpmap needs <encoding>/<clock>[/<channels>]")),
            };
            if encoding.is_empty() {
                return Err(bad(line_no, "rtpmap has empty encoding name"));
            }
            Attribute::RtpMap {
                pt,
                encoding: encoding.to_string(),
                clock_rate: parse_num(clock, line_no, "clock rate")?,
                channels,
            }
        }
        "fmtp" => {
            let v = need()?.trim();
            let (format, params) = v.split_once(' ').unwrap_or((v, ""));
            Attribute::Fmtp {
                format: format.to_string(),
                params: params.trim().to_string(),
            }
        }
        "ptime" => Attribute::Ptime(parse_num(need()?, line_no, "ptime")?),
        "maxptime" => Attribute::MaxPtime(parse_num(need()?, line_no, "maxptime")?),
        "sendrecv" => Attribute::Direction(Direction::SendRecv),
        "sendonly" => Attribute::Direction(Direction::SendOnly),
        "recvonly" => Attribute::Direction(Direction::RecvOnly),
        "inactive" => Attribute::Direction(Direction::Inactive),
        _ => Attribute::Other {
            name: name.to_string(),
            value: val.map(str::to_string),
        },
    })
}

fn write_extra(f: &mut fmt::Formatter<'_>, extra: &[(char, String)], kinds: &str) -> fmt::Result {
    for (k, v) in extra.iter().filter(|(k, _)| kinds.contains(*k)) {
        write!(f, "{k}={v}\r\n")?;
    }
    Ok(())
}

fn write_extra_not(
    f: &mut fmt::Formatter<'_>,
    extra: &[(char, String)],
    kinds: &str,
) -> fmt::Result {
    for (k, v) in extra.iter().filter(|(k, _)| !kinds.contains(*k)) {
        write!(f, "{k}={v}\r\n")?;
    }
    Ok(())
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "IN IP4 {a}"),
            IpAddr::V6(a) => write!(f, "IN IP6 {a}"),
        }
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt_ in &self.formats {
            write!(f, " {fmt_}")?;
        }
        f.write_str("\r\n")?;
        // Field order follows RFC 4566 §5 so strict parsers accept our output.
        write_extra(f, &self.extra, "i")?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_extra(f, &self.extra, "b")?;
        write_extra_not(f, &self.extra, "ib")?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.net_type,
            o.addr_type,
            o.address,
            self.session_name
        )?;
        write_extra(f, &self.extra, "iuep")?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_extra(f, &self.extra, "b")?;
        if self.timing.is_empty() {
            // t= is mandatory; "0 0" means an unbounded session.
            f.write_str("t=0 0\r\n")?;
        }
        for t in &self.timing {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
        }
        write_extra_not(f, &self.extra, "iuepb")?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Offer/answer (RFC 3264)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    pub fn static_pt(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    fn from_rtpmap(encoding: &str, clock: u32, channels: Option<u32>) -> Option<Self> {
        if clock != 8000 || channels.is_some_and(|c| c != 1) {
            return None;
        }
        // Encoding names are case-insensitive (RFC 4855 §3).
        if encoding.eq_ignore_ascii_case("PCMU") {
            Some(G711::Pcmu)
        } else if encoding.eq_ignore_ascii_case("PCMA") {
            Some(G711::Pcma)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub pt: u8,
    pub name: G711,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub port: u16,
    pub session_id: u64,
    pub version: u64,
    /// Codecs we accept. The offerer's order decides among them (RFC 3264
    /// §6.1), so this is a set in practice.
    pub codecs: Vec<G711>,
    pub telephone_event: bool,
    /// Used when the offer has no a=ptime.
    pub ptime: u32,
}

impl LocalMedia {
    pub fn new(addr: IpAddr, port: u16, session_id: u64, version: u64) -> Self {
        LocalMedia {
            addr,
            port,
            session_id,
            version,
            codecs: vec![G711::Pcmu, G711::Pcma],
            telephone_event: true,
            ptime: 20,
        }
    }
}

/// Both variants mean the UAS should answer 488 Not Acceptable Here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("offer has no active RTP/AVP audio stream")]
    NoAudio,
    #[error("no codec in common with the offer")]
    NoCommonCodec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sdp: SessionDescription,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// `None` when the peer gave no usable address (missing c=, or the
    /// 0.0.0.0 / :: hold convention): don't send RTP anywhere.
    pub remote_rtp: Option<SocketAddr>,
    /// Direction as answered, i.e. from our point of view.
    pub direction: Direction,
    /// The offerer put the call on hold, either with a=sendonly/inactive or
    /// with the RFC 2543 c=0.0.0.0 convention.
    pub hold: bool,
    pub ptime: u32,
}

struct Accepted {
    media: MediaDescription,
    codec: Codec,
    telephone_event_pt: Option<u8>,
    remote_rtp: Option<SocketAddr>,
    direction: Direction,
    hold: bool,
    ptime: u32,
}

fn is_active_audio(m: &MediaDescription) -> bool {
    // Only plain RTP/AVP: SAVP needs SRTP keys we can't provide, and AVPF
    // feedback we don't implement.
    m.media.eq_ignore_ascii_case("audio") && m.port != 0 && m.proto.eq_ignore_ascii_case("RTP/AVP")
}

fn resolve_codec(m: &MediaDescription, pt: u8) -> Option<G711> {
    match m.rtpmap(pt) {
        Some((enc, clock, ch)) => G711::from_rtpmap(enc, clock, ch),
        // Static assignments from RFC 3551 apply without an rtpmap.
        None => match pt {
            0 => Some(G711::Pcmu),
            8 => Some(G711::Pcma),
            _ => None,
        },
    }
}

fn accept_audio(
    offer: &SessionDescription,
    m: &MediaDescription,
    local: &LocalMedia,
) -> Option<Accepted> {
    let codec = m.formats.iter().find_map(|f| {
        let pt: u8 = f.parse().ok()?;
        let name = resolve_codec(m, pt)?;
        local.codecs.contains(&name).then_some(Codec { pt, name })
    })?;

    let telephone_event_pt = if local.telephone_event {
        m.formats.iter().find_map(|f| {
            let pt: u8 = f.parse().ok()?;
            let (enc, clock, _) = m.rtpmap(pt)?;
            (enc.eq_ignore_ascii_case("telephone-event") && clock == 8000).then_some(pt)
        })
    } else {
        None
    };

    let conn = m.connection.or(offer.connection);
    let null_addr = conn.is_some_and(|c| c.address.is_unspecified());
    let remote_rtp = conn
        .filter(|c| !c.address.is_unspecified())
        .map(|c| SocketAddr::new(c.address, m.port));

    let mut offered = m
        .direction()
        .or(offer.direction())
        .unwrap_or(Direction::SendRecv);
    if null_addr {
        // c=0.0.0.0 means "don't send to me" (RFC 3264 §8.4), so the offerer
        // can at most still send.
        offered = match offered {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        };
    }
    let hold = null_addr || matches!(offered, Direction::SendOnly | Direction::Inactive);
    let direction = offered.reversed();

    let ptime = m
        .ptime()
        .or(ptime_of(&offer.attributes))
        .filter(|p| *p > 0)
        .unwrap_or(local.ptime);

    let mut formats = vec![codec.pt.to_string()];
    let mut attributes = vec![Attribute::RtpMap {
        pt: codec.pt,
        encoding: codec.name.encoding_name().to_string(),
        clock_rate: 8000,
        channels: None,
    }];
    if let Some(te) = telephone_event_pt {
        formats.push(te.to_string());
        attributes.push(Attribute::RtpMap {
            pt: te,
            encoding: "telephone-event".to_string(),
            clock_rate: 8000,
            channels: None,
        });
        // Echo the offered event list: answering with events the offerer
        // didn't list would be invalid, and 0-15 (DTMF) is the safe default.
        let params = m
            .fmtp(&te.to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or("0-15")
            .to_string();
        attributes.push(Attribute::Fmtp {
            format: te.to_string(),
            params,
        });
    }
    attributes.push(Attribute::Ptime(ptime));
    attributes.push(Attribute::Direction(direction));

    Some(Accepted {
        media: MediaDescription {
            media: m.media.clone(),
            port: local.port,
            port_count: None,
            proto: m.proto.clone(),
            formats,
            connection: None,
            attributes,
            extra: Vec::new(),
        },
        codec,
        telephone_event_pt,
        remote_rtp,
        direction,
        hold,
        ptime,
    })
}

/// RFC 3264 §6: a rejected stream keeps its slot with port 0 so the answer
/// lines up with the offer m-line by m-line.
fn rejected(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: m.media.clone(),
        port: 0,
        port_count: None,
        proto: m.proto.clone(),
        formats: m.formats.clone(),
        connection: None,
        attributes: Vec::new(),
        extra: Vec::new(),
    }
}

pub fn negotiate(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<Answer, NegotiationError> {
    let mut accepted: Option<Accepted> = None;
    let mut saw_audio = false;
    let mut media = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        // A G.711 gateway bridges exactly one audio stream; later ones are
        // declined rather than mixed.
        if accepted.is_none() && is_active_audio(m) {
            saw_audio = true;
            if let Some(mut a) = accept_audio(offer, m, local) {
                media.push(std::mem::replace(&mut a.media, rejected(m)));
                accepted = Some(a);
                continue;
            }
        }
        media.push(rejected(m));
    }
    let a = match accepted {
        Some(a) => a,
        None if saw_audio => return Err(NegotiationError::NoCommonCodec),
        None => return Err(NegotiationError::NoAudio),
    };
    let sdp = local_session(local, media);
    Ok(Answer {
        sdp,
        codec: a.codec,
        telephone_event_pt: a.telephone_event_pt,
        remote_rtp: a.remote_rtp,
        direction: a.direction,
        hold: a.hold,
        ptime: a.ptime,
    })
}

/// Our offer, for INVITEs that arrived without one (late offer, RFC 3261
/// 13.2.1) and for re-INVITEs we send: every local codec, then
/// telephone-event on PT 101 (the de-facto default PBXes expect).
pub fn offer(local: &LocalMedia) -> SessionDescription {
    let mut formats: Vec<String> = local
        .codecs
        .iter()
        .map(|c| c.static_pt().to_string())
        .collect();
    let mut attributes: Vec<Attribute> = local
        .codecs
        .iter()
        .map(|c| Attribute::RtpMap {
            pt: c.static_pt(),
            encoding: c.encoding_name().to_string(),
            clock_rate: 8000,
            channels: None,
        })
        .collect();
    if local.telephone_event {
        formats.push("101".into());
        attributes.push(Attribute::RtpMap {
            pt: 101,
            encoding: "telephone-event".into(),
            clock_rate: 8000,
            channels: None,
        });
        attributes.push(Attribute::Fmtp {
            format: "101".into(),
            params: "0-15".into(),
        });
    }
    attributes.push(Attribute::Ptime(local.ptime));
    attributes.push(Attribute::Direction(Direction::SendRecv));
    local_session(
        local,
        vec![MediaDescription {
            media: "audio".into(),
            port: local.port,
            port_count: None,
            proto: "RTP/AVP".into(),
            formats,
            connection: None,
            attributes,
            extra: Vec::new(),
        }],
    )
}

/// Our session-level lines (o=, s=, c=, t=) around `media`.
fn local_session(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    let addr_type = match local.addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    SessionDescription {
        origin: Origin {
            username: "-".to_string(),
            session_id: local.session_id.to_string(),
            session_version: local.version.to_string(),
            net_type: "IN".to_string(),
            addr_type: addr_type.to_string(),
            address: local.addr.to_string(),
        },
        session_name: "-".to_string(),
        connection: Some(Connection {
            address: local.addr,
        }),
        timing: vec![Timing { start: 0, stop: 0 }],
        attributes: Vec::new(),
        media,
        extra: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn crlf(lines: &[&str]) -> String {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n");
        s
    }

    /// An offer from 192.0.2.10 with the given media sections.
    fn offer_with(media: &[&str]) -> String {
        let mut lines = vec![
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.10",
            "s=-",
            "c=IN IP4 192.0.2.10",
            "t=0 0",
        ];
        lines.extend_from_slice(media);
        crlf(&lines)
    }

    #[test]
    fn our_offer_parses_and_negotiates_against_itself() {
        let local = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000, 7, 1);
        let text = offer(&local).to_string();
        let parsed = SessionDescription::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let answer = negotiate(&parsed, &local).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.codec.name, G711::Pcmu);
        assert_eq!(answer.telephone_event_pt, Some(101));
        assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{text}");
    }

    fn pbx_offer() -> String {
        crlf(&[
            "v=0",
            "o=asterisk 1234 5678 IN IP4 192.0.2.10",
            "s=Asterisk",
            "c=IN IP4 192.0.2.10",
            "t=0 0",
            "m=audio 10000 RTP/AVP 0 8 18 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:18 G729/8000",
            "a=fmtp:18 annexb=no",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=maxptime:150",
            "a=sendrecv",
        ])
    }

    fn local() -> LocalMedia {
        LocalMedia::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 20000, 42, 1)
    }

    fn answer_for(sdp: &str) -> Result<Answer, NegotiationError> {
        let offer = SessionDescription::parse(sdp).expect("test offer parses");
        negotiate(&offer, &local())
    }

    #[test]
    fn typical_pbx_offer_round_trip() {
        let offer = SessionDescription::parse(&pbx_offer()).unwrap();
        assert_eq!(offer.media.len(), 1);
        let m = &offer.media[0];
        assert_eq!(m.formats, ["0", "8", "18", "101"]);
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(m.direction(), Some(Direction::SendRecv));
        assert!(m.attributes.contains(&Attribute::MaxPtime(150)));

        let ans = negotiate(&offer, &local()).unwrap();
        assert_eq!(
            ans.codec,
            Codec {
                pt: 0,
                name: G711::Pcmu
            }
        );
        assert_eq!(ans.telephone_event_pt, Some(101));
        assert_eq!(ans.remote_rtp, Some("192.0.2.10:10000".parse().unwrap()));
        assert_eq!(ans.direction, Direction::SendRecv);
        assert!(!ans.hold);
        assert_eq!(ans.ptime, 20);

        let text = ans.sdp.to_string();
        assert!(text.ends_with("\r\n"));
        assert!(text.contains("m=audio 20000 RTP/AVP 0 101\r\n"));
        assert!(text.contains("a=fmtp:101 0-16\r\n"));
        let reparsed = SessionDescription::parse(&text).unwrap();
        assert_eq!(reparsed, ans.sdp);
        // The offer also survives a serialise/parse cycle.
        assert_eq!(
            SessionDescription::parse(&offer.to_string()).unwrap(),
            offer
        );
    }

    #[test]
    fn offerer_order_wins() {
        let sdp = pbx_offer().replace("RTP/AVP 0 8 18 101", "RTP/AVP 8 0 101");
        let ans = answer_for(&sdp).unwrap();
        assert_eq!(ans.codec.name, G711::Pcma);
        assert_eq!(ans.codec.pt, 8);
    }

    #[test]
    fn only_g729_is_rejected() {
        let sdp = offer_with(&["m=audio 10000 RTP/AVP 18", "a=rtpmap:18 G729/8000"]);
        assert_eq!(answer_for(&sdp), Err(NegotiationError::NoCommonCodec));
    }

    #[test]
    fn video_only_is_no_audio() {
        let sdp = offer_with(&["m=video 10002 RTP/AVP 96"]);
        assert_eq!(answer_for(&sdp), Err(NegotiationError::NoAudio));
    }

    #[test]
    fn video_and_audio_keeps_mline_layout() {
        let sdp = offer_with(&[
            "m=video 10002 RTP/AVP 96 97",
            "a=rtpmap:96 H264/90000",
            "m=audio 10000 RTP/AVP 0",
            "m=audio 10004 RTP/AVP 8",
        ]);
        let ans = answer_for(&sdp).unwrap();
        let m = &ans.sdp.media;
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].media.as_str(), m[0].port), ("video", 0));
        assert_eq!(m[0].formats, ["96", "97"]);
        assert_eq!(m[1].port, 20000);
        assert_eq!(
            (m[2].port, m[2].formats.as_slice()),
            (0, &["8".to_string()][..])
        );
        assert_eq!(ans.telephone_event_pt, None);
        let reparsed = SessionDescription::parse(&ans.sdp.to_string()).unwrap();
        assert_eq!(reparsed.media.len(), 3);
    }

    #[test]
    fn disabled_audio_stream_is_skipped() {
        let sdp = offer_with(&["m=audio 0 RTP/AVP 0", "m=audio 10004 RTP/AVP 8"]);
        let ans = answer_for(&sdp).unwrap();
        assert_eq!(ans.sdp.media[0].port, 0);
        assert_eq!(ans.sdp.media[1].port, 20000);
        assert_eq!(ans.codec.name, G711::Pcma);
    }

    #[test]
    fn sendonly_hold_answers_recvonly() {
        let ans = answer_for(&pbx_offer().replace("a=sendrecv", "a=sendonly")).unwrap();
        assert_eq!(ans.direction, Direction::RecvOnly);
        assert!(ans.hold);
        assert!(ans.sdp.media[0]
            .attributes
            .contains(&Attribute::Direction(Direction::RecvOnly)));
    }

    #[test]
    fn other_directions() {
        let ans = answer_for(&pbx_offer().replace("a=sendrecv", "a=recvonly")).unwrap();
        assert_eq!(ans.direction, Direction::SendOnly);
        assert!(!ans.hold);
        let ans = answer_for(&pbx_offer().replace("a=sendrecv", "a=inactive")).unwrap();
        assert_eq!(ans.direction, Direction::Inactive);
        assert!(ans.hold);
    }

    #[test]
    fn null_address_hold() {
        let sdp = pbx_offer().replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        let ans = answer_for(&sdp).unwrap();
        assert!(ans.hold);
        assert_eq!(ans.remote_rtp, None);
        assert_eq!(ans.direction, Direction::RecvOnly);
    }

    #[test]
    fn ipv6_connection() {
        let sdp = pbx_offer().replace("c=IN IP4 192.0.2.10", "c=IN IP6 2001:db8::1");
        let ans = answer_for(&sdp).unwrap();
        assert_eq!(ans.remote_rtp, Some("[2001:db8::1]:10000".parse().unwrap()));

        let l = LocalMedia::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4000, 1, 1);
        let offer = SessionDescription::parse(&sdp).unwrap();
        let text = negotiate(&offer, &l).unwrap().sdp.to_string();
        assert!(text.contains("c=IN IP6 ::1\r\n"));
        assert!(SessionDescription::parse(&text).is_ok());
    }

    #[test]
    fn media_level_connection_overrides_session() {
        let sdp = pbx_offer().replace("a=ptime:20", "c=IN IP4 203.0.113.5\r\na=ptime:30");
        let ans = answer_for(&sdp).unwrap();
        assert_eq!(ans.remote_rtp, Some("203.0.113.5:10000".parse().unwrap()));
        assert_eq!(ans.ptime, 30);
    }

    #[test]
    fn dynamic_pt_pcmu_with_lf_endings() {
        let sdp = "v=0\no=- 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n\
                   m=audio 10000 RTP/AVP 96 97\na=rtpmap:96 pcmu/8000\n\
                   a=rtpmap:97 telephone-event/8000\n";
        let ans = answer_for(sdp).unwrap();
        assert_eq!(
            ans.codec,
            Codec {
                pt: 96,
                name: G711::Pcmu
            }
        );
        assert_eq!(ans.telephone_event_pt, Some(97));
        assert_eq!(ans.ptime, 20);
    }

    #[test]
    fn static_pt_remapped_by_rtpmap_is_respected() {
        let sdp = pbx_offer().replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 L16/16000");
        assert_eq!(answer_for(&sdp).unwrap().codec.name, G711::Pcma);
    }

    #[test]
    fn local_codec_set_is_honoured() {
        let offer = SessionDescription::parse(&pbx_offer()).unwrap();
        let mut l = local();
        l.codecs = vec![G711::Pcma];
        l.telephone_event = false;
        let ans = negotiate(&offer, &l).unwrap();
        assert_eq!(ans.codec.name, G711::Pcma);
        assert_eq!(ans.telephone_event_pt, None);
        l.codecs.clear();
        assert_eq!(negotiate(&offer, &l), Err(NegotiationError::NoCommonCodec));
    }

    fn line_of(err: SdpError) -> Option<usize> {
        match err {
            SdpError::Malformed { line, .. } | SdpError::TooManyMedia { line } => Some(line),
            _ => None,
        }
    }

    #[test]
    fn malformed_lines_report_line_number() {
        let cases = [
            (
                "m=audio 10000 RTP/AVP",
                "m=audio 10000 RTP/AVP 0 8 18 101",
                6,
            ),
            (
                "m=audio 99999 RTP/AVP 0",
                "m=audio 10000 RTP/AVP 0 8 18 101",
                6,
            ),
            ("m=audio x RTP/AVP 0", "m=audio 10000 RTP/AVP 0 8 18 101", 6),
            ("c=IN IP4 nothost", "c=IN IP4 192.0.2.10", 4),
            ("c=IN IP6 192.0.2.10", "c=IN IP4 192.0.2.10", 4),
            ("o=short", "o=asterisk 1234 5678 IN IP4 192.0.2.10", 2),
            ("garbage", "t=0 0", 5),
        ];
        for (bad_line, good_line, line) in cases {
            let sdp = pbx_offer().replace(good_line, bad_line);
            let err = SessionDescription::parse(&sdp).unwrap_err();
            assert_eq!(line_of(err.clone()), Some(line), "{bad_line}: {err}");
            assert!(err.to_string().contains(&format!("line {line}")));
        }
    }

    #[test]
    fn unreadable_attribute_values_are_kept_not_fatal() {
        // RFC 4475 esc01/longreq/baddate carry `a=rtpmap:31 LPC` (no clock).
        for (bad_line, good_line) in [
            ("a=rtpmap:300 PCMU/8000", "a=rtpmap:0 PCMU/8000"),
            ("a=rtpmap:0 PCMU", "a=rtpmap:0 PCMU/8000"),
            ("a=ptime:abc", "a=ptime:20"),
        ] {
            let sdp = pbx_offer().replace(good_line, bad_line);
            let parsed =
                SessionDescription::parse(&sdp).unwrap_or_else(|e| panic!("{bad_line}: {e}"));
            let kept = parsed.media[0].attributes.iter().any(|a| {
                matches!(a, Attribute::Other { name, .. } if bad_line.starts_with(&format!("a={name}")))
            });
            assert!(kept, "{bad_line}");
            let local = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000, 1, 1);
            assert!(negotiate(&parsed, &local).is_ok(), "{bad_line}");
        }
    }

    #[test]
    fn missing_mandatory_lines() {
        let no_v = pbx_offer().replace("v=0\r\n", "");
        assert_eq!(
            SessionDescription::parse(&no_v),
            Err(SdpError::MissingVersion)
        );
        let no_o = pbx_offer().replace("o=asterisk 1234 5678 IN IP4 192.0.2.10\r\n", "");
        assert_eq!(
            SessionDescription::parse(&no_o),
            Err(SdpError::MissingOrigin)
        );
        let no_m = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(SessionDescription::parse(no_m), Err(SdpError::MissingMedia));
        assert_eq!(SessionDescription::parse(""), Err(SdpError::MissingVersion));
    }

    #[test]
    fn limits() {
        let big = "v=0\r\n".to_string() + &"a=x\r\n".repeat(2000);
        assert!(matches!(
            SessionDescription::parse(&big),
            Err(SdpError::TooLarge { .. })
        ));
        let many = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\n".to_string()
            + &"m=audio 0 RTP/AVP 0\r\n".repeat(65);
        assert_eq!(
            SessionDescription::parse(&many),
            Err(SdpError::TooManyMedia { line: 69 })
        );
    }

    #[test]
    fn truncation_never_panics() {
        let sdp = pbx_offer();
        for i in 0..=sdp.len() {
            if let Some(prefix) = sdp.get(..i) {
                if let Ok(offer) = SessionDescription::parse(prefix) {
                    let _ = negotiate(&offer, &local());
                }
            }
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "v=0\r\no=\r\n",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nm=\n",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1/ RTP/AVP 0\n",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:\na=fmtp:\n",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP é 0\na=rtpmap:0 /\n",
            "é=0",
            "=",
            "\r\n\r\n",
        ] {
            if let Ok(offer) = SessionDescription::parse(s) {
                let _ = negotiate(&offer, &local());
            }
        }
    }
}
