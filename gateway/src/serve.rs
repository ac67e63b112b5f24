//! `hotline serve`: wires config, transports, the SIP endpoint, the call
//! store and the HTTP API together. The endpoint runs on one task that
//! owns it (no locks); transports and the store run beside it and talk
//! through bounded channels.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::call::{CallEvent, EndReason};
use crate::call_media::MediaPlane;
use crate::config::{Config, DigestAlgorithm};
use crate::sdp::LocalMedia;
use crate::sip::auth::Algorithm;
use crate::sip::endpoint::{AuthSettings, Endpoint, EndpointConfig, Event, Output, Stats};
use crate::sip::transaction::Timers;
use crate::store::{self, Store, StoreError};
use crate::transcript::Transcriber;
use crate::transport::{Inbound, TransportConfig, Transports};

/// Live segments buffered per `/api/live` client before it is told it lagged.
const LIVE_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("call store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("call store writer failed: {0}")]
    Writer(String),
    #[error("cannot start the media plane: {0}")]
    Media(std::io::Error),
    #[error("live transcripts: {0} (or set [asr] enabled = false)")]
    Asr(#[from] crate::transcript::TranscriberError),
}

pub fn endpoint_config(cfg: &Config) -> EndpointConfig {
    let sip = &cfg.sip;
    EndpointConfig {
        timers: Timers {
            t1: Duration::from_millis(sip.t1_ms),
            t2: Duration::from_millis(sip.t2_ms),
            t4: Duration::from_millis(sip.t4_ms),
        },
        max_calls: sip.max_calls,
        retry_after_s: sip.retry_after_s,
        allow: sip
            .allow
            .iter()
            .map(|n| (n.network(), n.prefix_len()))
            .collect(),
        auth: sip.auth.as_ref().map(|a| AuthSettings {
            realm: a.realm.clone(),
            algorithms: a
                .algorithms
                .iter()
                .map(|a| match a {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                })
                .collect(),
            users: a.users.clone().into_iter().collect(),
        }),
        answer_delay: Duration::from_millis(sip.answer_delay_ms),
        max_call: (sip.max_call_s > 0).then(|| Duration::from_secs(sip.max_call_s)),
        session_expires: sip.session_expires_s,
        min_se: sip.min_se_s,
        user_agent: sip.user_agent.clone(),
        public_host: sip.public_host.clone(),
        ..EndpointConfig::default()
    }
}

/// What the HTTP API shows about the SIP side, refreshed by the endpoint task.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    pub active_calls: usize,
    pub transactions: usize,
    pub draining: bool,
    /// Calls with media reserved or running, and RTP port pairs bound.
    pub media_calls: usize,
    pub rtp_ports: usize,
    /// The whisper pool's queue, when live transcripts are on.
    pub asr: Option<hotline_asr::pool::Stats>,
}

fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}

