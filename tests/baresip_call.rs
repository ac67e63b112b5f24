//! baresip (Debian's baresip-core) as a second, independent user agent: it calls
//! `hotline serve` over UDP on loopback, streams speech (its `aufile` audio source
//! playing a WAV as the microphone), presses keys as RFC 4733 telephone-events
//! (`/sndcode`), hangs up and quits. Headless: no sound card, no terminal; baresip
//! is driven through its `ctrl_tcp` module (netstring-framed JSON commands and
//! events). Its `sndfile` module dumps the audio it decoded from the gateway, which
//! shows that the gateway's RTP arrived and carried the greeting.
//!
//! Then the call record: answered, ended by the caller's BYE, G.711, exactly the
//! keys pressed (in order, source rfc4733), RTP counters, and the recording: the
//! caller channel carries the speech baresip sent, the gateway channel the greeting.
//! Nothing is lost on loopback, and baresip's RFC 4733 packets take sequence numbers
//! between its audio packets (one SSRC, one sequence-number space), so the gaps they
//! leave in the audio must not count as lost audio.
//!
//! baresip 1.0.0 specifics: its aufile module is an audio source only (no player),
//! and baresip hangs up when the source reaches the end of its file, so the
//! microphone WAV is padded with silence past the call's length.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The keys pressed during the call, in order.
const KEYS: [char; 6] = ['1', '5', '9', '#', '0', '*'];

/// One baresip process with a generated config directory, controlled over
/// `ctrl_tcp`. Killed (and waited for) when dropped.
struct Baresip {
    child: Child,
    ctrl: TcpStream,
    /// Bytes read from the control connection not yet parsed.
    buf: Vec<u8>,
    /// Every event received so far, and how many of them `wait_event` consumed.
    events: Vec<Value>,
    seen: usize,
    dir: PathBuf,
    token: u64,
}

