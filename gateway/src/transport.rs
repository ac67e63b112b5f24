//! SIP transports (RFC 3261 18): UDP sockets and TCP listeners/connections
//! on tokio. They only move bytes: every message goes to the endpoint task
//! as `Inbound::Message`, and the endpoint's `Output::Transmit` comes back
//! through `Transports::send`. TLS would be one more connection kind here.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::call::Transport;
use crate::sip::endpoint::Flow;
use crate::sip::{parse_stream, ParseError, MAX_MESSAGE};

/// What the transports hand to the endpoint task.
#[derive(Debug)]
pub enum Inbound {
    /// One datagram, or one framed message from a stream.
    Message {
        flow: Flow,
        bytes: Vec<u8>,
    },
    TcpOpened {
        flow: Flow,
        writer: mpsc::Sender<Vec<u8>>,
    },
    TcpClosed {
        flow: Flow,
    },
}

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub listen: Vec<SocketAddr>,
    pub udp: bool,
    pub tcp: bool,
    pub tcp_idle: Duration,
    pub max_tcp_connections: usize,
}

/// Counters the endpoint cannot see (bytes that never became messages).
#[derive(Debug, Default)]
pub struct TransportStats {
    pub udp_send_errors: AtomicU64,
    pub tcp_refused: AtomicU64,
    pub tcp_framing_errors: AtomicU64,
    pub tcp_send_dropped: AtomicU64,
    pub tcp_open: AtomicUsize,
}

pub struct Transports {
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Any UDP socket, for flows whose local address we did not bind
    /// exactly (e.g. a wildcard): keyed by port and family.
    tcp: HashMap<Flow, mpsc::Sender<Vec<u8>>>,
    tcp_by_remote: HashMap<SocketAddr, Flow>,
    inbound: mpsc::Sender<Inbound>,
    cfg: TransportConfig,
    pub stats: Arc<TransportStats>,
    /// The addresses actually bound (port 0 resolved), per transport.
    pub bound: Vec<(Transport, SocketAddr)>,
}

/// Each connection's outbound queue: enough for a burst of responses,
/// small enough that a stalled peer cannot hold much memory.
const TCP_QUEUE: usize = 256;

impl Transports {
    pub async fn bind(cfg: TransportConfig, inbound: mpsc::Sender<Inbound>) -> io::Result<Self> {
        let stats = Arc::new(TransportStats::default());
        let mut udp = HashMap::new();
        let mut bound = Vec::new();
        for addr in &cfg.listen {
            let mut addr = *addr;
            if cfg.udp {
                let sock = bind_udp(addr)?;
                let local = sock.local_addr()?;
                // UDP and TCP share the port when it was 0 (tests).
                addr = local;
                let sock = Arc::new(sock);
                udp.insert(local, sock.clone());
                bound.push((Transport::Udp, local));
                tokio::spawn(udp_reader(sock, local, inbound.clone()));
            }
            if cfg.tcp {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                bound.push((Transport::Tcp, local));
                tokio::spawn(tcp_acceptor(
                    listener,
                    inbound.clone(),
                    cfg.clone(),
                    stats.clone(),
                ));
            }
        }
        Ok(Transports {
            udp,
            tcp: HashMap::new(),
            tcp_by_remote: HashMap::new(),
            inbound,
            cfg,
            stats,
            bound,
        })
    }

    /// Bookkeeping for TCP connections; returns the message to process.
    pub fn on_inbound(&mut self, ev: Inbound) -> Option<(Flow, Vec<u8>)> {
        match ev {
            Inbound::Message { flow, bytes } => Some((flow, bytes)),
            Inbound::TcpOpened { flow, writer } => {
                self.tcp.insert(flow, writer);
                self.tcp_by_remote.insert(flow.remote, flow);
                None
            }
            Inbound::TcpClosed { flow } => {
                self.tcp.remove(&flow);
                if self.tcp_by_remote.get(&flow.remote) == Some(&flow) {
                    self.tcp_by_remote.remove(&flow.remote);
                }
                None
            }
        }
    }

