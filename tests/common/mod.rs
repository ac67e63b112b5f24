//! Helpers for the CLI integration tests: they run the real `hotline` binary with real
//! whisper models (fetched by scripts/setup.sh) on real audio.
#![allow(dead_code)]

pub mod media;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn hotline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared clips with reference transcripts (`../shared/fixtures/audio`).
pub fn shared_audio() -> PathBuf {
    let p = repo().join("../shared/fixtures/audio");
    assert!(
        p.join("manifest.tsv").is_file(),
        "shared fixtures missing at {}: clone the project next to shared/",
        p.display()
    );
    p
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("hotline binary runs");
    assert!(
        out.status.success(),
        "hotline failed: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// whisper's text moves with where the audio starts by a few milliseconds
/// (zh_funasr_asr_example through base: CER 0.000 at 8 ms of leading silence, 0.211 at
/// 4 ms), so one figure of `hotline eval` is one draw; accuracy is read over these
/// offsets.
pub const SHIFTS_MS: [u32; 4] = [0, 4, 8, 12];

/// A manifest in `dir` of the shared clips that `keep` accepts (by file name), each
/// with `shift_ms` of silence before it (`sox pad`), with absolute paths.
pub fn shifted_manifest(dir: &Path, shift_ms: u32, keep: impl Fn(&str) -> bool) -> PathBuf {
    let manifest = std::fs::read_to_string(shared_audio().join("manifest.tsv")).unwrap();
    let header = manifest.lines().next().unwrap();
    let mut out = format!("{header}\n");
    for l in manifest.lines().skip(1) {
        let (file, rest) = l.split_once('\t').unwrap_or_default();
        if !keep(file) {
            continue;
        }
        let clip = if shift_ms == 0 {
            shared_audio().join(file)
        } else {
            let shifted = dir.join(format!("{shift_ms}ms_{file}"));
            let o = Command::new("sox")
                .arg(shared_audio().join(file))
                .arg(&shifted)
                .args(["pad", &format!("{}", f64::from(shift_ms) / 1000.0)])
                .output()
                .expect("sox runs");
            assert!(o.status.success(), "sox pad {file}: {o:?}");
            shifted
        };
        out.push_str(&format!("{}\t{rest}\n", clip.display()));
    }
    let path = dir.join(format!("clips_{shift_ms}ms.tsv"));
    std::fs::write(&path, out).unwrap();
    path
}

/// The reference transcript of a shared clip.
pub fn reference(file: &str) -> String {
    let manifest = std::fs::read_to_string(shared_audio().join("manifest.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .find(|l| l.split('\t').next() == Some(file))
        .and_then(|l| l.split('\t').nth(4))
        .unwrap_or_else(|| panic!("{file} not in manifest"))
        .to_string()
}

/// Writes 16-bit mono PCM as a WAV file.
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let bytes = (samples.len() * 2) as u32;
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + bytes).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap();
    f.write_all(&rate.to_le_bytes()).unwrap();
    f.write_all(&(rate * 2).to_le_bytes()).unwrap();
    f.write_all(&2u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&bytes.to_le_bytes()).unwrap();
    for s in samples {
        let v = (s * 32767.0).clamp(-32768.0, 32767.0) as i16;
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}

// ---------------------------------------------------------------------------
// The gateway under test (`hotline serve`) and SIPp, for the SIP tests
// (tests/sip_scenarios.rs, tests/sip_torture.rs).
// ---------------------------------------------------------------------------

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Sends `sig` (e.g. "TERM") to a process.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A child process whose exit is awaited by a thread, so waits can be bounded
/// without polling.
struct Waited {
    pid: u32,
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

impl Waited {
    fn new(mut child: std::process::Child) -> Waited {
        let pid = child.id();
        let (tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(s) = child.wait() {
                let _ = tx.send(s);
            }
        });
        Waited {
            pid,
            exited,
            status: None,
        }
    }

    /// The exit status once the process has exited (waiting up to `within`).
    fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exited.recv_timeout(within).ok();
        }
        self.status
    }

    fn running(&mut self) -> bool {
        self.wait(Duration::ZERO).is_none()
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL. None if it had to be killed.
    fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if !self.running() {
            return self.status;
        }
        signal(self.pid, "TERM");
        if let Some(s) = self.wait(grace) {
            return Some(s);
        }
        signal(self.pid, "KILL");
        self.wait(Duration::from_secs(10));
        None
    }
}

/// `hotline serve` on 127.0.0.1 with ports chosen by the OS, a data directory in
/// a temporary directory, and an optional config file. Stopped (SIGTERM, then
/// waited for) when dropped.
pub struct Gateway {
    proc: Waited,
    /// SIP over UDP and over TCP (the same port).
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// With built-in defaults (no config file).
    pub fn start() -> Gateway {
        Gateway::spawn(None)
    }

    /// With this TOML as its config file.
    pub fn with_config(toml: &str) -> Gateway {
        Gateway::spawn(Some(toml))
    }

    /// Live transcripts are off unless the config has an `[asr]` section:
    /// whisper on every call of a 500-call SIP test would only slow it down.
    fn spawn(config: Option<&str>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut text = config.unwrap_or_default().to_string();
        if !text.contains("[asr]") {
            text.push_str("\n[asr]\nenabled = false\n");
        }
        std::fs::write(dir.path().join("hotline.toml"), text).unwrap();
        let (proc, udp, tcp, http) = Gateway::launch(dir.path());
        Gateway {
            proc,
            udp,
            tcp,
            http,
            dir,
        }
    }

    /// Starts `hotline serve` over `dir` (data in `dir/data`, config
    /// `dir/hotline.toml` if there, stderr appended to `dir/gateway.log`) and
    /// waits for its ready line.
    fn launch(dir: &Path) -> (Waited, SocketAddr, SocketAddr, SocketAddr) {
        let mut cmd = hotline();
        cmd.args(["serve", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            // Calls still up at the end of a test are closed at once (as
            // `shutdown`); every test ends its calls before stopping.
            .args(["--grace-s", "0"])
            .arg("--data")
            .arg(dir.join("data"));
        let config = dir.join("hotline.toml");
        if config.is_file() {
            cmd.arg("--config").arg(config);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("gateway.log"))
            .unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().expect("hotline serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the gateway never blocks on a full pipe.
            for _ in lines {}
        });
        let mut proc = Waited::new(child);
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => {
                proc.terminate(Duration::from_secs(5));
                panic!(
                    "no ready line from hotline serve ({e}); its log:\n{}",
                    std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
                );
            }
        };
        // hotline ready udp:127.0.0.1:5070 tcp:127.0.0.1:5070 http:127.0.0.1:8099
        let addr = |kind: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(kind))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {kind} address in ready line {line:?}"))
        };
        assert!(line.starts_with("hotline ready "), "ready line: {line:?}");
        (proc, addr("udp:"), addr("tcp:"), addr("http:"))
    }

    /// SIGKILL (no chance to flush or close anything) and wait for the exit.
    pub fn kill9(&mut self) {
        signal(self.proc.pid, "KILL");
        assert!(
            self.proc.wait(Duration::from_secs(10)).is_some(),
            "hotline serve survived SIGKILL"
        );
    }

    /// Starts a new process on the same data directory and config, once the
    /// previous one has exited (see `kill9`, `stop`). Addresses change.
    pub fn restart(&mut self) {
        assert!(
            !self.proc.running(),
            "restart: the gateway is still running"
        );
        let (proc, udp, tcp, http) = Gateway::launch(self.dir.path());
        self.proc = proc;
        self.udp = udp;
        self.tcp = tcp;
        self.http = http;
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.proc.running()
    }

    /// The gateway's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// SIGTERM and wait for it to exit; asserts a clean exit (status 0), which
    /// also means the call store was flushed.
    pub fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(20));
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("hotline serve exited with {s}; log:\n{}", self.log()),
            None => panic!(
                "hotline serve ignored SIGTERM for 20 s; log:\n{}",
                self.log()
            ),
        }
    }

    /// `hotline calls --json` over this gateway's data directory, newest first.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        let out = run(hotline()
            .args(["calls", "--json", "--limit", "1000000", "--data"])
            .arg(self.data_dir()));
        let v: serde_json::Value =
            serde_json::from_str(&stdout(&out)).expect("calls --json prints JSON");
        v.as_array().expect("a JSON array of calls").clone()
    }

    /// `hotline calls show ID --json`: one call with its media details.
    pub fn call_show(&self, id: &str) -> serde_json::Value {
        let out = run(hotline()
            .args(["calls", "show", id, "--json", "--data"])
            .arg(self.data_dir()));
        serde_json::from_str(&stdout(&out)).expect("calls show --json prints JSON")
    }

    /// Stops the gateway (flushing the store) and returns its call records.
    pub fn stop_and_calls(&mut self) -> Vec<serde_json::Value> {
        self.stop();
        self.calls()
    }

    /// GET `path` from the HTTP API: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).expect("HTTP API reachable");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("HTTP response");
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Polls /metrics until `name` satisfies `ok` or `within` passes; the last
    /// value seen either way. The API serves a snapshot the SIP task refreshes
    /// (every 200 ms while busy), so a fresh value can take that long to show.
    pub fn wait_metric(
        &self,
        name: &str,
        within: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let v = self.metric(name);
            if v.is_some_and(&ok) || std::time::Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One sample from /metrics (`name` without labels).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(10));
    }
}

