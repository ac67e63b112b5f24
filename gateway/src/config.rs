//! The gateway's one config file (TOML).
//!
//! Every key has a default, so an empty file (or none) gives a working gateway; unknown
//! keys are errors, because a misspelt key silently falling back to its default is the
//! kind of mistake that only shows in production. Errors name the file, line and column.
//! `systemd/hotline.toml` lists every key with its default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax or type error, or a failed check, with where it is in the file when known.
    #[error("{origin}{}: {message}{}", position(*at), key_suffix(key))]
    Parse {
        origin: String,
        /// 1-based line and column (in characters).
        at: Option<(usize, usize)>,
        message: String,
        /// Dotted key path, e.g. `sip.max_calls`.
        key: Option<String>,
    },
    /// A failed check from [`Config::validate`], before it is tied to a file. `keys` are
    /// the keys involved, the one to change first; the message names them.
    #[error("{message}")]
    Invalid { keys: Vec<String>, message: String },
}

fn position(at: Option<(usize, usize)>) -> String {
    at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default()
}

fn key_suffix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!(" for key `{k}`"))
        .unwrap_or_default()
}

fn invalid(keys: &[&str], message: impl Into<String>) -> ConfigError {
    let mut message = message.into();
    if let Some(first) = keys.first().filter(|k| !message.contains(**k)) {
        message = format!("{first} {message}");
    }
    ConfigError::Invalid {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        message,
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the call store (`hotline.db`) and later recordings live. A relative path is
    /// taken from the working directory of the process, like any other path argument.
    pub data_dir: PathBuf,
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub asr: AsrConfig,
    pub http: HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            sip: SipConfig::default(),
            media: MediaConfig::default(),
            asr: AsrConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// The media plane: RTP ports, liveness, recording, prompts, DTMF.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// RTP port range (even ports; RTCP on the odd port above). Each call takes a pair.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// End a call with `rtp-timeout` after this many seconds without RTP (not while on
    /// hold); 0 = never.
    pub rtp_timeout_s: u64,
    /// Record every answered call (stereo WAV under `<data_dir>/recordings/`).
    pub record: bool,
    /// Played to the caller on answer until the IVR takes over; empty = silence. A
    /// relative path is taken from the working directory.
    pub greeting: PathBuf,
    /// Detect DTMF tones in the caller's audio (for trunks that do not send RFC 4733).
    pub inband_dtmf: bool,
    /// Accept RTP only from the IP address in the caller's SDP.
    pub strict_source: bool,
    /// Run the thread that sends every call's RTP at real-time priority (needs
    /// CAP_SYS_NICE; without it the thread runs at normal priority).
    pub realtime_pacer: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            rtp_timeout_s: 30,
            record: true,
            greeting: PathBuf::from("ivr-scripts/prompts/welcome.wav"),
            inband_dtmf: true,
            strict_source: false,
            realtime_pacer: true,
        }
    }
}

/// Live transcripts: whisper on both sides of every answered call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsrConfig {
    pub enabled: bool,
    /// A model name (`base`, `tiny.en`, ...: fetched with `hotline model fetch`) or the
    /// path of a ggml model file.
    pub model: String,
    /// `zh`, `en` or `auto`.
    pub language: String,
    /// Which sides of a call are transcribed: `caller`, `gateway` (the prompts, later
    /// the agent), or both.
    pub channels: Vec<String>,
    /// Whisper states decoding in parallel; 0 = one per core.
    pub workers: usize,
    /// Most CPU threads one decode may take; 0 = all cores. A decode with nothing
    /// else waiting takes every free core (lowest latency), otherwise one (most
    /// throughput); together decodes never use more threads than there are cores,
    /// since whisper's threads spin while they wait for each other.
    pub threads: usize,
    /// Beam width of final decodes while no other final waits; with a backlog, and
    /// for partials, decodes are greedy without temperature fallback.
    pub final_beam: u32,
    /// Re-decode an open utterance this often, for partial transcripts; 0 = no partials.
    pub partial_interval_ms: u64,
    /// Silence that ends an utterance.
    pub end_silence_ms: u64,
    /// A longer utterance is split at its quietest point.
    pub max_utterance_ms: u64,
    /// Once an utterance has gone on this long, a pause of `long_end_silence_ms` ends
    /// it (0: only `end_silence_ms` does): long turns come out as text sooner, in
    /// pieces that decode faster, cut at a breath.
    pub long_after_ms: u64,
    pub long_end_silence_ms: u64,
}