    pub fn send(&mut self, flow: Flow, bytes: Vec<u8>) {
        match flow.transport {
            Transport::Udp => {
                let sock = self.udp.get(&flow.local).or_else(|| {
                    self.udp
                        .iter()
                        .find(|(a, _)| {
                            a.port() == flow.local.port() && a.is_ipv4() == flow.remote.is_ipv4()
                        })
                        .map(|(_, s)| s)
                });
                let Some(sock) = sock else {
                    self.stats.udp_send_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                // Never await on the endpoint task: a full socket buffer
                // drops this datagram and SIP retransmission recovers it.
                if sock.try_send_to(&bytes, flow.remote).is_err() {
                    self.stats.udp_send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Transport::Tcp => {
                let writer = self.tcp.get(&flow).or_else(|| {
                    self.tcp_by_remote
                        .get(&flow.remote)
                        .and_then(|f| self.tcp.get(f))
                });
                match writer {
                    Some(w) => {
                        if w.try_send(bytes).is_err() {
                            self.stats.tcp_send_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        // The connection is gone (RFC 3261 18.2.2: open a
                        // new one to the source address).
                        tokio::spawn(tcp_connect(
                            flow.remote,
                            bytes,
                            self.inbound.clone(),
                            self.cfg.clone(),
                            self.stats.clone(),
                        ));
                    }
                }
            }
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let std = std::net::UdpSocket::bind(addr)?;
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}

async fn udp_reader(sock: Arc<UdpSocket>, local: SocketAddr, inbound: mpsc::Sender<Inbound>) {
    // One byte over the limit so an oversized datagram is seen as such.
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                let Some(data) = buf.get(..n) else {
                    continue;
                };
                let flow = Flow {
                    transport: Transport::Udp,
                    local,
                    remote,
                };
                let msg = Inbound::Message {
                    flow,
                    bytes: data.to_vec(),
                };
                if inbound.send(msg).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable from an earlier send surfaces here on
            // some platforms; it says nothing about this socket.
            Err(e) => tracing::debug!(%local, error = %e, "udp recv"),
        }
    }
}

async fn tcp_acceptor(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    cfg: TransportConfig,
    stats: Arc<TransportStats>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if stats.tcp_open.load(Ordering::Relaxed) >= cfg.max_tcp_connections {
            stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        tokio::spawn(tcp_connection(
            stream,
            None,
            inbound.clone(),
            cfg.clone(),
            stats.clone(),
        ));
    }
}

async fn tcp_connect(
    remote: SocketAddr,
    first: Vec<u8>,
    inbound: mpsc::Sender<Inbound>,
    cfg: TransportConfig,
    stats: Arc<TransportStats>,
) {
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(remote)).await;
    match connect {
        Ok(Ok(stream)) => tcp_connection(stream, Some(first), inbound, cfg, stats).await,
        _ => {
            stats.tcp_send_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, "tcp connect failed");
        }
    }
}

async fn tcp_connection(
    stream: TcpStream,
    first: Option<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
    cfg: TransportConfig,
    stats: Arc<TransportStats>,
) {
    let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let flow = Flow {
        transport: Transport::Tcp,
        local,
        remote,
    };
    stats.tcp_open.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    if let Some(first) = first {
        let _ = tx.try_send(first);
    }
    let opened = Inbound::TcpOpened {
        flow,
        writer: tx.clone(),
    };
    if inbound.send(opened).await.is_err() {
        stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let (mut rd, mut wr) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(bytes) = out else { break };
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            read = tokio::time::timeout(cfg.tcp_idle, rd.read(&mut chunk)) => {
                let n = match read {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::debug!(%remote, "closing idle tcp connection");
                        break;
                    }
                    Ok(Ok(n)) => n,
                };
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                match frame(&mut buf, &tx, flow, &inbound, &stats).await {
                    Ok(()) => {}
                    Err(()) => break,
                }
            }
        }
    }
    stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
    let _ = inbound.send(Inbound::TcpClosed { flow }).await;
}

/// Cuts complete messages off the front of `buf`. `Err` means the stream
/// cannot be resynchronised and the connection must close.
async fn frame(
    buf: &mut Vec<u8>,
    tx: &mpsc::Sender<Vec<u8>>,
    flow: Flow,
    inbound: &mpsc::Sender<Inbound>,
    stats: &TransportStats,
) -> Result<(), ()> {
    loop {
        // RFC 5626 keep-alive: answer a double CRLF ping with a single CRLF pong.
        while buf.starts_with(b"\r\n\r\n") {
            let _ = tx.try_send(b"\r\n".to_vec());
            buf.drain(..4);
        }
        match parse_stream(buf) {
            Ok(None) => return Ok(()),
            Ok(Some((_, used))) => {
                let bytes: Vec<u8> = buf.drain(..used.min(buf.len())).collect();
                inbound
                    .send(Inbound::Message { flow, bytes })
                    .await
                    .map_err(|_| ())?;
            }
            Err(e) => {
                stats.tcp_framing_errors.fetch_add(1, Ordering::Relaxed);
                // Let the endpoint answer 400 if the head is readable,
                // then drop the connection: framing is lost.
                if !matches!(e, ParseError::TooLarge) {
                    let bytes = std::mem::take(buf);
                    let _ = inbound.send(Inbound::Message { flow, bytes }).await;
                }
                return Err(());
            }
        }
    }
}
