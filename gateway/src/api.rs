//! The HTTP API (axum): health for load balancers and systemd, metrics,
//! the call records and the live transcript feed. The QA page joins it later.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::serve::Snapshot;
use crate::store::Store;
use crate::transcript::{LiveSegment, TranscriptStats};
use crate::transport::TransportStats;

#[derive(Clone)]
pub struct ApiState {
    pub data_dir: PathBuf,
    pub snapshot: watch::Receiver<Snapshot>,
    pub transport: Arc<TransportStats>,
    pub live: broadcast::Sender<LiveSegment>,
    pub asr: Option<Arc<TranscriptStats>>,
    pub media: Arc<crate::call_media::MediaCounters>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}", get(show_call))
        .route("/api/live", get(live))
        .with_state(state)
}

async fn health(State(s): State<ApiState>) -> Response {
    let snap = s.snapshot.borrow().clone();
    let body = serde_json::json!({
        "status": if snap.draining { "draining" } else { "ok" },
        "active_calls": snap.active_calls,
        "transactions": snap.transactions,
    });
    let code = if snap.draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// Prometheus text format.
async fn metrics(State(s): State<ApiState>) -> String {
    let snap = s.snapshot.borrow().clone();
    let st = &snap.stats;
    let t = &s.transport;
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, v: u64| {
        let _ = writeln!(out, "# TYPE hotline_{name} {kind}\nhotline_{name} {v}");
    };
    line("active_calls", "gauge", snap.active_calls as u64);
    line("sip_transactions", "gauge", snap.transactions as u64);
    line("media_calls", "gauge", snap.media_calls as u64);
    line("rtp_port_pairs_in_use", "gauge", snap.rtp_ports as u64);
    line("sip_rx_messages_total", "counter", st.rx_messages);
    line(
        "sip_rx_malformed_answered_total",
        "counter",
        st.rx_malformed_answered,
    );
    line(
        "sip_rx_malformed_dropped_total",
        "counter",
        st.rx_malformed_dropped,
    );
    line(
        "sip_rx_retransmissions_total",
        "counter",
        st.rx_retransmissions,
    );
    line(
        "sip_tx_retransmissions_total",
        "counter",
        st.tx_retransmissions,
    );
    line("sip_rx_unmatched_ack_total", "counter", st.rx_unmatched_ack);
    line(
        "sip_rx_unmatched_response_total",
        "counter",
        st.rx_unmatched_response,
    );
    line("sip_dropped_overload_total", "counter", st.dropped_overload);
    line(
        "sip_rejected_forbidden_total",
        "counter",
        st.rejected_forbidden,
    );
    line("sip_auth_challenges_total", "counter", st.auth_challenges);
    line("calls_started_total", "counter", st.calls_started);
    line("calls_answered_total", "counter", st.calls_answered);
    line("calls_busy_total", "counter", st.calls_busy);
    line(
        "udp_send_errors_total",
        "counter",
        t.udp_send_errors.load(Ordering::Relaxed),
    );
    line(
        "tcp_refused_total",
        "counter",
        t.tcp_refused.load(Ordering::Relaxed),
    );
    line(
        "tcp_framing_errors_total",
        "counter",
        t.tcp_framing_errors.load(Ordering::Relaxed),
    );
    line(
        "tcp_send_dropped_total",
        "counter",
        t.tcp_send_dropped.load(Ordering::Relaxed),
    );
    line(
        "tcp_connections",
        "gauge",
        t.tcp_open.load(Ordering::Relaxed) as u64,
    );
    let m = &s.media;
    for (name, c) in [
        ("rtp_rx_packets_total", &m.rx_packets),
        ("rtp_tx_packets_total", &m.tx_packets),
        ("rtp_lost_total", &m.lost),
        ("rtp_late_total", &m.late),
        ("rtp_duplicate_total", &m.duplicate),
        ("rtp_rejected_total", &m.rejected),
        ("rtp_send_errors_total", &m.send_errors),
        ("rtcp_received_total", &m.rtcp_received),
        ("rtcp_peer_reported_lost_total", &m.peer_lost),
    ] {
        line(name, "counter", c.load(Ordering::Relaxed));
    }
    if let Some(q) = &snap.asr {
        line("asr_jobs_queued_total", "counter", q.queued);
        line("asr_jobs_done_total", "counter", q.done);
        line("asr_partials_shed_total", "counter", q.partials_shed);
        line("asr_finals_dropped_total", "counter", q.finals_dropped);
        line("asr_speculative_hits_total", "counter", q.speculative_hits);
        line("asr_speculative_shed_total", "counter", q.speculative_shed);
        line(
            "asr_speculative_wasted_total",
            "counter",
            q.speculative_wasted,
        );
        line("asr_queued_finals", "gauge", q.queued_finals as u64);
        line("asr_queued_partials", "gauge", q.queued_partials as u64);
    }
    if let Some(a) = &s.asr {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        line("asr_finals_stored_total", "counter", n(&a.finals_stored));
        line("asr_finals_empty_total", "counter", n(&a.finals_empty));
        line(
            "asr_partials_published_total",
            "counter",
            n(&a.partials_published),
        );
        line("asr_partials_stale_total", "counter", n(&a.partials_stale));
        line("asr_decode_errors_total", "counter", n(&a.decode_errors));
        line(
            "asr_final_latency_ms_sum",
            "counter",
            n(&a.final_latency_ms_sum),
        );
    }
    out
}

/// Partial and final segments of every call as they are decoded: JSON lines
/// (`application/x-ndjson`), or Server-Sent Events when the client accepts
/// `text/event-stream` (a browser's EventSource). A client too slow for the
/// feed gets `{"kind":"lagged","missed":N}` and continues from the present.
async fn live(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let sse = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    let rx = s.live.subscribe();
    let frames = futures_util::stream::unfold(rx, move |mut rx| async move {
        let line = match rx.recv().await {
            Ok(seg) => serde_json::to_string(&seg).ok()?,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                serde_json::json!({ "kind": "lagged", "missed": missed }).to_string()
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let frame = if sse {
            format!("data: {line}\n\n")
        } else {
            format!("{line}\n")
        };
        Some((Ok::<_, std::convert::Infallible>(frame), rx))
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

fn store_error(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn list_calls(State(s): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(1000);
    let dir = s.data_dir.clone();
    let res = tokio::task::spawn_blocking(move || match Store::open_existing(&dir)? {
        Some(store) => store.list_calls(limit),
        None => Ok(Vec::new()),
    })
    .await;
    match res {
        Ok(Ok(calls)) => Json(calls).into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => store_error(e),
    }
}

async fn show_call(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let dir = s.data_dir.clone();
    let res = tokio::task::spawn_blocking(move || match Store::open_existing(&dir)? {
        Some(store) => store.get_call(&id),
        None => Ok(None),
    })
    .await;
    match res {
        Ok(Ok(Some(call))) => Json(call).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such call").into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => store_error(e),
    }
}