impl Default for AsrConfig {
    fn default() -> Self {
        AsrConfig {
            enabled: true,
            model: "base-q8_0".into(),
            language: "zh".into(),
            channels: vec!["caller".into(), "gateway".into()],
            workers: 0,
            threads: 0,
            final_beam: 1,
            partial_interval_ms: 1000,
            end_silence_ms: 600,
            max_utterance_ms: 12_000,
            long_after_ms: 8000,
            long_end_silence_ms: 400,
        }
    }
}

impl AsrConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.model.trim().is_empty() {
            return Err(invalid(&["asr.model"], "must name a model or a file"));
        }
        if self
            .language
            .parse::<hotline_asr::engine::Language>()
            .is_err()
        {
            return Err(invalid(
                &["asr.language"],
                format!("`{}` is not one of zh, en, auto", self.language),
            ));
        }
        let mut seen = Vec::new();
        for c in &self.channels {
            if c != "caller" && c != "gateway" {
                return Err(invalid(
                    &["asr.channels"],
                    format!("`{c}` is not a channel (caller, gateway)"),
                ));
            }
            if seen.contains(&c) {
                return Err(invalid(&["asr.channels"], format!("`{c}` is listed twice")));
            }
            seen.push(c);
        }
        if self.workers > 64 || self.threads > 64 {
            return Err(invalid(
                &["asr.workers", "asr.threads"],
                "asr.workers and asr.threads are at most 64",
            ));
        }
        if !(1..=16).contains(&self.final_beam) {
            return Err(invalid(&["asr.final_beam"], "must be 1 to 16"));
        }
        if self.partial_interval_ms != 0 && self.partial_interval_ms < 200 {
            return Err(invalid(
                &["asr.partial_interval_ms"],
                "must be 0 (no partials) or at least 200",
            ));
        }
        if !(100..=5000).contains(&self.end_silence_ms) {
            return Err(invalid(&["asr.end_silence_ms"], "must be 100 to 5000"));
        }
        // Whisper sees 30 s at most; padding goes on top.
        if !(2000..=28_000).contains(&self.max_utterance_ms) {
            return Err(invalid(&["asr.max_utterance_ms"], "must be 2000 to 28000"));
        }
        if self.long_after_ms != 0 && !(2000..=self.max_utterance_ms).contains(&self.long_after_ms)
        {
            return Err(invalid(
                &["asr.long_after_ms"],
                "must be 0 (off) or 2000 up to asr.max_utterance_ms",
            ));
        }
        if !(100..=self.end_silence_ms).contains(&self.long_end_silence_ms) {
            return Err(invalid(
                &["asr.long_end_silence_ms"],
                "must be 100 up to asr.end_silence_ms",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Addresses to listen on (each with UDP and/or TCP); `[::]:5060` for IPv6.
    pub listen: Vec<SocketAddr>,
    pub udp: bool,
    pub tcp: bool,
    /// Calls up at once; an INVITE beyond this gets 503 with `Retry-After`.
    pub max_calls: usize,
    pub retry_after_s: u32,
    /// Trunk allow-list (CIDRs or bare addresses); empty allows every source.
    #[serde(
        deserialize_with = "deserialize_nets",
        serialize_with = "serialize_nets"
    )]
    pub allow: Vec<IpNet>,
    /// Digest authentication for INVITE; off unless `[sip.auth]` is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Ring (180) this long before answering; 0 answers at once.
    pub answer_delay_ms: u64,
    /// Hang up (BYE) answered calls after this long; 0 = never.
    pub max_call_s: u64,
    /// RFC 4028 session timer we ask for, and the smallest we accept.
    pub session_expires_s: u32,
    pub min_se_s: u32,
    /// RFC 3261 timers.
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// Close inbound TCP connections idle this long.
    pub tcp_idle_s: u64,
    pub max_tcp_connections: usize,
    /// `User-Agent` / `Server` header value.
    pub user_agent: String,
    /// Host for Contact/Via when listening on a wildcard address (behind NAT, or a
    /// name the PBX should use); None uses the local address the request arrived on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060)],
            udp: true,
            tcp: true,
            max_calls: 1000,
            retry_after_s: 5,
            allow: Vec::new(),
            auth: None,
            answer_delay_ms: 0,
            max_call_s: 0,
            session_expires_s: 1800,
            min_se_s: 90,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            tcp_idle_s: 600,
            max_tcp_connections: 4096,
            user_agent: concat!("hotline/", env!("CARGO_PKG_VERSION")).to_string(),
            public_host: None,
        }
    }
}

