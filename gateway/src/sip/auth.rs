//! HTTP digest authentication for SIP (RFC 3261 22, RFC 8760): MD5 and
//! SHA-256, qop=auth. Sans-IO: the caller supplies the time and the secret.
//!
//! Nonces are stateless: `<issued-ms hex>.<mac>` where the MAC binds the
//! issue time to a per-process secret, so a restart invalidates old
//! nonces and nothing per-challenge is stored (a flood of INVITEs cannot
//! grow memory).

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Parses an `Authorization: Digest ...` value. `None` for other schemes
/// or malformed values (which the UAS answers with a fresh challenge).
pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let rest = value.trim_start();
    let (scheme, params) = rest.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut get = std::collections::HashMap::new();
    for (k, v) in split_params(params)? {
        get.insert(k.to_ascii_lowercase(), v);
    }
    let take = |k: &str| get.get(k).cloned();
    let algorithm = match take("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a)?,
    };
    Some(Credentials {
        username: take("username")?,
        realm: take("realm")?,
        nonce: take("nonce")?,
        uri: take("uri")?,
        response: take("response")?.to_ascii_lowercase(),
        algorithm,
        qop: take("qop"),
        nc: take("nc"),
        cnonce: take("cnonce"),
    })
}

/// `k=v, k="quoted, with comma"` -> pairs, unquoted.
fn split_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_ascii_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => val.push(chars.next()?),
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((key, val));
    }
}

pub struct Verifier {
    pub realm: String,
    /// Offered in this order: RFC 8760 puts the strongest first.
    pub algorithms: Vec<Algorithm>,
    secret: [u8; 32],
    /// How long a nonce is accepted.
    pub nonce_ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok {
        username: String,
    },
    /// No credentials for our realm, or a nonce we did not issue: challenge.
    Challenge {
        stale: bool,
    },
    /// Credentials that are wrong for a nonce we issued.
    Forbidden,
}

impl Verifier {
    pub fn new(realm: String, algorithms: Vec<Algorithm>, secret: [u8; 32]) -> Self {
        Verifier {
            realm,
            algorithms,
            secret,
            nonce_ttl_ms: 5 * 60 * 1000,
        }
    }

    fn mac(&self, issued: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued.as_bytes());
        hex(&h.finalize()[..16])
    }

    pub fn nonce(&self, now_ms: u64) -> String {
        let issued = format!("{now_ms:x}");
        let mac = self.mac(&issued);
        format!("{issued}.{mac}")
    }

    /// `Some(true)` fresh, `Some(false)` ours but expired, `None` not ours.
    fn check_nonce(&self, nonce: &str, now_ms: u64) -> Option<bool> {
        let (issued, mac) = nonce.split_once('.')?;
        if self.mac(issued) != mac {
            return None;
        }
        let at = u64::from_str_radix(issued, 16).ok()?;
        Some(now_ms.saturating_sub(at) <= self.nonce_ttl_ms && at <= now_ms)
    }

    /// One `WWW-Authenticate` value per algorithm.
    pub fn challenges(&self, now_ms: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now_ms);
        self.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    self.realm,
                    a.name(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }

    /// Checks every Authorization value for our realm against `password_of`.
    pub fn verify<'a>(
        &self,
        authorizations: impl Iterator<Item = &'a str>,
        method: &str,
        now_ms: u64,
        password_of: impl Fn(&str) -> Option<String>,
    ) -> Verdict {
        let mut stale = false;
        for value in authorizations {
            let Some(c) = parse_credentials(value) else {
                continue;
            };
            if c.realm != self.realm || !self.algorithms.contains(&c.algorithm) {
                continue;
            }
            match self.check_nonce(&c.nonce, now_ms) {
                None => continue,
                Some(false) => {
                    stale = true;
                    continue;
                }
                Some(true) => {}
            }
            let Some(password) = password_of(&c.username) else {
                return Verdict::Forbidden;
            };
            if response_for(&c, method, &password) == c.response {
                return Verdict::Ok {
                    username: c.username,
                };
            }
            return Verdict::Forbidden;
        }
        Verdict::Challenge { stale }
    }
}