/// Runs until `shutdown` resolves, then hangs up every call, waits up to
/// `grace` for the BYEs to complete and flushes the store.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> Result<(), ServeError> {
    let mut store = Store::open(&cfg.data_dir)?;
    let closed = store.close_open_calls(SystemTime::now(), &EndReason::Crash)?;
    if closed > 0 {
        tracing::warn!(
            closed,
            "calls left open by a previous run were closed as `crash`"
        );
    }
    let (event_tx, event_rx) = mpsc::channel::<CallEvent>(16 * 1024);
    let writer = store::spawn_writer(store, event_rx);

    let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(8 * 1024);
    let tcfg = TransportConfig {
        listen: cfg.sip.listen.clone(),
        udp: cfg.sip.udp,
        tcp: cfg.sip.tcp,
        tcp_idle: Duration::from_secs(cfg.sip.tcp_idle_s),
        max_tcp_connections: cfg.sip.max_tcp_connections,
    };
    let mut transports =
        Transports::bind(tcfg, in_tx)
            .await
            .map_err(|source| ServeError::Bind {
                addr: format!("{:?}", cfg.sip.listen),
                source,
            })?;
    let tstats = transports.stats.clone();
    let mut ready = Vec::new();
    for (t, addr) in &transports.bound {
        ready.push(format!("{}:{addr}", t.as_str()));
    }

    let (live_tx, _) = tokio::sync::broadcast::channel(LIVE_QUEUE);
    // The model loads before we listen for HTTP or say we are ready.
    let transcriber = if cfg.asr.enabled {
        Some(Transcriber::start(
            &cfg.asr,
            event_tx.clone(),
            live_tx.clone(),
        )?)
    } else {
        None
    };
    let asr_stats = transcriber.as_ref().map(|t| t.stats.clone());
    let media_counters = Arc::new(crate::call_media::MediaCounters::default());
    let (snap_tx, snap_rx) = watch::channel(Snapshot::default());
    if let Some(addr) = cfg.http.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        ready.push(format!("http:{local}"));
        let app = crate::api::router(crate::api::ApiState {
            data_dir: cfg.data_dir.clone(),
            snapshot: snap_rx,
            transport: tstats.clone(),
            live: live_tx.clone(),
            asr: asr_stats,
            media: media_counters.clone(),
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
    }
    // Recordings left open by a crash are repaired before we say we are ready.
    let (mut media, mut notes) =
        MediaPlane::new(&cfg, event_tx.clone(), transcriber, media_counters)
            .map_err(ServeError::Media)?;
    // One line on stdout that scripts and tests wait for.
    println!("hotline ready {}", ready.join(" "));
    tracing::info!(listen = %ready.join(" "), data = %cfg.data_dir.display(), "hotline serving");

    let start = Instant::now();
    let mut ep = Endpoint::new(endpoint_config(&cfg), start, SystemTime::now(), os_seed());
    let session_base = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut session_serial = 0u64;
    let mut drain_until: Option<Instant> = None;
    let mut last_snapshot = start;
    tokio::pin!(shutdown);

    loop {
        let wake = ep.poll_timeout();
        tokio::select! {
            biased;
            _ = &mut shutdown, if drain_until.is_none() => {
                tracing::info!(calls = ep.active_calls(), "shutting down: hanging up calls");
                let now = Instant::now();
                ep.shutdown(now);
                drain_until = Some(now + grace);
            }
            msg = in_rx.recv() => {
                let Some(msg) = msg else { break };
                let now = Instant::now();
                if let Some((flow, bytes)) = transports.on_inbound(msg) {
                    ep.handle_datagram(flow, &bytes, now);
                }
                // Take whatever else is queued before flushing outputs.
                for _ in 0..256 {
                    let Ok(msg) = in_rx.try_recv() else { break };
                    if let Some((flow, bytes)) = transports.on_inbound(msg) {
                        ep.handle_datagram(flow, &bytes, now);
                    }
                }
            }
            _ = sleep_until(wake) => {
                ep.handle_timeout(Instant::now());
            }
            // Keeps /metrics and /healthz current when no SIP traffic moves.
            _ = tokio::time::sleep_until((last_snapshot + Duration::from_millis(500)).into()) => {}
            note = notes.recv() => {
                if let Some(id) = note.and_then(|n| media.on_note(n)) {
                    tracing::info!(call = %id, "no RTP: hanging up");
                    ep.end_call_with(&id, EndReason::RtpTimeout, Instant::now());
                }
            }
            _ = sleep_until(drain_until) => {}
        }
        let now = Instant::now();
        while let Some(out) = ep.poll_output() {
            let ev = match out {
                Output::Transmit { flow, bytes } => {
                    transports.send(flow, bytes);
                    continue;
                }
                Output::Event(ev) => *ev,
            };
            match ev {
                Event::Call(ev) => {
                    match &ev {
                        CallEvent::Answered { id, .. } => media.answered(id),
                        CallEvent::Ended { id, .. } => media.ended(id),
                        _ => {}
                    }
                    // Back-pressure, never loss: if the store falls behind,
                    // SIP waits (and the PBX retransmits) rather than calls
                    // going unrecorded.
                    if event_tx.send(ev).await.is_err() {
                        tracing::error!("call store writer is gone");
                    }
                }
                Event::Incoming { id, local_ip, .. } => match media.incoming(&id, local_ip) {
                    Some(port) => {
                        session_serial += 1;
                        let local =
                            LocalMedia::new(local_ip, port, session_base + session_serial, 1);
                        ep.accept(&id, local, now);
                    }
                    None => {
                        tracing::warn!(call = %id, "no free RTP port: rejecting");
                        ep.reject(&id, 503, now);
                    }
                },
                Event::Media { id, answer } => {
                    let codec = answer.codec.name.encoding_name().to_string();
                    let remote_rtp = answer.remote_rtp;
                    media.negotiated(&id, answer);
                    let ev = CallEvent::Media {
                        id,
                        codec,
                        remote_rtp,
                    };
                    if event_tx.send(ev).await.is_err() {
                        tracing::error!("call store writer is gone");
                    }
                }
                Event::Dtmf {
                    id,
                    digit,
                    duration_ms,
                } => {
                    media.info_digit(&id, digit, duration_ms);
                }
            }
        }
        if now.duration_since(last_snapshot) >= Duration::from_millis(200) {
            last_snapshot = now;
            let _ = snap_tx.send(Snapshot {
                stats: ep.stats().clone(),
                active_calls: ep.active_calls(),
                transactions: ep.transactions(),
                draining: drain_until.is_some(),
                media_calls: media.calls(),
                rtp_ports: media.ports_in_use(),
                asr: media.asr_stats(),
            });
        }
        if let Some(until) = drain_until {
            if ep.active_calls() == 0 && ep.client_transactions() == 0 || now >= until {
                break;
            }
        }
    }
    tracing::info!(stats = ?ep.stats(), "endpoint stopped; finishing media and the call store");
    media.shutdown(&mut notes, Duration::from_secs(2)).await;
    drop(event_tx);
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(ServeError::Writer(e.to_string())),
        Ok(Err(_)) | Err(_) => Err(ServeError::Writer("writer thread panicked".into())),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
