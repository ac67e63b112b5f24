//! The media plane against real peers: a real `hotline serve` on loopback,
//! SIPp sending RTP from pcap files (its own captures, and ones these tests
//! write from sox-made audio), and a UDP socket of the test's own receiving
//! what the gateway sends. Each test asserts the call record (`hotline calls
//! show --json`: codec, digits, RTP statistics, end reason) and the audio
//! itself (the recording's caller channel against what was sent, the
//! gateway's packets against the greeting file).
//!
//! Run single-threaded: `cargo test --release --test media_calls -- --test-threads=1`
//! (add `--nocapture` for the measured values: correlation peaks, pacing).

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::media::*;
use common::*;
use serde_json::Value;

/// SIPp's captures, shipped by Debian's sip-tester.
const SIP_TESTER: &str = "/usr/share/sip-tester";

/// The greeting every answered call plays (an absolute path, whatever the
/// test's working directory).
fn greeting() -> PathBuf {
    repo().join("ivr-scripts/prompts/welcome.wav")
}

/// A gateway with this `[media]` section body; the greeting is the real one
/// unless the body sets its own.
fn gateway(media: &str) -> Gateway {
    let greeting = if media.contains("greeting") {
        String::new()
    } else {
        format!("greeting = {:?}\n", greeting().display().to_string())
    };
    Gateway::with_config(&format!("[media]\n{greeting}{media}"))
}

/// Stops the gateway and returns the full record of its only call.
fn the_call(gw: &mut Gateway) -> Value {
    let calls = gw.stop_and_calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let id = field(&calls[0], "id");
    gw.call_show(&id)
}

/// The keys and sources of a record's digits, in order.
fn digits(call: &Value) -> Vec<(String, String)> {
    call["digits"]
        .as_array()
        .unwrap_or_else(|| panic!("no digits array: {call:#}"))
        .iter()
        .map(|d| (field(d, "key"), field(d, "source")))
        .collect()
}

fn rtp_stat(call: &Value, name: &str) -> i64 {
    call["rtp"][name]
        .as_i64()
        .unwrap_or_else(|| panic!("no rtp.{name}: {call:#}"))
}

/// The recording named by the record: stereo, 8 kHz, 16-bit.
fn recording(call: &Value) -> (PathBuf, Wav) {
    let path = PathBuf::from(field(call, "recording"));
    assert!(
        path.is_file(),
        "recording {} missing: {call:#}",
        path.display()
    );
    let wav = read_wav(&path);
    assert_eq!(
        (wav.channels, wav.rate, wav.bits),
        (2, 8000, 16),
        "{}",
        path.display()
    );
    (path, wav)
}

/// 300 ms at 8 kHz: the most the caller's audio may lag in the recording
/// (network, jitter buffer).
const MAX_LAG: usize = 2400;

/// Asserts that the recording's caller channel carries `sent`: each 500 ms
/// speech window of it is found there with a normalized cross-correlation
/// peak above 0.9 at a lag under 300 ms. A window may fall short only where
/// the lag changes across it (an adaptive jitter buffer dropped or inserted
/// a frame there, shifting what follows by 20 ms), at most 3 times. Returns
/// a one-line summary of the measurements.
fn assert_caller_channel_carries(wav: &Wav, sent: &[i16]) -> String {
    let left = wav.channel(0);
    let windows = windowed_xcorr(sent, &left, 4000, MAX_LAG, -40.0);
    let peaks: Vec<f64> = windows.iter().map(|w| w.peak).collect();
    let mut lags: Vec<usize> = windows.iter().map(|w| w.lag / 8).collect();
    lags.dedup();
    let (glag, gpeak) = xcorr_peak(sent, &left, MAX_LAG);
    let summary = format!(
        "{} speech windows of 500 ms: peak min {:.4} median {:.4}, lags {lags:?} ms; \
         whole-signal peak {gpeak:.4} at {} ms",
        windows.len(),
        peaks.iter().copied().fold(f64::INFINITY, f64::min),
        median(&peaks),
        glag / 8
    );
    assert!(
        windows.len() * 4000 >= sent.len() / 2,
        "too few speech windows: {summary}"
    );
    let good = |w: &&WindowMatch| w.peak > 0.9;
    let mut shifts = 0;
    for (i, w) in windows.iter().enumerate() {
        if good(&w) {
            continue;
        }
        let before = windows[..i].iter().rev().find(good).map(|w| w.lag);
        let after = windows[i + 1..].iter().find(good).map(|w| w.lag);
        assert!(
            before.is_some() && after.is_some() && before != after,
            "caller channel does not carry the audio sent: window at {} ms peaks at {:.3} \
             (lag {} ms), and the lag is the same on both sides ({before:?} / {after:?} \
             samples): {summary}",
            w.start / 8,
            w.peak,
            w.lag / 8
        );
        shifts += 1;
    }
    assert!(shifts <= 3, "{shifts} jitter buffer shifts: {summary}");
    assert!(median(&peaks) > 0.95, "{summary}");
    assert!(windows.iter().all(|w| w.lag < MAX_LAG), "{summary}");
    summary
}