/// The `response` value a client computes (RFC 2617 3.2.2.1 / RFC 8760).
pub fn response_for(c: &Credentials, method: &str, password: &str) -> String {
    let a = c.algorithm;
    let ha1 = a.hash(&format!("{}:{}:{}", c.username, c.realm, password));
    let ha2 = a.hash(&format!("{method}:{}", c.uri));
    match (&c.qop, &c.nc, &c.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            a.hash(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", c.nonce))
        }
        _ => a.hash(&format!("{ha1}:{}:{ha2}", c.nonce)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        Verifier::new(
            "hotline".into(),
            vec![Algorithm::Sha256, Algorithm::Md5],
            [7; 32],
        )
    }

    fn creds(v: &Verifier, algorithm: Algorithm, password: &str, now: u64) -> String {
        let mut c = Credentials {
            username: "pbx".into(),
            realm: "hotline".into(),
            nonce: v.nonce(now),
            uri: "sip:12345@gw".into(),
            response: String::new(),
            algorithm,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("abc".into()),
        };
        c.response = response_for(&c, "INVITE", password);
        format!(
            "Digest username=\"pbx\", realm=\"hotline\", nonce=\"{}\", uri=\"sip:12345@gw\", \
response=\"{}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"abc\"",
            c.nonce,
            c.response,
            algorithm.name()
        )
    }

    fn pw(user: &str) -> Option<String> {
        (user == "pbx").then(|| "secret".to_string())
    }

    #[test]
    fn rfc2617_md5_example_vector() {
        // RFC 2617 3.5 (HTTP, qop=auth): known answer for MD5.
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
        };
        assert_eq!(
            response_for(&c, "GET", "Circle Of Life"),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn both_algorithms_verify_and_wrong_password_is_forbidden() {
        let v = verifier();
        for a in [Algorithm::Md5, Algorithm::Sha256] {
            let ok = creds(&v, a, "secret", 1000);
            assert_eq!(
                v.verify([ok.as_str()].into_iter(), "INVITE", 2000, pw),
                Verdict::Ok {
                    username: "pbx".into()
                }
            );
            let bad = creds(&v, a, "guess", 1000);
            assert_eq!(
                v.verify([bad.as_str()].into_iter(), "INVITE", 2000, pw),
                Verdict::Forbidden
            );
        }
    }

    #[test]
    fn foreign_or_expired_nonce_is_challenged() {
        let v = verifier();
        let other = Verifier::new("hotline".into(), vec![Algorithm::Md5], [9; 32]);
        let forged = creds(&other, Algorithm::Md5, "secret", 1000);
        assert_eq!(
            v.verify([forged.as_str()].into_iter(), "INVITE", 2000, pw),
            Verdict::Challenge { stale: false }
        );
        let old = creds(&v, Algorithm::Md5, "secret", 1000);
        assert_eq!(
            v.verify([old.as_str()].into_iter(), "INVITE", 1000 + 6 * 60_000, pw),
            Verdict::Challenge { stale: true }
        );
        assert_eq!(
            v.verify(std::iter::empty(), "INVITE", 0, pw),
            Verdict::Challenge { stale: false }
        );
    }

    #[test]
    fn challenges_offer_sha256_first() {
        let c = verifier().challenges(5, false);
        assert_eq!(c.len(), 2);
        assert!(c[0].contains("algorithm=SHA-256"));
        assert!(c[1].contains("algorithm=MD5"));
    }

    #[test]
    fn garbage_credentials_do_not_panic() {
        for s in [
            "",
            "Digest",
            "Digest =",
            "Digest a=\"unterminated",
            "Basic abc",
            "Digest ,,,",
        ] {
            let _ = parse_credentials(s);
        }
    }
}
