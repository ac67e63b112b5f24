//! Media helpers for the RTP tests (tests/media_calls.rs): G.711 written from
//! the ITU reference (independent of the gateway's codec), RTP packets in
//! pcap files that SIPp's `play_pcap_audio` replays, RFC 4733 events, WAV
//! reading that tolerates a stale header, and normalized cross-correlation.

use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------
// G.711 (ITU-T G.711, after the classic Sun reference implementation).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// PCMU, static payload type 0.
    Mu,
    /// PCMA, static payload type 8.
    A,
}

impl Law {
    pub fn pt(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    pub fn encode(self, s: i16) -> u8 {
        match self {
            Law::Mu => ulaw_encode(s),
            Law::A => alaw_encode(s),
        }
    }

    pub fn decode(self, b: u8) -> i16 {
        match self {
            Law::Mu => ulaw_decode(b),
            Law::A => alaw_decode(b),
        }
    }
}

pub fn ulaw_encode(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut v = i32::from(s);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(CLIP) + BIAS;
    // v is in 0x84..=0x7FFF: its top bit is bit 7..14, the exponent 0..7.
    let exponent = (31 - (v as u32).leading_zeros()) as i32 - 7;
    let mantissa = (v >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

pub fn ulaw_decode(b: u8) -> i16 {
    let u = !b;
    let mut t = ((i32::from(u) & 0x0F) << 3) + 0x84;
    t <<= (i32::from(u) & 0x70) >> 4;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

pub fn alaw_encode(s: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = i32::from(s) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = SEG_END.iter().position(|&e| v <= e).unwrap_or(8) as i32;
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mant = if seg < 2 {
        (v >> 1) & 0x0F
    } else {
        (v >> seg) & 0x0F
    };
    (((seg << 4) | mant) ^ mask) as u8
}

pub fn alaw_decode(b: u8) -> i16 {
    let a = i32::from(b ^ 0x55);
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

// ---------------------------------------------------------------------------
// RTP packets and pcap files.
// ---------------------------------------------------------------------------

/// One RTP packet, with when it is (or was) sent relative to the first.
#[derive(Debug, Clone, PartialEq)]
pub struct Rtp {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub at: Duration,
}

impl Rtp {
    /// Parses a bare RTP packet (version 2, CSRCs and extension skipped).
    pub fn parse(b: &[u8], at: Duration) -> Option<Rtp> {
        if b.len() < 12 || b[0] >> 6 != 2 {
            return None;
        }
        let cc = usize::from(b[0] & 0x0F);
        let mut off = 12 + 4 * cc;
        if b[0] & 0x10 != 0 {
            let len = usize::from(u16::from_be_bytes([*b.get(off + 2)?, *b.get(off + 3)?]));
            off += 4 + 4 * len;
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*b.last()?))?;
        }
        Some(Rtp {
            pt: b[1] & 0x7F,
            marker: b[1] & 0x80 != 0,
            seq: u16::from_be_bytes([b[2], b[3]]),
            ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: b.get(off..end)?.to_vec(),
            at,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.payload.len());
        b.push(0x80);
        b.push(self.pt | if self.marker { 0x80 } else { 0 });
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.ssrc.to_be_bytes());
        b.extend_from_slice(&self.payload);
        b
    }
}

/// The RTP packets of a pcap file (Ethernet/IPv4/UDP, as the ones shipped
/// with SIPp), with capture times relative to the first packet.
pub fn read_pcap(path: &Path) -> Vec<Rtp> {
    let d = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(d.len() >= 24, "{}: no pcap header", path.display());
    let u32le = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
    assert_eq!(u32le(0), 0xA1B2_C3D4, "{}: not a µs pcap", path.display());
    assert_eq!(u32le(20), 1, "{}: not Ethernet", path.display());
    let mut out = Vec::new();
    let mut first = None;
    let mut off = 24;
    while off + 16 <= d.len() {
        let t = Duration::from_secs(u64::from(u32le(off)))
            + Duration::from_micros(u64::from(u32le(off + 4)));
        let len = u32le(off + 8) as usize;
        let frame = &d[off + 16..off + 16 + len];
        off += 16 + len;
        let first = *first.get_or_insert(t);
        // Ethernet, IPv4 (IHL words), UDP.
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
            continue;
        }
        let ihl = usize::from(frame[14] & 0x0F) * 4;
        if let Some(p) = Rtp::parse(&frame[14 + ihl + 8..], t - first) {
            out.push(p);
        }
    }
    out
}

fn checksum16(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes RTP packets as a pcap file SIPp's `play_pcap_audio` can replay:
/// Ethernet/IPv4/UDP frames (127.0.0.1:6000 -> 127.0.0.1:6000; SIPp rewrites
/// addresses and ports), each record stamped with the packet's `at`.
pub fn write_pcap(path: &Path, packets: &[Rtp]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
                                              // An arbitrary but fixed capture start.
    let base = Duration::from_secs(1_700_000_000);
    for (i, p) in packets.iter().enumerate() {
        let rtp = p.to_bytes();
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = Vec::with_capacity(14 + ip_len);
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let c = checksum16(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        frame.extend_from_slice(&rtp);
        let t = base + p.at;
        f.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        f.extend_from_slice(&t.subsec_micros().to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&frame);
    }
    std::fs::write(path, f).unwrap();
}

/// 8 kHz PCM as 20 ms G.711 packets (the last one padded with silence),
/// sent 20 ms apart; the first has the marker bit.
pub fn g711_packets(pcm: &[i16], law: Law, ssrc: u32, seq0: u16, ts0: u32) -> Vec<Rtp> {
    pcm.chunks(160)
        .enumerate()
        .map(|(i, chunk)| {
            let mut payload: Vec<u8> = chunk.iter().map(|&s| law.encode(s)).collect();
            payload.resize(160, law.encode(0));
            Rtp {
                pt: law.pt(),
                marker: i == 0,
                seq: seq0.wrapping_add(i as u16),
                ts: ts0.wrapping_add(160 * i as u32),
                ssrc,
                payload,
                at: Duration::from_millis(20 * i as u64),
            }
        })
        .collect()
}

/// The PCM carried by packets of payload type `law.pt()`, in the order given.
pub fn decode_packets(packets: &[Rtp], law: Law) -> Vec<i16> {
    packets
        .iter()
        .filter(|p| p.pt == law.pt())
        .flat_map(|p| p.payload.iter().map(|&b| law.decode(b)))
        .collect()
}

// ---------------------------------------------------------------------------
// Audio files.
// ---------------------------------------------------------------------------

/// A 16-bit PCM WAV file as found on disk.
#[derive(Debug, Clone)]
pub struct Wav {
    pub channels: u16,
    pub rate: u32,
    pub bits: u16,
    /// The data chunk size the header claims.
    pub header_data_len: u32,
    /// The bytes actually there after the data chunk header.
    pub file_data_len: u64,
    /// Interleaved samples, read to the end of the file (not the header's size).
    pub samples: Vec<i16>,
}

impl Wav {
    /// One channel (0 = left).
    pub fn channel(&self, c: usize) -> Vec<i16> {
        self.samples
            .chunks_exact(usize::from(self.channels))
            .map(|f| f[c])
            .collect()
    }

    /// Seconds of audio the header claims.
    pub fn header_secs(&self) -> f64 {
        f64::from(self.header_data_len)
            / f64::from(self.rate)
            / f64::from(self.channels)
            / f64::from(self.bits / 8)
    }

    /// Seconds of audio the file holds.
    pub fn file_secs(&self) -> f64 {
        self.file_data_len as f64
            / f64::from(self.rate)
            / f64::from(self.channels)
            / f64::from(self.bits / 8)
    }
}

/// Parses a RIFF/WAVE file by hand, chunk by chunk, so a file whose header
/// was never finalized (a crash) is read as far as it goes.
pub fn read_wav(path: &Path) -> Wav {
    let d = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        d.len() >= 12 && &d[0..4] == b"RIFF" && &d[8..12] == b"WAVE",
        "{}: not RIFF/WAVE",
        path.display()
    );
    let mut off = 12;
    let mut fmt = None;
    while off + 8 <= d.len() {
        let id = &d[off..off + 4];
        let len = u32::from_le_bytes(d[off + 4..off + 8].try_into().unwrap());
        let body = off + 8;
        if id == b"fmt " {
            let f = &d[body..body + 16];
            let tag = u16::from_le_bytes([f[0], f[1]]);
            assert!(
                tag == 1 || tag == 0xFFFE,
                "{}: format tag {tag}",
                path.display()
            );
            fmt = Some((
                u16::from_le_bytes([f[2], f[3]]),
                u32::from_le_bytes(f[4..8].try_into().unwrap()),
                u16::from_le_bytes([f[14], f[15]]),
            ));
        } else if id == b"data" {
            let (channels, rate, bits) =
                fmt.unwrap_or_else(|| panic!("{}: data before fmt", path.display()));
            assert_eq!(bits, 16, "{}", path.display());
            let bytes = &d[body..];
            let frame = 2 * usize::from(channels);
            let whole = bytes.len() / frame * frame;
            return Wav {
                channels,
                rate,
                bits,
                header_data_len: len,
                file_data_len: bytes.len() as u64,
                samples: bytes[..whole]
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            };
        }
        off = body + len as usize + (len as usize & 1);
    }
    panic!("{}: no data chunk", path.display());
}

/// Any audio file sox reads, as 8 kHz mono 16-bit PCM (sox resamples).
pub fn sox_pcm_8k(path: &Path, extra_effects: &[&str]) -> Vec<i16> {
    let out = std::process::Command::new("sox")
        .arg(path)
        .args([
            "-t",
            "raw",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-L",
            "-r",
            "8000",
            "-c",
            "1",
            "-",
        ])
        .args(extra_effects)
        .output()
        .expect("sox runs");
    assert!(
        out.status.success(),
        "sox {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Runs sox with these arguments and asserts success.
pub fn sox(args: &[&str]) {
    let out = std::process::Command::new("sox")
        .args(args)
        .output()
        .expect("sox runs");
    assert!(
        out.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `soxi -D` (duration in seconds, from the header) of a file.
pub fn soxi_duration(path: &Path) -> f64 {
    let out = std::process::Command::new("soxi")
        .arg("-D")
        .arg(path)
        .output()
        .expect("soxi runs");
    assert!(
        out.status.success(),
        "soxi {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("soxi -D prints seconds")
}

// ---------------------------------------------------------------------------
// Comparing audio.
// ---------------------------------------------------------------------------

/// Where `reference` sits in `signal`: the lag (in samples, `signal[lag]`
/// lines up with `reference[0]`) in `0..=max_lag` with the highest
/// normalized cross-correlation over the overlap, and that peak (1.0 is an
/// exact scaled copy).
pub fn xcorr_peak(reference: &[i16], signal: &[i16], max_lag: usize) -> (usize, f64) {
    let x: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
    let y: Vec<f64> = signal.iter().map(|&s| f64::from(s)).collect();
    // Prefix sums of energy for the normalization.
    let prefix = |v: &[f64]| {
        let mut p = Vec::with_capacity(v.len() + 1);
        p.push(0.0);
        for s in v {
            p.push(p.last().unwrap() + s * s);
        }
        p
    };
    let (ex, ey) = (prefix(&x), prefix(&y));
    let mut best = (0, f64::MIN);
    for lag in 0..=max_lag.min(y.len().saturating_sub(1)) {
        let n = x.len().min(y.len() - lag);
        if n == 0 {
            break;
        }
        let dot: f64 = x[..n]
            .iter()
            .zip(&y[lag..lag + n])
            .map(|(a, b)| a * b)
            .sum();
        let norm = (ex[n] * (ey[lag + n] - ey[lag])).sqrt();
        let r = if norm > 0.0 { dot / norm } else { 0.0 };
        if r > best.1 {
            best = (lag, r);
        }
    }
    best
}

/// Root mean square of 16-bit samples, in dBFS.
pub fn rms_dbfs(s: &[i16]) -> f64 {
    if s.is_empty() {
        return f64::NEG_INFINITY;
    }
    let e: f64 = s.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / s.len() as f64;
    10.0 * (e / (32768.0 * 32768.0)).log10()
}

/// One window of a windowed cross-correlation.
#[derive(Debug, Clone, Copy)]
pub struct WindowMatch {
    /// Where the window starts in the reference, in samples.
    pub start: usize,
    /// Where it was found in the signal, relative to `start`.
    pub lag: usize,
    pub peak: f64,
}

/// `reference` cut into `window`-sample pieces, each located in `signal` on
/// its own (lag `0..=max_lag` after the piece's own position). Pieces
/// quieter than `min_dbfs` (pauses, where any lag fits) are skipped. A
/// whole-signal correlation would punish one frame dropped or inserted by
/// an adaptive jitter buffer, which shifts everything after it by 20 ms;
/// per window, each piece still has to be there, intact, at a plausible lag.
pub fn windowed_xcorr(
    reference: &[i16],
    signal: &[i16],
    window: usize,
    max_lag: usize,
    min_dbfs: f64,
) -> Vec<WindowMatch> {
    let mut out = Vec::new();
    let mut start = 0;
    while start + window <= reference.len() && start < signal.len() {
        let piece = &reference[start..start + window];
        if rms_dbfs(piece) >= min_dbfs {
            let (lag, peak) = xcorr_peak(piece, &signal[start..], max_lag);
            out.push(WindowMatch { start, lag, peak });
        }
        start += window;
    }
    out
}

/// The median of some values (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
