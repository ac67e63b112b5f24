//! SIP message parsing and serialising throughput. `cargo bench --bench sip_parse`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hotline_gateway::sip;

const INVITE: &str = "INVITE sip:12345@gw.hotline.example;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:12345@gw.hotline.example;user=phone>\r\n\
From: \"Citizen\" <sip:13800138000@pbx.example>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pbx.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:13800138000@10.0.0.7:5060>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, INFO, UPDATE\r\n\
Supported: timer, replaces\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\
\r\n\
v=0\r\n\
o=pbx 2890844526 2890844526 IN IP4 10.0.0.7\r\n\
s=-\r\n\
c=IN IP4 10.0.0.7\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

fn bench(c: &mut Criterion) {
    let bytes = INVITE.as_bytes();
    let msg = sip::parse(bytes).expect("benchmark message parses");
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite", |b| b.iter(|| sip::parse(black_box(bytes))));
    g.bench_function("parse_invite_and_typed_headers", |b| {
        b.iter(|| {
            let m = sip::parse(black_box(bytes)).ok()?;
            let h = m.headers();
            Some((
                h.via().ok()?.len(),
                h.cseq().ok()?,
                h.call_id().map(str::len),
            ))
        })
    });
    g.bench_function("serialize_invite", |b| {
        b.iter(|| black_box(&msg).to_bytes())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