// ---------------------------------------------------------------------------
// 1. PCMA speech, then RFC 4733 digits from SIPp's captures.
// ---------------------------------------------------------------------------

/// The key presses tests/sipp/rtp_pcap_dtmf.xml plays: (capture, key).
const CAPTURED_KEYS: [(&str, &str); 4] = [("1", "1"), ("5", "5"), ("9", "9"), ("pound", "#")];

/// Runs rtp_pcap_dtmf.xml with `audio` as its speech (PCMA) and checks the
/// record: codec, the four digits in order from RFC 4733 with their
/// durations, packet counters, and the recording's caller channel against
/// the speech sent.
fn pcma_speech_then_rfc4733_digits(audio: &Path) {
    let pcaps = Path::new(SIP_TESTER);
    let speech = read_pcap(audio);
    assert!(
        speech.iter().all(|p| p.pt == 8),
        "{} is PCMA",
        audio.display()
    );
    let mut sent_packets = speech.len();
    for (file, key) in CAPTURED_KEYS {
        let events = read_pcap(&pcaps.join(format!("dtmf_2833_{file}.pcap")));
        // telephone-event on PT 101 (what the SDP offers), one event code,
        // ending with the 3 redundant end packets (E bit).
        assert!(events.iter().all(|p| p.pt == 101), "{file}");
        assert_eq!(
            events.iter().filter(|p| p.payload[1] & 0x80 != 0).count(),
            3
        );
        let code = match key {
            "#" => 11,
            k => k.parse::<u8>().unwrap(),
        };
        assert!(events.iter().all(|p| p.payload[0] == code), "{file}");
        sent_packets += events.len();
    }

    let media = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(audio, media.path().join("audio.pcap")).unwrap();
    let mut gw = gateway("");
    let run = Sipp::scenario("rtp_pcap_dtmf.xml")
        .link("pcap", pcaps)
        .link("media", media.path())
        .args(&["-m", "1"])
        .timeout(Duration::from_secs(30))
        .run(gw.udp);
    run.assert_ok(1, &gw);
    let call = the_call(&mut gw);

    assert_eq!(field(&call, "codec"), "PCMA", "{call:#}");
    assert_eq!(field(&call, "end_reason"), "caller-bye", "{call:#}");
    let want: Vec<(String, String)> = CAPTURED_KEYS
        .iter()
        .map(|(_, k)| (k.to_string(), "rfc4733".to_string()))
        .collect();
    assert_eq!(digits(&call), want, "{call:#}");
    let ds = call["digits"].as_array().unwrap();
    let at: Vec<i64> = ds.iter().map(|d| d["at_ms"].as_i64().unwrap()).collect();
    // The presses follow 7.4 s of speech, 400 ms apart.
    assert!(at[0] > 7_000, "{at:?}");
    assert!(at.windows(2).all(|w| w[1] - w[0] >= 300), "{at:?}");
    // Each capture's end packets say 2240 samples: 280 ms.
    for d in ds {
        assert_eq!(d["duration_ms"].as_i64(), Some(280), "{d}");
    }

    let rx = rtp_stat(&call, "rx_packets");
    eprintln!(
        "{}: sent {sent_packets} packets; gateway's rtp stats {}",
        audio.display(),
        call["rtp"]
    );
    assert!(
        (rx - sent_packets as i64).abs() <= 3,
        "rx_packets {rx}, sent {sent_packets}: {call:#}"
    );
    assert_eq!(rtp_stat(&call, "lost"), 0, "{call:#}");
    assert_eq!(rtp_stat(&call, "rejected"), 0, "{call:#}");

    let (path, wav) = recording(&call);
    let summary = assert_caller_channel_carries(&wav, &decode_packets(&speech, Law::A));
    eprintln!(
        "{}: recording {} ({:.2} s), caller channel vs the speech sent: {summary}",
        audio.display(),
        path.display(),
        wav.file_secs(),
    );
}

