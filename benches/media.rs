//! Media plane cost per call-second: prompt playback (`Player::poll`, 50 frames), recording
//! straight through a `Recorder` (100 pushes + one header flush), and the production shape:
//! 500 calls recording through one `RecorderPool` writer thread, with process and writer
//! thread CPU time read from /proc. `cargo bench --bench media`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hotline_gateway::media::{
    Channel, Pcm, PlayOptions, Player, PlayerConfig, Recorder, RecorderConfig, RecorderPool,
};

fn bench_dir() -> tempfile::TempDir {
    // On the disk the gateway would write to, not a tmpfs.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&base).expect("target dir");
    tempfile::tempdir_in(base).expect("bench dir")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Elements(1)); // one call-second
    g.measurement_time(Duration::from_secs(4));

    let prompt: Pcm = (0..8000 * 60)
        .map(|i| (i % 2000) as i16)
        .collect::<Vec<_>>()
        .into();
    let t0 = Instant::now();
    let mut p = Player::new(PlayerConfig::default(), 7, t0).expect("valid ptime");
    let mut slot = 0u64;
    g.bench_function("player_call_second", |b| {
        b.iter(|| {
            if !p.is_playing() {
                p.play(prompt.clone(), PlayOptions { barge_in: true });
            }
            let mut acc = 0i64;
            for _ in 0..50 {
                let now = t0 + Duration::from_millis(20 * slot);
                slot += 1;
                while let Some(f) = p.poll(now) {
                    acc += f.pcm[80] as i64 + f.seq as i64;
                }
            }
            while p.poll_event().is_some() {}
            black_box(acc)
        })
    });

    let dir = bench_dir();
    // CPU cost only: the fsync at finish is I/O wait (pool_load below includes it).
    let cfg = RecorderConfig {
        sync_on_finish: false,
        ..RecorderConfig::default()
    };
    let frame = [1000i16; 160];
    g.bench_function("recorder_call_second", |b| {
        // 3-minute calls: create, 180 s of audio with a flush per second, finish.
        let mut n = 0u64;
        let mut rec: Option<(Recorder, PathBuf)> = None;
        b.iter(|| {
            let sec = n % 180;
            if sec == 0 {
                if let Some((r, path)) = rec.take() {
                    r.finish().expect("finish");
                    let _ = std::fs::remove_file(path);
                }
                let path = dir.path().join(format!("{n}.wav"));
                rec = Some((Recorder::create(&path, &cfg).expect("create"), path));
            }
            if let Some((r, _)) = rec.as_mut() {
                for k in 0..50 {
                    let at = sec * 8000 + k * 160;
                    r.push(Channel::Left, at, &frame).expect("push");
                    r.push(Channel::Right, at, &frame).expect("push");
                }
                r.flush().expect("flush");
            }
            n += 1;
        });
        if let Some((r, path)) = rec.take() {
            r.finish().expect("finish");
            let _ = std::fs::remove_file(path);
        }
    });
    g.finish();
}

/// utime + stime in seconds from a /proc stat line (clock ticks at the usual 100 Hz).
fn cpu_seconds(stat: &str) -> f64 {
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn process_cpu() -> f64 {
    cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

fn thread_cpu(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| cpu_seconds(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
        .sum()
}

/// 500 calls × 20 s through one writer thread, paced a simulated second at a time (the
/// writer drains each second before the next is pushed, as in real time).
fn pool_load() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let name = "media/pool_500_calls";
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    let (calls, secs) = (500u64, 20u64);
    let dir = bench_dir();
    let pool = RecorderPool::spawn(RecorderConfig::default()).expect("writer thread");
    let mut handles: Vec<_> = (0..calls)
        .map(|i| pool.open(dir.path().join(format!("c{i}.wav"))))
        .collect();
    let frame = [1000i16; 160];
    let cpu0 = process_cpu();
    let writer0 = thread_cpu("recorder");
    let wall0 = Instant::now();
    let mut worst_drain = Duration::ZERO;
    for s in 0..secs {
        for k in 0..50 {
            let at = s * 8000 + k * 160;
            for h in handles.iter_mut() {
                h.push(Channel::Left, at, &frame);
                h.push(Channel::Right, at, &frame);
            }
        }
        let t = Instant::now();
        while pool.stats().queued_samples > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        worst_drain = worst_drain.max(t.elapsed());
    }
    let finishing: Vec<_> = handles.drain(..).map(|h| h.finish()).collect();
    let mut bytes = 0u64;
    for rx in finishing {
        let s = rx.blocking_recv().expect("writer").expect("recording");
        bytes += std::fs::metadata(&s.path).map_or(0, |m| m.len());
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu0;
    let writer = thread_cpu("recorder") - writer0;
    let st = pool.stats();
    pool.shutdown();
    let call_secs = (calls * secs) as f64;
    println!(
        "{name}: {calls} calls x {secs} s ({:.0} MB): wall {wall:.2} s, process CPU {cpu:.2} s \
         (writer thread {writer:.2} s) = {:.1} us CPU per call-second, {:.3}% of a core per \
         call; slowest drain of one second of 500 calls {:.1} ms; dropped {} samples, {} errors",
        bytes as f64 / 1e6,
        cpu / call_secs * 1e6,
        cpu / call_secs * 100.0,
        worst_drain.as_secs_f64() * 1e3,
        st.dropped_samples,
        st.errors,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches, pool_load);