impl Baresip {
    /// Starts baresip with its config in `dir`, the WAV `mic` (8 kHz mono S16LE)
    /// as its microphone, and audio dumps written into `dir`.
    fn start(dir: &Path, mic: &Path) -> Baresip {
        let sip_port = free_port();
        let ctrl_port = free_port();
        // Modules: g711 (the only codec offered: PCMU, PCMA), aufile (the WAV as
        // audio source), sndfile (dumps of the encoded and decoded audio),
        // ctrl_tcp (control), account (the accounts file), menu (the commands:
        // dial, sndcode, hangup, quit). No audio player module is loaded: the
        // decoded audio goes through the sndfile filter and nowhere else.
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             call_local_timeout\t20\n\
             call_max_calls\t\t1\n\
             audio_source\t\taufile,{mic}\n\
             ausrc_srate\t\t8000\n\
             ausrc_channels\t\t1\n\
             auplay_srate\t\t8000\n\
             auplay_channels\t\t1\n\
             audio_buffer\t\t20-160\n\
             rtp_stats\t\tyes\n\
             rtcp_mux\t\tno\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\taufile.so\n\
             module\t\t\tsndfile.so\n\
             module\t\t\tctrl_tcp.so\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
             snd_path\t\t{dir}\n",
            mic = mic.display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("config"), config).unwrap();
        // A local account that never registers; telephone-event is offered by default.
        std::fs::write(dir.join("accounts"), "<sip:tester@127.0.0.1>;regint=0\n").unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip runs (Debian package baresip-core; scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                break s;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "baresip exited ({status}) before its control port opened; log:\n{}",
                    std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("baresip's control port {ctrl_port} did not open within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ctrl.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Baresip {
            child,
            ctrl,
            buf: Vec::new(),
            events: Vec::new(),
            seen: 0,
            dir: dir.to_path_buf(),
            token: 0,
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read(self.dir.join("baresip.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // The status line rewrites itself with carriage returns; keep the rest.
        let text: String = text
            .split(['\r', '\n'])
            .filter(|l| !l.starts_with('['))
            .collect::<Vec<_>>()
            .join("\n");
        let cut = text.len().saturating_sub(6_000);
        let cut = (cut..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[cut..].to_string()
    }

    /// Reads from the control connection until `deadline`, or until one message
    /// has been parsed. Events are kept in `events`; responses are returned.
    fn read_message(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            // A complete netstring "LEN:JSON," in the buffer?
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad netstring from baresip: {:?}", self.buf));
                if self.buf.len() > colon + len + 1 {
                    let body = self.buf[colon + 1..colon + 1 + len].to_vec();
                    assert_eq!(self.buf[colon + 1 + len], b',', "netstring ends with ','");
                    self.buf.drain(..colon + 2 + len);
                    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                        panic!("baresip sent {}: {e}", String::from_utf8_lossy(&body))
                    });
                    if v["event"] == true {
                        self.events.push(v);
                        return None;
                    }
                    return Some(v);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => panic!(
                    "baresip closed its control connection; log:\n{}",
                    self.log()
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading baresip's control connection: {e}"),
            }
        }
    }

    /// Runs a menu command (`dial`, `sndcode`, `hangup`, `quit`, ...) and returns
    /// its response's data; panics if it fails or takes over 5 s.
    fn command(&mut self, command: &str, params: Option<&str>) -> String {
        self.token += 1;
        let token = format!("t{}", self.token);
        let mut msg = json!({ "command": command, "token": token });
        if let Some(p) = params {
            msg["params"] = json!(p);
        }
        let body = msg.to_string();
        write!(self.ctrl, "{}:{},", body.len(), body).expect("baresip control connection");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(r) = self.read_message(deadline) {
                if r["token"] == token.as_str() {
                    assert_eq!(
                        r["ok"],
                        true,
                        "baresip /{command} failed: {r}\nlog:\n{}",
                        self.log()
                    );
                    return r["data"].as_str().unwrap_or_default().to_string();
                }
            }
        }
        panic!("no response to /{command} within 5 s; log:\n{}", self.log());
    }

    /// The next event of one of `types` (e.g. "CALL_ESTABLISHED"), waiting up to
    /// `within`; events of other types are passed over.
    fn wait_event(&mut self, types: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            while self.seen < self.events.len() {
                let ev = &self.events[self.seen];
                self.seen += 1;
                if types.iter().any(|t| ev["type"] == *t) {
                    return ev.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {types:?} event from baresip within {within:?}; events: {:#?}\nlog:\n{}",
                    self.events,
                    self.log()
                );
            }
            let _ = self.read_message(deadline);
        }
    }

    /// Reads whatever arrives for `d` (keeps events flowing while the call runs).
    fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            let _ = self.read_message(deadline);
        }
    }

    /// `/quit`, then up to 5 s for the process to exit (killed otherwise).
    fn quit(&mut self) {
        let token = "quit";
        let body = json!({ "command": "quit", "token": token }).to_string();
        let _ = write!(self.ctrl, "{}:{},", body.len(), body);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "baresip did not exit within 5 s of /quit; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A 16-bit PCM WAV: rate, channel count and the interleaved samples as f32.
struct Wav {
    rate: u32,
    channels: usize,
    samples: Vec<f32>,
}

impl Wav {
    fn read(path: &Path) -> Wav {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(
            bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
            "{} is not a WAV file",
            path.display()
        );
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let (mut rate, mut channels, mut bits) = (0, 0, 0);
        let mut pos = 12;
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let size = u32_at(pos + 4) as usize;
            let body = pos + 8;
            if id == b"fmt " {
                channels = u16_at(body + 2) as usize;
                rate = u32_at(body + 4);
                bits = u16_at(body + 14);
            } else if id == b"data" {
                assert_eq!(bits, 16, "{}: 16-bit PCM expected", path.display());
                // A header never finalized (size 0 or past the end): the rest of the file.
                let end = if size == 0 || body + size > bytes.len() {
                    bytes.len()
                } else {
                    body + size
                };
                let samples = bytes[body..end]
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                    .collect();
                return Wav {
                    rate,
                    channels,
                    samples,
                };
            }
            pos = body + size + (size & 1);
        }
        panic!("{}: no data chunk", path.display());
    }

    /// One channel (0 = left).
    fn channel(&self, c: usize) -> Vec<f32> {
        assert!(c < self.channels);
        self.samples
            .iter()
            .skip(c)
            .step_by(self.channels)
            .copied()
            .collect()
    }
}

fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// The best normalised cross-correlation of `template` against `signal` at any
/// start position in `0..=max_start`: (position, r).
fn best_match(signal: &[f32], template: &[f32], max_start: usize) -> (usize, f32) {
    let tn: f64 = template.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mut best = (0, 0.0f32);
    for start in 0..=max_start {
        let Some(window) = signal.get(start..start + template.len()) else {
            break;
        };
        let (mut dot, mut sn) = (0.0f64, 0.0f64);
        for (&s, &t) in window.iter().zip(template) {
            dot += f64::from(s) * f64::from(t);
            sn += f64::from(s) * f64::from(s);
        }
        if sn > 0.0 && tn > 0.0 {
            let r = (dot / (sn * tn).sqrt()) as f32;
            if r > best.1 {
                best = (start, r);
            }
        }
    }
    best
}

/// `src` converted by sox to 8 kHz mono 16-bit WAV at `dst`, with `pad_s`
/// seconds of silence appended.
fn sox_to_8k(src: &Path, dst: &Path, pad_s: u32) {
    let status = Command::new("sox")
        .arg(src)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(dst)
        .args(["pad", "0", &pad_s.to_string()])
        .status()
        .expect("sox runs (scripts/setup.sh installs it)");
    assert!(
        status.success(),
        "sox {} -> {}",
        src.display(),
        dst.display()
    );
}

/// What one baresip call left behind: the gateway's call record and the files to
/// compare (kept until this is dropped).
struct CallRun {
    record: Value,
    /// The speech baresip sent and the greeting, both 8 kHz mono.
    mic: PathBuf,
    greeting8k: PathBuf,
    /// baresip's config directory, where its sndfile dumps are.
    bs_dir: PathBuf,
    ua_log: String,
    /// The stopped gateway: its data directory (the recording) lives as long as it.
    _gw: Gateway,
    _tmp: tempfile::TempDir,
}

/// baresip calls a fresh gateway, talks, presses [`KEYS`] 600 ms apart, hangs up
/// and quits; the gateway is stopped (store flushed) and its one record returned.
fn baresip_call() -> CallRun {
    let tmp = tempfile::tempdir().unwrap();
    let bs_dir = tmp.path().join("baresip");
    std::fs::create_dir(&bs_dir).unwrap();

    // The microphone: 11 s of speech then 30 s of silence, longer than the call
    // (baresip ends the call when its aufile source reaches the end of the file).
    let mic = tmp.path().join("mic.wav");
    sox_to_8k(&repo().join("fixtures/audio/demo_en_jfk.wav"), &mic, 30);
    let greeting = repo().join("ivr-scripts/prompts/welcome.wav");
    assert!(greeting.is_file(), "no greeting {}", greeting.display());
    let greeting8k = tmp.path().join("greeting8k.wav");
    sox_to_8k(&greeting, &greeting8k, 0);

    let mut gw = Gateway::with_config(&format!(
        "[media]\nrecord = true\ninband_dtmf = true\ngreeting = {:?}\n",
        greeting.to_string_lossy()
    ));
    let mut ua = Baresip::start(&bs_dir, &mic);

    ua.command("dial", Some(&format!("sip:12345@{}", gw.udp)));
    let ev = ua.wait_event(
        &["CALL_ESTABLISHED", "CALL_CLOSED"],
        Duration::from_secs(10),
    );
    assert_eq!(
        ev["type"],
        "CALL_ESTABLISHED",
        "call not established: {ev}\ngateway log:\n{}",
        gw.log()
    );
    let call_id = ev["id"].as_str().unwrap_or_default().to_string();

    // Speech flows both ways for a while, then the keys, 600 ms apart (each is
    // sent as telephone-events for about 180 ms, end packet thrice).
    ua.pump(Duration::from_millis(2500));
    for key in KEYS {
        ua.command("sndcode", Some(&key.to_string()));
        ua.pump(Duration::from_millis(600));
    }
    // Past the greeting's end (about 7 s) before hanging up.
    ua.pump(Duration::from_millis(3000));
    ua.command("hangup", None);
    let ev = ua.wait_event(&["CALL_CLOSED"], Duration::from_secs(5));
    assert_eq!(ev["id"], call_id.as_str(), "{ev}");
    ua.quit();

    let calls = gw.stop_and_calls();
    assert_eq!(calls.len(), 1, "one call record: {calls:#?}");
    let c = calls.into_iter().next().unwrap();
    assert_eq!(field(&c, "sip_call_id"), call_id, "{c:#}");
    CallRun {
        record: c,
        mic,
        greeting8k,
        bs_dir,
        ua_log: ua.log(),
        _gw: gw,
        _tmp: tmp,
    }
}

