//! Dialog state (RFC 3261 §12): identity, route set, remote target and
//! CSeq spaces, and building requests inside the dialog. Sans-IO: the
//! endpoint decides when a dialog exists and where its bytes go.

use super::message::{Headers, Method, NameAddr, Request, Uri, SIP_VERSION};

/// Call-ID plus both tags: what every in-dialog message is matched on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    /// Our URI (the To of the INVITE we answered) and the peer's (its From).
    pub local_uri: String,
    pub remote_uri: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: Uri,
    /// Record-Route of the INVITE, in order (UAS side, 12.1.1).
    pub route_set: Vec<String>,
    /// Our CSeq space; starts at 1 when we first send.
    pub local_seq: u32,
    /// The last CSeq seen from the peer; lower ones are out of order.
    pub remote_seq: u32,
    /// Our Contact value for requests and 2xx responses.
    pub local_contact: String,
}

/// A dialog-creating INVITE lacked something 12.1.1 needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("INVITE has no usable Contact")]
    NoContact,
    #[error("INVITE has no From tag or Call-ID")]
    NoIdentity,
}

impl Dialog {
    /// The UAS side of a dialog created by our 2xx (or 1xx with tag) to `invite`.
    pub fn from_invite(
        invite: &Request,
        local_tag: &str,
        local_contact: String,
    ) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let from = h.from().ok().flatten().ok_or(DialogError::NoIdentity)?;
        let remote_tag = from.tag().ok_or(DialogError::NoIdentity)?.to_string();
        let call_id = h.call_id().ok_or(DialogError::NoIdentity)?.to_string();
        let remote_target = match h.contacts() {
            Ok(Some(super::message::Contacts::List(list))) => list
                .into_iter()
                .next()
                .map(|c| c.uri)
                .ok_or(DialogError::NoContact)?,
            _ => return Err(DialogError::NoContact),
        };
        let route_set = h
            .routes("Record-Route")
            .unwrap_or_default()
            .iter()
            .map(name_addr_string)
            .collect();
        let remote_seq = h.cseq().ok().flatten().map(|c| c.seq).unwrap_or(0);
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            local_uri: h
                .to()
                .ok()
                .flatten()
                .map(|t| format!("<{}>", t.uri.raw))
                .unwrap_or_default(),
            remote_uri: format!("<{}>", from.uri.raw),
            remote_target,
            route_set,
            local_seq: 0,
            remote_seq,
            local_contact,
        })
    }

    /// Checks an in-dialog request's CSeq (12.2.2): `false` means it is
    /// older than one already seen and must get 500.
    pub fn accept_remote_seq(&mut self, seq: u32) -> bool {
        if seq < self.remote_seq {
            return false;
        }
        self.remote_seq = seq;
        true
    }

    /// A target refresh (re-INVITE, UPDATE) may move the peer's Contact.
    pub fn refresh_target(&mut self, req: &Request) {
        if let Ok(Some(super::message::Contacts::List(list))) = req.headers.contacts() {
            if let Some(c) = list.into_iter().next() {
                self.remote_target = c.uri;
            }
        }
    }

    /// The URI the request is first sent to (12.2.1.1): the first route if
    /// the route set is non-empty, else the remote target.
    pub fn next_hop(&self) -> Uri {
        self.route_set
            .first()
            .and_then(|r| super::parse::parse_name_addr(r).map(|n| n.uri))
            .unwrap_or_else(|| self.remote_target.clone())
    }

    /// Builds a request inside the dialog (12.2.1.1), taking the next local
    /// CSeq. `via` is the full Via value including a fresh branch.
    pub fn request(&mut self, method: Method, via: String, user_agent: &str) -> Request {
        self.local_seq = self.local_seq.saturating_add(1);
        let mut headers = Headers::new();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        headers.push(
            "From",
            format!("{};tag={}", self.local_uri, self.id.local_tag),
        );
        headers.push(
            "To",
            format!("{};tag={}", self.remote_uri, self.id.remote_tag),
        );
        headers.push("Call-ID", self.id.call_id.clone());
        headers.push("CSeq", format!("{} {}", self.local_seq, method.as_str()));
        let strict_first = self.route_set.first().and_then(|r| {
            let n = super::parse::parse_name_addr(r)?;
            n.uri.param("lr").is_none().then_some(n.uri)
        });
        let uri = match &strict_first {
            // Strict router (RFC 2543): its URI goes in the Request-URI and
            // the remote target becomes the last Route.
            Some(first) => {
                for r in self.route_set.iter().skip(1) {
                    headers.push("Route", r.clone());
                }
                headers.push("Route", format!("<{}>", self.remote_target.raw));
                first.clone()
            }
            None => {
                for r in &self.route_set {
                    headers.push("Route", r.clone());
                }
                self.remote_target.clone()
            }
        };
        if matches!(method, Method::Invite | Method::Update) {
            headers.push("Contact", self.local_contact.clone());
        }
        headers.push("User-Agent", user_agent.to_string());
        Request {
            method,
            uri,
            version: SIP_VERSION.to_string(),
            headers,
            body: Vec::new(),
        }
    }
}