/// SIPp's g711a.pcap exactly as shipped: PCMA in 30 ms packets (240
/// samples, timestamps +240), which a receiver must take whatever ptime it
/// answered (RFC 3264 6.1: a=ptime is a preference).
#[test]
fn sip_tester_g711a_30ms_packets_then_rfc4733_digits() {
    pcma_speech_then_rfc4733_digits(&Path::new(SIP_TESTER).join("g711a.pcap"));
}

/// The same speech repacketized to 20 ms (160 samples a packet).
#[test]
fn sip_tester_g711a_as_20ms_packets_then_rfc4733_digits() {
    let pcm = decode_packets(
        &read_pcap(&Path::new(SIP_TESTER).join("g711a.pcap")),
        Law::A,
    );
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("g711a_20ms.pcap");
    write_pcap(&pcap, &g711_packets(&pcm, Law::A, 0x1234_5678, 1000, 8000));
    pcma_speech_then_rfc4733_digits(&pcap);
}

/// Key presses a caller makes but SIPp's captures were not recorded in:
/// `#`, then `0` (a capture whose timestamp lies 9.4 s before `#`'s, with a
/// marker bit and a sequence number 3637 ahead), then `1` twice (the same
/// capture replayed: identical packets, 400 ms after the first press ended,
/// marker bit set again). Each is a new press to a caller's ear; the record
/// must list all four. RFC 3550 jitter must also stay sane: telephone-event
/// packets share one timestamp per press, so they are no jitter measure.
#[test]
fn rfc4733_presses_out_of_capture_order_and_repeated() {
    let mut gw = gateway("");
    let run = Sipp::scenario("rtp_dtmf_replay.xml")
        .link("pcap", Path::new(SIP_TESTER))
        .args(&["-m", "1"])
        .run(gw.udp);
    run.assert_ok(1, &gw);
    let call = the_call(&mut gw);
    eprintln!(
        "replayed presses: digits {} rtp {}",
        call["digits"], call["rtp"]
    );
    assert_eq!(rtp_stat(&call, "rx_packets"), 40, "{call:#}");
    let want: Vec<(String, String)> = ["#", "0", "1", "1"]
        .iter()
        .map(|k| (k.to_string(), "rfc4733".to_string()))
        .collect();
    assert_eq!(digits(&call), want, "{call:#}");
    let jitter = call["rtp"]["jitter_ms"].as_f64().unwrap();
    assert!(jitter < 20.0, "jitter_ms {jitter} on loopback: {call:#}");
}

// ---------------------------------------------------------------------------
// 2. In-band DTMF (no telephone-event negotiated), and speech that must not
//    give digits.
// ---------------------------------------------------------------------------

/// A shared speech clip at 8 kHz (sox resamples).
fn shared_clip_8k(file: &str) -> Vec<i16> {
    sox_pcm_8k(&shared_audio().join(file), &[])
}

fn silence(ms: usize) -> Vec<i16> {
    vec![0; ms * 8]
}