/// A port that was free on 127.0.0.1 for both UDP and TCP a moment ago.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One SIPp run: a scenario, its options, and a deadline.
pub struct Sipp {
    scenario: Vec<String>,
    args: Vec<String>,
    timeout: Duration,
    trace_messages: bool,
    /// Symlinks made in SIPp's working directory: (name, target).
    links: Vec<(String, PathBuf)>,
}

/// A SIPp run in the background (`Sipp::spawn`).
pub struct SippChild {
    proc: Waited,
    dir: tempfile::TempDir,
    timeout: Duration,
}

/// What a SIPp run left: its exit code, final statistics and logs.
pub struct SippRun {
    /// 0: every call succeeded; 1: some failed; 97: stopped by command;
    /// 99: no call processed; 255: fatal error; 254: could not bind.
    pub code: i32,
    /// The last line of the `-trace_stat` CSV, by column name.
    pub stats: std::collections::HashMap<String, String>,
    dir: tempfile::TempDir,
}

impl Sipp {
    /// A scenario file of tests/sipp/.
    pub fn scenario(file: &str) -> Sipp {
        let path = repo().join("tests/sipp").join(file);
        assert!(path.is_file(), "no scenario {}", path.display());
        Sipp::new(vec!["-sf".into(), path.to_string_lossy().into_owned()])
    }