impl SipConfig {
    /// Whether `ip` may send us requests. IPv4 peers reaching a dual-stack `[::]` socket
    /// show up as `::ffff:a.b.c.d`, so those are matched as the IPv4 address they are.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        let ip = ip.to_canonical();
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub realm: String,
    /// Username -> password.
    pub users: BTreeMap<String, String>,
    /// Offered in this order (one challenge each). MD5 first by default: many PBXes
    /// and SIPp answer the first challenge whatever its algorithm and only do MD5,
    /// while RFC 8760 clients pick the first they support, so this order lets both
    /// in. Put "SHA-256" first (or alone) where every trunk supports it.
    pub algorithms: Vec<DigestAlgorithm>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            realm: "hotline".to_string(),
            users: BTreeMap::new(),
            algorithms: vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256],
        }
    }
}

// Written by hand so that logging the config (`?config`) never prints passwords.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.keys().map(|k| (k, "<redacted>")))
                    .finish()
            }
        }
        f.debug_struct("AuthConfig")
            .field("realm", &self.realm)
            .field("users", &Redacted(&self.users))
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "MD5", alias = "md5")]
    Md5,
    #[serde(rename = "SHA-256", alias = "sha-256")]
    Sha256,
}

impl DigestAlgorithm {
    /// The token used in `WWW-Authenticate` / `Authorization` (RFC 8760).
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// API and QA page; `listen = false` turns the HTTP server off (TOML has no null).
    #[serde(
        deserialize_with = "deserialize_http_listen",
        serialize_with = "serialize_http_listen"
    )]
    pub listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)),
        }
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid address or CIDR `{s}`"))
}

/// One allow-list entry; parsed per element so that an error points at the entry.
struct NetEntry(IpNet);

impl<'de> Deserialize<'de> for NetEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed inside the visitor: toml attaches the value's position only to errors
        // raised while it is deserializing that value.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NetEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address or CIDR such as \"10.0.0.0/8\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NetEntry, E> {
                parse_net(v).map(NetEntry).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

fn deserialize_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let entries = Vec::<NetEntry>::deserialize(d)?;
    Ok(entries.into_iter().map(|e| e.0).collect())
}

fn serialize_nets<S: Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(|n| n.to_string()))
}

fn deserialize_http_listen<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a socket address like \"127.0.0.1:8080\", or false")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            if v {
                Err(E::invalid_value(serde::de::Unexpected::Bool(true), &self))
            } else {
                Ok(None)
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.parse()
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

fn serialize_http_listen<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_bool(false),
    }
}