/// A DTMF tone made by sox: the key's two frequencies mixed, `ms` long.
fn dtmf_tone(dir: &Path, key: char, ms: u32) -> Vec<i16> {
    let (lo, hi) = match key {
        '1' => (697, 1209),
        '2' => (697, 1336),
        '3' => (697, 1477),
        '4' => (770, 1209),
        '5' => (770, 1336),
        '6' => (770, 1477),
        '7' => (852, 1209),
        '8' => (852, 1336),
        '9' => (852, 1477),
        '*' => (941, 1209),
        '0' => (941, 1336),
        '#' => (941, 1477),
        _ => panic!("no DTMF key {key}"),
    };
    let path = dir.join(format!("tone_{}.wav", key as u32));
    let secs = format!("{}", f64::from(ms) / 1000.0);
    let (lo, hi) = (lo.to_string(), hi.to_string());
    sox(&[
        "-n",
        "-r",
        "8000",
        "-c",
        "1",
        "-b",
        "16",
        path.to_str().unwrap(),
        "synth",
        &secs,
        "sine",
        &lo,
        "sine",
        &hi,
    ]);
    let wav = read_wav(&path);
    assert_eq!((wav.channels, wav.rate), (1, 8000));
    wav.samples
}

/// Plays `pcm` as PCMU (20 ms packets, no telephone-event in the SDP) in one
/// call of tests/sipp/rtp_play_pcmu.xml, held up 600 ms past the audio, and
/// returns the call's record, with the stopped gateway (its data directory
/// holds the recording). The gateway has `[media]` `media`.
fn play_pcmu_call(pcm: &[i16], media: &str) -> (Gateway, Value) {
    let dir = tempfile::tempdir().unwrap();
    let packets = g711_packets(pcm, Law::Mu, 0x0BAD_CAFE, 40_000, 123_456);
    write_pcap(&dir.path().join("caller.pcap"), &packets);
    let hold_ms = pcm.len() / 8 + 600;
    let mut gw = gateway(media);
    let run = Sipp::scenario("rtp_play_pcmu.xml")
        .link("media", dir.path())
        .args(&["-m", "1", "-d", &hold_ms.to_string()])
        .timeout(Duration::from_secs(60))
        .run(gw.udp);
    run.assert_ok(1, &gw);
    let call = the_call(&mut gw);
    assert_eq!(field(&call, "codec"), "PCMU", "{call:#}");
    assert_eq!(field(&call, "end_reason"), "caller-bye", "{call:#}");
    let rx = rtp_stat(&call, "rx_packets");
    assert!(
        (rx - packets.len() as i64).abs() <= 2,
        "rx_packets {rx}, sent {}: {call:#}",
        packets.len()
    );
    assert_eq!(rtp_stat(&call, "lost"), 0, "{call:#}");
    let jitter = call["rtp"]["jitter_ms"].as_f64().unwrap();
    assert!(jitter < 5.0, "jitter_ms {jitter} on loopback: {call:#}");
    (gw, call)
}

#[test]
fn inband_dtmf_tones_after_speech() {
    let tmp = tempfile::tempdir().unwrap();
    // Speech, then 5, 8, * as 100 ms tones 100 ms apart, then quiet.
    let speech = shared_clip_8k("en_librivox_sas_0930.wav");
    let mut pcm = speech.clone();
    pcm.extend(silence(300));
    let keys = ['5', '8', '*'];
    let mut starts_ms = Vec::new();
    for (i, &k) in keys.iter().enumerate() {
        if i > 0 {
            pcm.extend(silence(100));
        }
        starts_ms.push(pcm.len() / 8);
        pcm.extend(dtmf_tone(tmp.path(), k, 100));
    }
    pcm.extend(silence(500));

    let (_gw, call) = play_pcmu_call(&pcm, "inband_dtmf = true\n");
    eprintln!(
        "in-band: tones start at {starts_ms:?} ms of the audio; digits {}",
        call["digits"]
    );
    let want: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.to_string(), "inband".to_string()))
        .collect();
    assert_eq!(digits(&call), want, "{call:#}");
    // Where and how long: the audio starts a few ms after the answer, and
    // the detector needs a few 20 ms frames to confirm a tone.
    for (d, start) in call["digits"].as_array().unwrap().iter().zip(&starts_ms) {
        let at = d["at_ms"].as_i64().unwrap();
        assert!(
            (at - *start as i64).abs() <= 200,
            "digit {d} at {at} ms, tone at {start} ms of the audio"
        );
        let dur = d["duration_ms"].as_i64().unwrap_or(-1);
        assert!(
            (40..=160).contains(&dur),
            "100 ms tone, duration {dur}: {d}"
        );
    }
    let (_, wav) = recording(&call);
    let summary = assert_caller_channel_carries(&wav, &pcm);
    eprintln!("in-band: caller channel vs audio sent: {summary}");
}

