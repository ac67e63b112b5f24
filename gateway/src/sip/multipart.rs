//! multipart/* bodies (RFC 2046 5.1, RFC 5621 for SIP): SDP next to ISUP
//! on SIP-I trunks today, SDP plus rs-metadata for SIPREC later.
//! Parts borrow from the body: nothing is copied.

/// One body part: its header lines (name, value) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl Part<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Media type without parameters, lower-cased. RFC 2046 5.1: a part
    /// without Content-Type is text/plain.
    pub fn media_type(&self) -> String {
        self.header("Content-Type")
            .and_then(|v| v.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("boundary not found in body")]
    NoDelimiter,
    #[error("body part has malformed headers")]
    BadPartHeaders,
    #[error("too many body parts")]
    TooManyParts,
}

/// Bounds the work a hostile body can cause.
pub const MAX_PARTS: usize = 32;

/// The `boundary` parameter of a multipart Content-Type value.
pub fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        // RFC 2046: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Splits a multipart body. The preamble and epilogue are ignored; a
/// missing close delimiter is tolerated (the last part runs to the end),
/// as lenient receivers do.
pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, MultipartError> {
    let b = boundary(content_type).ok_or(MultipartError::NoBoundary)?;
    let delim = format!("--{b}");
    let delim = delim.as_bytes();
    // The first delimiter may start the body; later ones follow a CRLF.
    let mut pos = if body.starts_with(delim) {
        0
    } else {
        find(body, &[b"\r\n", delim].concat(), 0).ok_or(MultipartError::NoDelimiter)? + 2
    };
    let mut parts = Vec::new();
    loop {
        let after = pos + delim.len();
        let rest = body.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(parts); // close delimiter
        }
        // Skip transport padding to the end of the delimiter line.
        let line_end = find(body, b"\r\n", after).map_or(body.len(), |p| p + 2);
        let next = find(body, &[b"\r\n", delim].concat(), line_end);
        let content_end = next.unwrap_or(body.len());
        let part = body.get(line_end..content_end).unwrap_or_default();
        parts.push(split_part(part)?);
        if parts.len() > MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        match next {
            Some(n) => pos = n + 2,
            None => return Ok(parts),
        }
    }
}

fn split_part(part: &[u8]) -> Result<Part<'_>, MultipartError> {
    // No headers at all: the part starts with the blank line.
    let (head, body) = if let Some(b) = part.strip_prefix(b"\r\n") {
        (&b""[..], b)
    } else {
        match find(part, b"\r\n\r\n", 0) {
            Some(i) => (
                part.get(..i).unwrap_or_default(),
                part.get(i + 4..).unwrap_or_default(),
            ),
            None => (part, &b""[..]),
        }
    };
    let head = std::str::from_utf8(head).map_err(|_| MultipartError::BadPartHeaders)?;
    let mut headers = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(':').ok_or(MultipartError::BadPartHeaders)?;
        headers.push((n.trim(), v.trim()));
    }
    Ok(Part { headers, body })
}

/// The SDP a request carries: the whole body for application/sdp, or the
/// first application/sdp part of a multipart/mixed body.
pub fn sdp_body<'a>(content_type: Option<&str>, body: &'a [u8]) -> Option<&'a [u8]> {
    let ct = content_type?;
    let media = ct.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/sdp" => Some(body),
        "multipart/mixed" | "multipart/alternative" | "multipart/related" => parse(ct, body)
            .ok()?
            .into_iter()
            .find(|p| p.media_type() == "application/sdp")
            .map(|p| p.body),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/mixed;boundary=unique-boundary-1";
    const BODY: &str = "--unique-boundary-1\r\n\
Content-Type: application/sdp\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\n\
\r\n--unique-boundary-1\r\n\
Content-Type: application/isup;version=itu-t92+;base=itu-t92+\r\n\
Content-Disposition: signal;handling=optional\r\n\r\n\
\u{1}\u{0}\u{49}\u{0}\u{0}\u{3}\u{2}\u{0}\u{7}\u{4}\u{10}\u{0}\u{33}\u{63}\u{21}\u{43}\u{0}\r\n\
--unique-boundary-1--\r\n";

    #[test]
    fn sip_i_invite_body_splits_into_sdp_and_isup() {
        let parts = parse(CT, BODY.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].media_type(), "application/sdp");
        assert!(parts[0].body.starts_with(b"v=0\r\n"));
        assert!(parts[0].body.ends_with(b"RTP/AVP 0\r\n"));
        assert_eq!(parts[1].media_type(), "application/isup");
        assert_eq!(
            parts[1].header("content-disposition"),
            Some("signal;handling=optional")
        );
        let sdp = sdp_body(Some(CT), BODY.as_bytes()).unwrap_or_default();
        assert!(sdp.starts_with(b"v=0"));
    }

    #[test]
    fn quoted_boundary_preamble_and_missing_close() {
        let ct = "multipart/mixed; boundary=\"a b\"";
        let body = b"preamble\r\n--a b\r\n\r\nplain\r\n--a b\r\nContent-Type: text/x\r\n\r\nlast";
        let parts = parse(ct, body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].media_type(), "text/plain");
        assert_eq!(parts[0].body, b"plain");
        assert_eq!(parts[1].body, b"last");
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        assert_eq!(
            parse("multipart/mixed", b"x"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(parse(CT, b"no delimiter"), Err(MultipartError::NoDelimiter));
        let many = "--b\r\n\r\nx\r\n".repeat(40);
        assert_eq!(
            parse("multipart/mixed;boundary=b", many.as_bytes()),
            Err(MultipartError::TooManyParts)
        );
        for cut in 0..BODY.len() {
            let _ = parse(CT, &BODY.as_bytes()[..cut]);
        }
        assert_eq!(sdp_body(Some("text/plain"), b"v=0"), None);
    }
}