    /// One of SIPp's built-in scenarios (`-sn uac`).
    pub fn builtin(name: &str) -> Sipp {
        Sipp::new(vec!["-sn".into(), name.into()])
    }

    fn new(scenario: Vec<String>) -> Sipp {
        Sipp {
            scenario,
            args: Vec::new(),
            timeout: Duration::from_secs(30),
            trace_messages: true,
            links: Vec::new(),
        }
    }

    /// Makes `name` in SIPp's working directory a symlink to `target`, for
    /// paths a scenario names relative to it (`play_pcap_audio` reads its
    /// pcap when the scenario loads, so keywords cannot be used there).
    pub fn link(mut self, name: &str, target: &Path) -> Sipp {
        self.links.push((name.to_string(), target.to_path_buf()));
        self
    }

    pub fn args(mut self, args: &[&str]) -> Sipp {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// SIPp's own -timeout (it fails the run when reached); the process is
    /// killed 30 s after that.
    pub fn timeout(mut self, t: Duration) -> Sipp {
        self.timeout = t;
        self
    }

    /// Log every message (-trace_msg) for failure reports; off for load runs.
    pub fn quiet(mut self) -> Sipp {
        self.trace_messages = false;
        self
    }

    /// Runs SIPp against `target` until it exits. Local SIP and media ports are
    /// picked free; a run that fails to bind (exit 254) is retried on others.
    pub fn run(&self, target: SocketAddr) -> SippRun {
        for _ in 0..5 {
            let run = self.run_once(target);
            if run.code != 254 {
                return run;
            }
        }
        panic!("sipp could not bind its ports five times over");
    }

    fn run_once(&self, target: SocketAddr) -> SippRun {
        self.spawn(target).wait()
    }

    /// Starts SIPp against `target` and returns at once (no retry when its
    /// ports turn out to be taken: check `SippRun::code`).
    pub fn spawn(&self, target: SocketAddr) -> SippChild {
        let dir = tempfile::tempdir().unwrap();
        for (name, to) in &self.links {
            std::os::unix::fs::symlink(to, dir.path().join(name)).unwrap();
        }
        let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let mut cmd = Command::new("sipp");
        cmd.args(&self.scenario)
            .args(["-nostdin", "-i", "127.0.0.1"])
            .args(["-p", &free_port().to_string()])
            .args(["-mp", &free_port().to_string()])
            .args(["-trace_stat", "-stf", &p("stat.csv")])
            .args(["-trace_err", "-error_file", &p("errors.log")])
            .args(["-trace_screen", "-screen_file", &p("screen.log")])
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg("-timeout_error");
        if self.trace_messages {
            cmd.args(["-trace_msg", "-message_file", &p("messages.log")]);
        }
        cmd.args(&self.args)
            .arg(target.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        let child = cmd
            .spawn()
            .expect("sipp runs (Debian package sip-tester; scripts/setup.sh installs it)");
        SippChild {
            proc: Waited::new(child),
            dir,
            timeout: self.timeout,
        }
    }
}

impl SippChild {
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// Stops SIPp (SIGTERM, then SIGKILL), for runs whose outcome does not matter.
    pub fn kill(mut self) {
        self.proc.terminate(Duration::from_secs(5));
    }

    /// Waits for SIPp to exit (its -timeout, plus 30 s) and collects its run.
    pub fn wait(self) -> SippRun {
        let SippChild {
            mut proc,
            dir,
            timeout,
        } = self;
        let status = match proc.wait(timeout + Duration::from_secs(30)) {
            Some(s) => s,
            None => {
                proc.terminate(Duration::from_secs(5));
                panic!(
                    "sipp still running {} s past its -timeout",
                    30 + timeout.as_secs()
                );
            }
        };
        let code = status.code().unwrap_or(-1) & 0xff;
        let mut stats = std::collections::HashMap::new();
        if let Ok(csv) = std::fs::read_to_string(dir.path().join("stat.csv")) {
            let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
            if let (Some(header), Some(last)) =
                (lines.first(), lines.get(1..).and_then(<[_]>::last))
            {
                for (k, v) in header.split(';').zip(last.split(';')) {
                    stats.insert(k.to_string(), v.to_string());
                }
            }
        }
        SippRun { code, stats, dir }
    }
}

impl SippRun {
    /// A cumulative counter from the statistics, e.g. "SuccessfulCall(C)".
    pub fn stat(&self, name: &str) -> u64 {
        self.stats
            .get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no statistic {name}\n{}", self.report()))
    }

    pub fn successful(&self) -> u64 {
        self.stat("SuccessfulCall(C)")
    }

    pub fn failed(&self) -> u64 {
        self.stat("FailedCall(C)")
    }

    pub fn retransmissions(&self) -> u64 {
        self.stat("Retransmissions(C)")
    }

    fn file(&self, name: &str, tail: usize) -> String {
        let text = std::fs::read(self.dir.path().join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let cut = text.len().saturating_sub(tail);
        let cut = (cut..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[cut..].to_string()
    }

    /// Exit code, counters and the ends of SIPp's logs, for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "sipp exit {}; successful {:?} failed {:?} retransmissions {:?}\n\
             --- stderr\n{}\n--- errors.log\n{}\n--- screen\n{}\n--- messages (end)\n{}",
            self.code,
            self.stats.get("SuccessfulCall(C)"),
            self.stats.get("FailedCall(C)"),
            self.stats.get("Retransmissions(C)"),
            self.file("stderr.log", 2_000),
            self.file("errors.log", 6_000),
            self.file("screen.log", 3_000),
            self.file("messages.log", 12_000),
        )
    }

    /// Exit code 0 and exactly `calls` successful calls, none failed.
    pub fn assert_ok(&self, calls: u64, gw: &Gateway) {
        let fine = self.code == 0
            && self.stats.get("SuccessfulCall(C)").map(|s| s.trim()) == Some(&calls.to_string())
            && self.stats.get("FailedCall(C)").map(|s| s.trim()) == Some("0");
        assert!(
            fine,
            "expected sipp exit 0 with {calls} successful calls\n{}\n--- gateway log\n{}",
            self.report(),
            gw.log()
        );
    }
}

/// Fields of a call record as strings ("null" when absent), for compact asserts.
pub fn field(call: &serde_json::Value, name: &str) -> String {
    match &call[name] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