#[test]
fn speech_clips_give_no_inband_digits() {
    // Mandarin read and dialect speech, English read speech: voiced speech
    // has strong harmonics in the DTMF band, the classic source of talk-off.
    let clips = [
        "zh_aishell1_S0724W0121.wav",
        "zh_sichuan_02.wav",
        "zh_cosyvoice_prompt.wav",
        "en_librivox_sas_0880.wav",
    ];
    let mut pcm = Vec::new();
    for c in clips {
        pcm.extend(shared_clip_8k(c));
        pcm.extend(silence(200));
    }
    let (_gw, call) = play_pcmu_call(&pcm, "inband_dtmf = true\n");
    eprintln!(
        "speech only: {:.1} s of {clips:?}; digits {}",
        pcm.len() as f64 / 8000.0,
        call["digits"]
    );
    assert_eq!(digits(&call), vec![], "{call:#}");
    let (_, wav) = recording(&call);
    let summary = assert_caller_channel_carries(&wav, &pcm);
    eprintln!("speech only: caller channel vs audio sent: {summary}");
}

// ---------------------------------------------------------------------------
// 3. What the gateway sends: the greeting as paced 20 ms RTP.
// ---------------------------------------------------------------------------

/// A UDP socket of the test's own that takes every datagram with its
/// arrival time, on a thread, until told to stop.
struct RtpSink {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, Vec<u8>)>>,
}

impl RtpSink {
    fn start() -> RtpSink {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.push((Instant::now(), buf[..n].to_vec()));
                }
            }
            got
        });
        RtpSink { port, stop, thread }
    }

    fn finish(self) -> Vec<(Instant, Vec<u8>)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[test]