#[test]
fn baresip_calls_presses_keys_and_is_recorded() {
    let run = baresip_call();
    let c = &run.record;
    assert_eq!(c["status"], 200, "{c:#}");
    assert!(c["answered_at"].is_string(), "answered: {c:#}");
    assert_eq!(field(c, "end_reason"), "caller-bye", "{c:#}");
    let codec = field(c, "codec");
    assert!(codec == "PCMU" || codec == "PCMA", "codec {codec}: {c:#}");

    // Exactly the keys pressed, in order, each once, all from telephone-events
    // (no in-band echo of them, no false digits from the speech).
    let digits = c["digits"].as_array().expect("digits array");
    let keys: Vec<String> = digits.iter().map(|d| field(d, "key")).collect();
    let want: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys, want, "digits: {c:#}");
    for d in digits {
        assert_eq!(field(d, "source"), "rfc4733", "{c:#}");
        assert!(
            d["duration_ms"].as_u64().is_some_and(|ms| ms > 0),
            "duration: {c:#}"
        );
    }
    let at: Vec<u64> = digits.iter().filter_map(|d| d["at_ms"].as_u64()).collect();
    assert_eq!(at.len(), KEYS.len(), "at_ms on every digit: {c:#}");
    assert!(at.windows(2).all(|w| w[0] < w[1]), "at_ms ascending: {c:#}");

    // RTP both ways for the whole call (~10 s at 50 packets/s), nothing rejected,
    // nothing lost (the key presses' telephone-events are not audio loss).
    let rtp = &c["rtp"];
    let n = |k: &str| rtp[k].as_u64().unwrap_or_else(|| panic!("rtp.{k}: {c:#}"));
    assert!(n("rx_packets") > 400, "rx_packets: {c:#}");
    assert!(n("tx_packets") > 400, "tx_packets: {c:#}");
    assert_eq!(n("rejected"), 0, "rejected: {c:#}");
    assert_eq!(n("lost"), 0, "lost (on loopback): {c:#}");

    // The recording: stereo 8 kHz, caller left, gateway right.
    let path = PathBuf::from(field(c, "recording"));
    assert!(
        path.is_file(),
        "recording {} missing: {c:#}",
        path.display()
    );
    let rec = Wav::read(&path);
    assert_eq!((rec.rate, rec.channels), (8000, 2), "{}", path.display());
    let caller = rec.channel(0);
    let gateway = rec.channel(1);
    assert!(
        caller.len() >= 8 * 8000,
        "recording only {} samples",
        caller.len()
    );
    let mic_audio = Wav::read(&run.mic).samples;
    let greet = Wav::read(&run.greeting8k).samples;

    // Caller channel: not silent, and it is the speech baresip sent (through
    // G.711 and the jitter buffer; the window ends before the first key).
    let caller_rms = rms(&caller[..8 * 8000]);
    assert!(caller_rms > 0.01, "caller channel silent: RMS {caller_rms}");
    let (pos, r) = best_match(&caller, &mic_audio[4000..16000], 4000 + 8000);
    assert!(
        r > 0.8,
        "caller channel does not match baresip's speech: best r {r} at sample {pos}"
    );

    // Gateway channel: the greeting, from the start of the call.
    let (pos, r) = best_match(&gateway, &greet[8000..20000], 8000 + 8000);
    assert!(
        r > 0.9,
        "gateway channel does not carry the greeting: best r {r} at sample {pos}"
    );

    // What baresip decoded from the gateway's RTP (its sndfile dump): the greeting.
    let dec = std::fs::read_dir(&run.bs_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("no decode dump from baresip; log:\n{}", run.ua_log));
    let heard = Wav::read(&dec);
    assert_eq!(heard.rate, 8000, "{}", dec.display());
    let heard = heard.channel(0);
    assert!(
        rms(&heard) > 0.01,
        "baresip heard silence: RMS {}",
        rms(&heard)
    );
    let (pos, r) = best_match(&heard, &greet[8000..20000], 8000 + 8000);
    assert!(
        r > 0.8,
        "baresip did not hear the greeting: best r {r} at sample {pos}"
    );
}