/// Characters that would break out of a header value or a quoted-string.
fn header_unsafe(s: &str) -> bool {
    s.chars().any(|c| c.is_control() || c == '"' || c == '\\')
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in errors (usually the file path).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let key = span.as_ref().and_then(|s| key_at(text, s.start));
            ConfigError::Parse {
                origin: origin.to_string(),
                at: span.map(|s| line_col(text, s.start)),
                message: e.message().trim_end().to_string(),
                key,
            }
        })?;
        config.validate().map_err(|e| match e {
            // Point at the first involved key the file sets (an error about a default
            // is still caused by a key that is written down).
            ConfigError::Invalid { keys, message } => ConfigError::Parse {
                origin: origin.to_string(),
                at: keys
                    .iter()
                    .find_map(|k| key_position(text, k))
                    .map(|p| line_col(text, p)),
                message,
                key: None,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Checks what types alone cannot: values that make no sense together or would
    /// break a SIP header.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sip = &self.sip;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid(&["data_dir"], "must not be empty"));
        }
        if sip.listen.is_empty() {
            return Err(invalid(&["sip.listen"], "needs at least one address"));
        }
        if !sip.udp && !sip.tcp {
            return Err(invalid(
                &["sip.udp", "sip.tcp"],
                "sip.udp and sip.tcp are both false: nothing to listen with",
            ));
        }
        if sip.max_calls == 0 {
            return Err(invalid(&["sip.max_calls"], "must be at least 1"));
        }
        let m = &self.media;
        if m.rtp_port_min < 1024 || m.rtp_port_max < m.rtp_port_min.saturating_add(3) {
            return Err(invalid(
                &["media.rtp_port_min", "media.rtp_port_max"],
                format!(
                    "media.rtp_port_min..rtp_port_max ({}..{}) must be above 1023 and hold at least two ports",
                    m.rtp_port_min, m.rtp_port_max
                ),
            ));
        }
        self.asr.validate()?;
        if sip.t1_ms == 0 {
            return Err(invalid(&["sip.t1_ms"], "must be at least 1"));
        }
        if sip.t2_ms < sip.t1_ms {
            return Err(invalid(
                &["sip.t2_ms", "sip.t1_ms"],
                format!(
                    "sip.t2_ms ({}) is less than sip.t1_ms ({})",
                    sip.t2_ms, sip.t1_ms
                ),
            ));
        }
        if sip.t4_ms == 0 {
            return Err(invalid(&["sip.t4_ms"], "must be at least 1"));
        }
        // RFC 4028 section 4: Min-SE is never below 90 seconds.
        if sip.min_se_s < 90 {
            return Err(invalid(
                &["sip.min_se_s"],
                format!("sip.min_se_s ({}) is below 90 (RFC 4028)", sip.min_se_s),
            ));
        }
        if sip.session_expires_s < sip.min_se_s {
            return Err(invalid(
                &["sip.session_expires_s", "sip.min_se_s"],
                format!(
                    "sip.session_expires_s ({}) is less than sip.min_se_s ({})",
                    sip.session_expires_s, sip.min_se_s
                ),
            ));
        }
        if sip.tcp && sip.tcp_idle_s == 0 {
            return Err(invalid(&["sip.tcp_idle_s"], "must be at least 1"));
        }
        if sip.tcp && sip.max_tcp_connections == 0 {
            return Err(invalid(&["sip.max_tcp_connections"], "must be at least 1"));
        }
        if sip.user_agent.trim().is_empty() || sip.user_agent.chars().any(char::is_control) {
            return Err(invalid(
                &["sip.user_agent"],
                "must be non-empty, without control characters",
            ));
        }
        if let Some(host) = &sip.public_host {
            if host.is_empty()
                || host
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || ";,<>\"/".contains(c))
            {
                return Err(invalid(
                    &["sip.public_host"],
                    format!("`{host}` is not a host name or address"),
                ));
            }
        }
        if let Some(auth) = &sip.auth {
            if auth.realm.is_empty() || header_unsafe(&auth.realm) {
                return Err(invalid(
                    &["sip.auth.realm"],
                    "must be non-empty, without quotes, backslashes or control characters",
                ));
            }
            if auth.users.is_empty() {
                return Err(invalid(
                    &["sip.auth.users"],
                    "is empty: [sip.auth] needs at least one user",
                ));
            }
            if let Some(user) = auth.users.keys().find(|u| u.is_empty() || header_unsafe(u)) {
                return Err(invalid(&["sip.auth.users"],
                    format!("has a user name ({user:?}) that is empty or has quotes, backslashes or control characters"),
                ));
            }
            if auth.algorithms.is_empty() {
                return Err(invalid(
                    &["sip.auth.algorithms"],
                    "needs at least one algorithm",
                ));
            }
            for (i, a) in auth.algorithms.iter().enumerate() {
                if auth.algorithms[..i].contains(a) {
                    return Err(invalid(
                        &["sip.auth.algorithms"],
                        format!("lists {} twice", a.as_str()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

type DeTable<'i> = toml::de::DeTable<'i>;
type DeValue<'i> = toml::de::DeValue<'i>;

/// The dotted key path whose key or value covers byte offset `pos`, deepest first:
/// toml's own key path is private, and an error that says which key is far easier to
/// act on than a position alone.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    // Array indices are their own segments (`[1]`) and attach without a dot.
    find_key(doc.get_ref(), pos, &mut path).then(|| path.join(".").replace(".[", "["))
}

fn find_key(table: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        if find_in_value(v.get_ref(), v.span(), pos, path) || contains(&k.span(), pos) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(
    value: &DeValue<'_>,
    span: Range<usize>,
    pos: usize,
    path: &mut Vec<String>,
) -> bool {
    match value {
        DeValue::Table(t) => find_key(t, pos, path) || contains(&span, pos),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                if find_in_value(item.get_ref(), item.span(), pos, path) {
                    return true;
                }
                path.pop();
            }
            contains(&span, pos)
        }
        _ => contains(&span, pos),
    }
}

fn contains(span: &Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// Byte offset of the key `dotted` (e.g. `sip.t1_ms`) in `text`, if it is written there.
fn key_position(text: &str, dotted: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == part)?;
        if parts.peek().is_none() {
            return Some(k.span().start);
        }
        table = v.get_ref().as_table()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "hotline.toml")
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("[sip]\n[http]\n").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.sip.listen, vec!["0.0.0.0:5060".parse().unwrap()]);
        assert!(c.sip.udp && c.sip.tcp);
        assert_eq!(c.sip.max_calls, 1000);
        assert_eq!(c.sip.retry_after_s, 5);
        assert!(c.sip.allow.is_empty() && c.sip.auth.is_none());
        assert_eq!((c.sip.t1_ms, c.sip.t2_ms, c.sip.t4_ms), (500, 4000, 5000));
        assert_eq!((c.sip.session_expires_s, c.sip.min_se_s), (1800, 90));
        assert_eq!(
            c.sip.user_agent,
            format!("hotline/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(c.http.listen, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
data_dir = "/var/lib/hotline"
[sip]
listen = ["[::]:5060", "10.1.2.3:5080"]
udp = false
max_calls = 20
allow = ["10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32"]
answer_delay_ms = 1500
public_host = "gw1.example.cn"
[sip.auth]
realm = "12345"
algorithms = ["MD5"]
[sip.auth.users]
pbx1 = "secret"
[http]
listen = false
"#,
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/hotline"));
        assert_eq!(c.sip.listen[0], "[::]:5060".parse().unwrap());
        assert!(!c.sip.udp && c.sip.tcp);
        assert_eq!(c.sip.max_calls, 20);
        assert_eq!(c.sip.allow[1], "127.0.0.1/32".parse().unwrap());
        assert_eq!(c.sip.allow[2], "::1/128".parse().unwrap());
        let auth = c.sip.auth.as_ref().unwrap();
        assert_eq!(auth.realm, "12345");
        assert_eq!(auth.algorithms, vec![DigestAlgorithm::Md5]);
        assert_eq!(auth.users["pbx1"], "secret");
        assert_eq!(c.sip.public_host.as_deref(), Some("gw1.example.cn"));
        assert_eq!(c.http.listen, None);
        assert_eq!(c.sip.t1_ms, 500, "unset keys keep their defaults");
    }

    #[test]
    fn auth_defaults_when_table_present() {
        let c = parse("[sip.auth.users]\nalice = \"pw\"\n").unwrap();
        let auth = c.sip.auth.unwrap();
        assert_eq!(auth.realm, "hotline");
        assert_eq!(
            auth.algorithms,
            vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256]
        );
    }

    #[test]
    fn debug_hides_passwords() {
        let c = parse("[sip.auth.users]\nalice = \"hunter2\"\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("alice") && !dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn type_error_names_file_line_column_and_key() {
        let text = "# comment\n[sip]\nudp = true\nmax_calls = \"x\"\n";
        assert_eq!(
            err(text),
            "hotline.toml:4:13: invalid type: string \"x\", expected usize for key `sip.max_calls`"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = err("[sip]\nmax_call = 5\n");
        assert!(
            e.starts_with("hotline.toml:2:1: unknown field `max_call`"),
            "{e}"
        );
        assert!(e.contains("for key `sip.max_call`"), "{e}");
        let e = err("datadir = \"x\"\n");
        assert!(
            e.starts_with("hotline.toml:1:1: unknown field `datadir`"),
            "{e}"
        );
        let e = err("[sip.auth]\nrealm = \"x\"\nusers = { a = \"b\" }\nfoo = 1\n");
        assert!(
            e.starts_with("hotline.toml:4:1: unknown field `foo`"),
            "{e}"
        );
        let e = err("[smtp]\nhost = 1\n");
        assert!(
            e.starts_with("hotline.toml:1:2: unknown field `smtp`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let e = err("[sip]\nlisten = [\"0.0.0.0:5060\", \"nonsense\"]\n");
        assert!(e.starts_with("hotline.toml:2:27: "), "{e}");
        assert!(e.ends_with("for key `sip.listen[1]`"), "{e}");
        let e = err("[sip]\nallow = [\"10.0.0.0/33\"]\n");
        assert!(e.starts_with("hotline.toml:2:10: "), "{e}");
        assert!(e.contains("10.0.0.0/33"), "{e}");
        let e = err("[sip.auth]\nalgorithms = [\"SHA-512\"]\n");
        assert!(e.contains("unknown variant `SHA-512`"), "{e}");
        let e = err("[http]\nlisten = true\n");
        assert!(e.starts_with("hotline.toml:2:10: "), "{e}");
        let e = err("[sip]\nmax_calls = -1\n");
        assert!(e.starts_with("hotline.toml:2:13: "), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = err("[sip]\nmax_calls = \n");
        assert!(e.starts_with("hotline.toml:2:"), "{e}");
        let e = err("[sip\n");
        assert!(e.starts_with("hotline.toml:1:"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key_and_its_line() {
        let e = err("[sip]\nt1_ms = 5000\n");
        assert_eq!(
            e,
            "hotline.toml:2:1: sip.t2_ms (4000) is less than sip.t1_ms (5000)"
        );
        let e = err("[sip]\nt1_ms = 5000\nt2_ms = 100\n");
        assert!(e.starts_with("hotline.toml:3:1: "), "{e}");
        assert!(err("[sip]\nmin_se_s = 60\n").contains("RFC 4028"));
        assert!(err("[sip]\nsession_expires_s = 100\nmin_se_s = 120\n")
            .starts_with("hotline.toml:2:1: sip.session_expires_s (100)"));
        assert!(err("[sip]\nlisten = []\n").contains("sip.listen"));
        assert!(err("[sip]\nudp = false\ntcp = false\n").contains("both false"));
        assert_eq!(
            err("[sip.auth]\nrealm = \"x\"\n"),
            "hotline.toml: sip.auth.users is empty: [sip.auth] needs at least one user"
        );
        assert_eq!(
            err("[sip]\nmax_calls = 0\n"),
            "hotline.toml:2:1: sip.max_calls must be at least 1"
        );
        assert!(
            err("[sip.auth]\nrealm = \"a\\\"b\"\nusers = { a = \"b\" }\n")
                .contains("sip.auth.realm")
        );
        assert!(err("[sip.auth]\nalgorithms = []\nusers = { a = \"b\" }\n")
            .contains("at least one algorithm"));
        assert!(err("[sip]\nuser_agent = \"x\\r\\nEvil: 1\"\n").contains("user_agent"));
        assert!(err("[sip]\npublic_host = \"a b\"\n").contains("public_host"));
        assert_eq!(
            err("[asr]\nlong_after_ms = 25000\n"),
            "hotline.toml:2:1: asr.long_after_ms must be 0 (off) or 2000 up to asr.max_utterance_ms"
        );
        assert!(
            err("[asr]\nend_silence_ms = 400\nlong_end_silence_ms = 500\n")
                .starts_with("hotline.toml:3:1: asr.long_end_silence_ms")
        );
        assert!(parse("[asr]\nlong_after_ms = 0\n").is_ok());
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "[sip]\nretry_after_s = 1.5\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:17: ", path.display())), "{e}");
        let missing = dir.path().join("nope.toml");
        let e = Config::load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn allow_list() {
        let mut sip = SipConfig::default();
        assert!(sip.is_allowed("192.0.2.1".parse().unwrap()));
        sip.allow = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(sip.is_allowed("10.9.8.7".parse().unwrap()));
        assert!(sip.is_allowed("::ffff:10.9.8.7".parse().unwrap()));
        assert!(sip.is_allowed("::1".parse().unwrap()));
        assert!(!sip.is_allowed("11.0.0.1".parse().unwrap()));
        assert!(!sip.is_allowed("127.0.0.1".parse().unwrap()));
    }

    fn example() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/hotline.toml");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn example_config_is_the_default() {
        assert_eq!(
            Config::from_toml_str(&example(), "systemd/hotline.toml").unwrap(),
            Config::default()
        );
    }

    /// Commented-out keys in the example (`# key = value`, `# [table]`) must be valid
    /// too, and together with the live ones they must name every key there is.
    #[test]
    fn example_config_lists_every_key() {
        let uncommented: String = example()
            .lines()
            .map(|l| {
                let rest = l.strip_prefix("# ").unwrap_or(l);
                let is_key = rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                if rest.starts_with('[') || is_key {
                    format!("{rest}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let c = Config::from_toml_str(&uncommented, "uncommented example")
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert!(c.sip.auth.is_some() && c.sip.public_host.is_some());

        let all = toml::Table::try_from(&c).unwrap();
        fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                let path = format!("{prefix}{k}");
                match v {
                    toml::Value::Table(inner) if k != "users" => {
                        keys(inner, &format!("{path}."), out)
                    }
                    _ => out.push(path),
                }
            }
        }
        let mut all_keys = Vec::new();
        keys(&all, "", &mut all_keys);
        assert!(all_keys.len() > 20, "{all_keys:?}");
        let doc = DeTable::parse(&uncommented).unwrap();
        let mut listed = Vec::new();
        fn walk(t: &DeTable<'_>, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t.iter() {
                let path = format!("{prefix}{}", k.get_ref());
                match v.get_ref() {
                    DeValue::Table(inner) if k.get_ref() != "users" => {
                        walk(inner, &format!("{path}."), out)
                    }
                    _ => out.push(path),
                }
            }
        }
        walk(doc.get_ref(), "", &mut listed);
        for k in &all_keys {
            assert!(
                listed.contains(k),
                "systemd/hotline.toml does not mention {k}"
            );
        }
    }
}