fn playback_rtp_sequence_timestamps_pacing_and_audio() {
    let greeting_pcm = read_wav(&greeting());
    assert_eq!((greeting_pcm.channels, greeting_pcm.rate), (1, 8000));
    let greeting_pcm = greeting_pcm.samples;
    let greeting_ms = greeting_pcm.len() / 8;

    let sink = RtpSink::start();
    let mut gw = gateway("");
    let hold_ms = greeting_ms + 1_100;
    let run = Sipp::scenario("rtp_to_sink.xml")
        .args(&["-m", "1", "-d", &hold_ms.to_string()])
        .args(&["-key", "rtp_sink_port", &sink.port.to_string()])
        .run(gw.udp);
    // Let anything in flight land.
    std::thread::sleep(Duration::from_millis(100));
    let got = sink.finish();
    run.assert_ok(1, &gw);
    let call = the_call(&mut gw);
    assert_eq!(field(&call, "codec"), "PCMU", "{call:#}");

    let packets: Vec<(Instant, Rtp)> = got
        .iter()
        .map(|(t, b)| {
            let p = Rtp::parse(b, Duration::ZERO).unwrap_or_else(|| panic!("not RTP: {b:02x?}"));
            (*t, p)
        })
        .collect();
    assert!(packets.len() > 100, "{} packets", packets.len());
    let first = &packets[0].1;
    let mut ssrcs: Vec<u32> = packets.iter().map(|(_, p)| p.ssrc).collect();
    ssrcs.dedup();
    assert_eq!(ssrcs.len(), 1, "one SSRC: {ssrcs:x?}");
    assert!(packets.iter().all(|(_, p)| p.pt == 0), "PCMU is PT 0");
    assert!(
        packets.iter().all(|(_, p)| p.payload.len() == 160),
        "20 ms payloads"
    );
    assert!(first.marker, "the first packet has the marker bit");
    let markers = packets.iter().filter(|(_, p)| p.marker).count();
    let mut gaps = Vec::new();
    for w in packets.windows(2) {
        let (a, b) = (&w[0].1, &w[1].1);
        if b.seq != a.seq.wrapping_add(1) || b.ts != a.ts.wrapping_add(160) {
            gaps.push((a.seq, a.ts, b.seq, b.ts));
        }
    }
    assert!(gaps.is_empty(), "sequence/timestamp breaks: {gaps:?}");
    assert_eq!(markers, 1, "one talkspurt, one marker");

    // Pacing as received.
    let mut deltas: Vec<f64> = packets
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64() * 1000.0)
        .collect();
    deltas.sort_by(f64::total_cmp);
    let (med, p99, max) = (
        median(&deltas),
        percentile(&deltas, 0.99),
        *deltas.last().unwrap(),
    );
    let span_ms = (packets.last().unwrap().0 - packets[0].0).as_secs_f64() * 1000.0;
    let duration_ms = call["duration_ms"].as_i64().unwrap();
    let tx = rtp_stat(&call, "tx_packets");
    eprintln!(
        "playback: {} packets over {span_ms:.0} ms (call {duration_ms} ms, gateway tx_packets {tx}); \
         inter-arrival median {med:.3} ms, p99 {p99:.3} ms, max {max:.3} ms, min {:.3} ms",
        packets.len(),
        deltas[0]
    );
    assert!(
        (19.5..=20.5).contains(&med),
        "median inter-arrival {med:.3} ms"
    );
    assert!(p99 < 25.0, "p99 inter-arrival {p99:.3} ms");
    // Drift-free: one packet per 20 ms of wall clock, end to end.
    let expected = span_ms / 20.0 + 1.0;
    assert!(
        (packets.len() as f64 - expected).abs() <= 2.0,
        "{} packets in {span_ms:.0} ms",
        packets.len()
    );
    // And one per 20 ms of the call (answer to BYE).
    assert!(
        (packets.len() as i64 - duration_ms / 20).abs() <= 10,
        "{} packets in a {duration_ms} ms call",
        packets.len()
    );
    assert!(
        (tx - packets.len() as i64).abs() <= 1,
        "tx_packets {tx}, received {}",
        packets.len()
    );

    // The audio: the greeting from the first packet, then silence.
    let pcm = decode_packets(
        &packets.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        Law::Mu,
    );
    let (lag, peak) = xcorr_peak(&greeting_pcm, &pcm, 800);
    let after = &pcm[(greeting_pcm.len() + lag + 160).min(pcm.len())..];
    eprintln!(
        "playback: decoded audio vs {}: peak {peak:.5} at lag {} ms; after it {:.1} dBFS over {} ms",
        greeting().display(),
        lag / 8,
        rms_dbfs(after),
        after.len() / 8
    );
    assert!(peak > 0.99, "greeting correlation {peak:.4}");
    assert!(lag <= 160, "the greeting starts {} ms in", lag / 8);
    assert!(after.len() >= 8 * 500, "silence after the greeting");
    assert!(rms_dbfs(after) < -60.0, "silence after the greeting");
}

// ---------------------------------------------------------------------------
// 4. RTP inactivity: hang up, but not while the call is held.
// ---------------------------------------------------------------------------