fn name_addr_string(n: &NameAddr) -> String {
    let mut s = format!("<{}>", n.uri.raw);
    for (k, v) in &n.params {
        s.push(';');
        s.push_str(k);
        if let Some(v) = v {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:12345@198.51.100.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKabc\r\nMax-Forwards: 70\r\n\
From: \"Caller\" <sip:13800138000@pbx.example>;tag=ftag\r\n\
To: <sip:12345@198.51.100.1>\r\nCall-ID: abc@pbx\r\nCSeq: 4 INVITE\r\n\
Contact: <sip:13800138000@192.0.2.9:5070>\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match crate::sip::parse(text.as_bytes()) {
            Ok(crate::sip::Message::Request(r)) => r,
            other => panic!("test INVITE did not parse: {other:?}"),
        }
    }

    #[test]
    fn uas_dialog_takes_identity_target_and_cseq() {
        let d = Dialog::from_invite(&invite(""), "ltag", "<sip:hotline@198.51.100.1>".into())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.id.call_id, "abc@pbx");
        assert_eq!(d.id.remote_tag, "ftag");
        assert_eq!(d.remote_target.raw, "sip:13800138000@192.0.2.9:5070");
        assert_eq!(d.remote_seq, 4);
        assert!(d.route_set.is_empty());
    }

    #[test]
    fn bye_uses_loose_route_set_and_own_cseq() {
        let mut d = Dialog::from_invite(
            &invite("Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\n"),
            "ltag",
            "<sip:hotline@198.51.100.1>".into(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let bye = d.request(Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bKx".into(), "ua");
        let text =
            String::from_utf8_lossy(&crate::sip::Message::Request(bye).to_bytes()).to_string();
        assert!(text.starts_with("BYE sip:13800138000@192.0.2.9:5070 SIP/2.0\r\n"));
        assert!(text.contains("From: <sip:12345@198.51.100.1>;tag=ltag\r\n"));
        assert!(text.contains("To: <sip:13800138000@pbx.example>;tag=ftag\r\n"));
        assert!(text.contains("CSeq: 1 BYE\r\n"));
        let r2 = text
            .find("Route: <sip:p2.example;lr>")
            .unwrap_or(usize::MAX);
        let r1 = text.find("Route: <sip:p1.example;lr>").unwrap_or(0);
        assert!(r2 < r1, "route order kept: {text}");
        assert_eq!(d.next_hop().raw, "sip:p2.example;lr");
    }

    #[test]
    fn strict_router_goes_in_request_uri() {
        let mut d = Dialog::from_invite(
            &invite("Record-Route: <sip:strict.example>\r\n"),
            "ltag",
            "<sip:hotline@198.51.100.1>".into(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let bye = d.request(Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bKx".into(), "ua");
        assert_eq!(bye.uri.raw, "sip:strict.example");
        assert_eq!(
            bye.headers.get("Route"),
            Some("<sip:13800138000@192.0.2.9:5070>")
        );
    }

    #[test]
    fn older_cseq_is_refused() {
        let mut d = Dialog::from_invite(&invite(""), "l", "<sip:h@x>".into())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(d.accept_remote_seq(5));
        assert!(!d.accept_remote_seq(3));
    }

    #[test]
    fn invite_without_contact_cannot_make_a_dialog() {
        let text = "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let Ok(crate::sip::Message::Request(req)) = crate::sip::parse(text.as_bytes()) else {
            panic!("did not parse");
        };
        assert_eq!(
            Dialog::from_invite(&req, "l", String::new()).err(),
            Some(DialogError::NoContact)
        );
    }
}
