//! `hotline serve`: run the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hotline_gateway::config::Config;

#[derive(Args)]
pub struct ServeArgs {
    /// Config file (TOML; see systemd/hotline.toml). Without it, built-in defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// SIP listen address (UDP and TCP), replacing the config's list. Repeat for IPv4 + IPv6.
    #[arg(long, value_name = "ADDR:PORT")]
    sip: Vec<SocketAddr>,
    /// HTTP API address, or `off`.
    #[arg(long, value_name = "ADDR:PORT|off")]
    http: Option<String>,
    /// Data directory (call store), replacing the config's `data_dir`.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// How long to wait for calls to hang up cleanly on SIGTERM/SIGINT.
    #[arg(long, default_value_t = 5)]
    grace_s: u64,
}

pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(args.config.as_ref())?;
    if !args.sip.is_empty() {
        cfg.sip.listen = args.sip.clone();
    }
    if let Some(h) = &args.http {
        cfg.http.listen = if h == "off" {
            None
        } else {
            Some(
                h.parse()
                    .with_context(|| format!("--http {h}: not ADDR:PORT or off"))?,
            )
        };
    }
    if let Some(d) = &args.data {
        cfg.data_dir = d.clone();
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hotline")
        .build()
        .context("starting the async runtime")?;
    let grace = Duration::from_secs(args.grace_s);
    rt.block_on(async move { hotline_gateway::serve::run(cfg, stop_signal(), grace).await })?;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd stop).
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