#[test]
fn no_rtp_for_rtp_timeout_ends_the_call() {
    let mut gw = gateway("rtp_timeout_s = 2\n");
    let run = Sipp::scenario("rtp_timeout.xml")
        .args(&["-m", "1"])
        .run(gw.udp);
    run.assert_ok(1, &gw);
    let call = the_call(&mut gw);
    eprintln!(
        "rtp timeout: end_reason {} after {} ms",
        call["end_reason"], call["duration_ms"]
    );
    assert_eq!(field(&call, "end_reason"), "rtp-timeout", "{call:#}");
    let d = call["duration_ms"].as_i64().unwrap();
    assert!(
        (1_900..=3_000).contains(&d),
        "hung up {d} ms after the answer"
    );
    assert_eq!(rtp_stat(&call, "rx_packets"), 0, "{call:#}");
}

#[test]
fn held_call_without_rtp_is_not_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    // 1 s of audio after the resume.
    let tone: Vec<i16> = (0..8000)
        .map(|i| (8000.0 * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin()) as i16)
        .collect();
    write_pcap(
        &dir.path().join("caller.pcap"),
        &g711_packets(&tone, Law::Mu, 7, 1, 0),
    );
    let mut gw = gateway("rtp_timeout_s = 2\n");
    let run = Sipp::scenario("hold_inactive_no_rtp.xml")
        .link("media", dir.path())
        .args(&["-m", "1"])
        .run(gw.udp);
    run.assert_ok(1, &gw);
    let call = the_call(&mut gw);
    eprintln!(
        "hold: end_reason {} after {} ms, rtp {}",
        call["end_reason"], call["duration_ms"], call["rtp"]
    );
    assert_eq!(field(&call, "end_reason"), "caller-bye", "{call:#}");
    assert!(call["duration_ms"].as_i64().unwrap() >= 5_000, "{call:#}");
    assert!(rtp_stat(&call, "rx_packets") >= 48, "{call:#}");
}

// ---------------------------------------------------------------------------
// 5. kill -9 during a call: the recording survives, is repaired at start-up,
//    and the call is closed as a crash.
// ---------------------------------------------------------------------------

fn find_wavs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find_wavs(&p));
            } else if p.extension().is_some_and(|x| x == "wav") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn recording_survives_kill_9_and_is_repaired_on_restart() {
    let speech = shared_clip_8k("zh_funasr_asr_example.wav");
    let dir = tempfile::tempdir().unwrap();
    write_pcap(
        &dir.path().join("caller.pcap"),
        &g711_packets(&speech, Law::Mu, 0x5EED, 9, 90),
    );
    let mut gw = gateway("");
    let recordings = gw.data_dir().join("recordings");
    let sipp = Sipp::scenario("rtp_play_pcmu.xml")
        .link("media", dir.path())
        .args(&["-m", "1", "-d", "10000"])
        .timeout(Duration::from_secs(15))
        .spawn(gw.udp);
    // The recording is opened when the call is answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (path, answered) = loop {
        if let Some(p) = find_wavs(&recordings).pop() {
            break (p, Instant::now());
        }
        assert!(Instant::now() < deadline, "no recording appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(3_000));
    gw.kill9();
    let elapsed = answered.elapsed().as_secs_f64();
    sipp.kill();

    // As the crash left it: the header was rewritten at most a second ago.
    let before = read_wav(&path);
    assert_eq!((before.channels, before.rate, before.bits), (2, 8000, 16));
    let soxi_before = soxi_duration(&path);
    eprintln!(
        "kill -9 {elapsed:.2} s after the answer: header says {:.3} s (soxi {soxi_before:.3} s), \
         file holds {:.3} s",
        before.header_secs(),
        before.file_secs()
    );
    assert!(u64::from(before.header_data_len) <= before.file_data_len);
    assert!(
        before.header_secs() >= elapsed - 1.6,
        "header {:.3} s, {elapsed:.2} s after the answer",
        before.header_secs()
    );
    assert!(before.file_secs() <= elapsed + 0.2);
    assert!((soxi_before - before.header_secs()).abs() < 0.01);
    // What is there is the caller's audio.
    let heard = ((before.file_secs() - 0.5).max(0.5) * 8000.0) as usize;
    let summary = assert_caller_channel_carries(&before, &speech[..heard.min(speech.len())]);
    eprintln!("kill -9: caller channel vs audio sent: {summary}");

    // Start-up repairs the header to what the file holds.
    gw.restart();
    // The repair should be done by the ready line, but `hotline serve`
    // prints that line before it sets up the media plane (which repairs),
    // so allow it a moment.
    let repaired = |w: &Wav| u64::from(w.header_data_len) == w.file_data_len;
    let repaired_at_ready = repaired(&read_wav(&path));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !repaired(&read_wav(&path)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = read_wav(&path);
    let soxi_after = soxi_duration(&path);
    eprintln!(
        "restart: header says {:.3} s (soxi {soxi_after:.3} s), file holds {:.3} s; \
         repaired by the ready line: {repaired_at_ready}",
        after.header_secs(),
        after.file_secs()
    );
    assert_eq!(u64::from(after.header_data_len), after.file_data_len);
    assert!((soxi_after - after.file_secs()).abs() < 0.01);
    assert!(after.file_secs() >= before.header_secs());
    assert!(
        after.file_secs() >= elapsed - 1.2,
        "repaired to {:.3} s, {elapsed:.2} s after the answer",
        after.file_secs()
    );

    let call = the_call(&mut gw);
    assert_eq!(field(&call, "end_reason"), "crash", "{call:#}");
    assert_eq!(PathBuf::from(field(&call, "recording")), path, "{call:#}");
}

// ---------------------------------------------------------------------------
// The helpers themselves.
// ---------------------------------------------------------------------------

/// The test's own G.711 and pcap writer against known values and SIPp's
/// captures, so a failure above is the gateway's.
#[test]
fn helpers_g711_and_pcap_round_trip() {
    assert_eq!(ulaw_decode(0xFF), 0);
    assert_eq!(ulaw_decode(0x80), 32124);
    assert_eq!(ulaw_decode(0x00), -32124);
    assert_eq!(alaw_decode(0xD5), 8);
    assert_eq!(alaw_decode(0xAA), 32256);
    assert_eq!(alaw_decode(0x2A), -32256);
    for law in [Law::Mu, Law::A] {
        for b in 0..=255u8 {
            let s = law.decode(b);
            assert_eq!(law.decode(law.encode(s)), s, "{law:?} {b:#04x}");
        }
        // Quantization error stays within the segment's step.
        for s in (-32768..=32767).step_by(7) {
            let s = s as i16;
            let err = (i32::from(law.decode(law.encode(s))) - i32::from(s)).abs();
            assert!(err <= 1024 + i32::from(s).abs() / 16, "{law:?} {s}: {err}");
        }
    }
    // SIPp's capture read, re-written by our writer, read back: identical.
    let shipped = read_pcap(&Path::new(SIP_TESTER).join("g711a.pcap"));
    assert_eq!(shipped.len(), 236);
    assert!(shipped.iter().all(|p| p.payload.len() == 240));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.pcap");
    write_pcap(&copy, &shipped);
    let back = read_pcap(&copy);
    assert_eq!(back.len(), shipped.len());
    for (a, b) in shipped.iter().zip(&back) {
        assert_eq!(
            (a.pt, a.marker, a.seq, a.ts, a.ssrc),
            (b.pt, b.marker, b.seq, b.ts, b.ssrc)
        );
        assert_eq!(a.payload, b.payload);
        assert!(a.at.abs_diff(b.at) < Duration::from_micros(2));
    }
    // Generated packets: 20 ms apart, +160 timestamps, marker on the first.
    let pcm: Vec<i16> = (0..1000).map(|i| (i * 13 % 2000 - 1000) as i16).collect();
    let p = g711_packets(&pcm, Law::Mu, 1, 65535, u32::MAX - 100);
    assert_eq!(p.len(), 7);
    assert_eq!((p[1].seq, p[1].ts), (0, 59));
    assert!(p[0].marker && p.iter().skip(1).all(|p| !p.marker));
    assert_eq!(p[6].at, Duration::from_millis(120));
    assert_eq!(decode_packets(&p, Law::Mu).len(), 7 * 160);
}
