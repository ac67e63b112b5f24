use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use hotline_gateway::config::Config;
use hotline_gateway::store::{CallRecord, Store, DB_FILE};

#[derive(Args)]
pub struct CallsArgs {
    #[command(subcommand)]
    command: Option<CallsCommand>,
    /// Data directory holding hotline.db (overrides the config's data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Gateway config file, for its data_dir.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Show at most this many calls, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Subcommand)]
enum CallsCommand {
    /// Show one call in full.
    Show {
        /// Call id, or a unique prefix of it (at least 8 characters).
        id: String,
    },
}

pub fn run(args: CallsArgs) -> anyhow::Result<()> {
    let data_dir = data_dir(args.data.as_deref(), args.config.as_deref())?;
    // Reading must not create a database (or a data directory) as a side effect.
    let store = Store::open_existing(&data_dir)
        .with_context(|| format!("opening the call store in {}", data_dir.display()))?;
    match args.command {
        None => {
            let calls = match &store {
                Some(s) => s.list_calls(args.limit)?,
                None => Vec::new(),
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&calls)?);
            } else if calls.is_empty() {
                println!("no calls");
            } else {
                print!("{}", table(&calls));
            }
        }
        Some(CallsCommand::Show { id }) => {
            let call = match &store {
                Some(s) => s.get_call(&id)?,
                None => None,
            };
            let Some(call) = call else {
                anyhow::bail!(
                    "no call with id {id} in {}",
                    data_dir.join(DB_FILE).display()
                );
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&call)?);
            } else {
                print!("{}", details(&call));
            }
        }
    }
    Ok(())
}

fn data_dir(data: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = data {
        // Still load the config when given, so a broken file is reported rather than
        // silently ignored.
        if let Some(path) = config {
            Config::load(path)?;
        }
        return Ok(dir.to_path_buf());
    }
    Ok(match config {
        Some(path) => Config::load(path)?.data_dir,
        None => Config::default().data_dir,
    })
}

/// The caller's number (or whatever the From URI's user part is): what QA staff scan
/// the list for. The full header is in `calls show`.
fn caller(from: &str) -> &str {
    let uri = match (from.find('<'), from.find('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.split(';').next().unwrap_or(from),
    };
    let uri = uri.trim();
    let rest = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|scheme| {
            uri.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &uri[scheme.len()..])
        })
        .unwrap_or(uri);
    let rest = rest.split(['?', ';']).next().unwrap_or(rest);
    match rest.split_once('@') {
        Some((user, _)) if !user.is_empty() => user,
        _ => rest,
    }
}

fn duration(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `2025-03-01 08:30:00` (UTC) from the RFC 3339 form.
fn short_time(t: impl ToString) -> String {
    let t = t.to_string();
    t.get(..19).unwrap_or(&t).replacen('T', " ", 1)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

fn table(calls: &[CallRecord]) -> String {
    let header = [
        "ID",
        "STARTED (UTC)",
        "FROM",
        "TO",
        "DURATION",
        "END REASON",
    ];
    let rows: Vec<[String; 6]> = calls
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                short_time(c.invite_at),
                truncate(caller(&c.from), 24),
                truncate(&c.to, 24),
                c.duration_ms.map_or_else(|| "-".to_string(), duration),
                c.end_reason
                    .clone()
                    .unwrap_or_else(|| "(in progress)".to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                l.push_str(cell);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn details(c: &CallRecord) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let fields = [
        ("id", c.id.clone()),
        ("sip_call_id", c.sip_call_id.clone()),
        ("from", c.from.clone()),
        ("to", c.to.clone()),
        ("source", c.source.clone()),
        ("transport", c.transport.clone()),
        ("invite_at", c.invite_at.to_string()),
        ("answered_at", opt(c.answered_at.map(|t| t.to_string()))),
        ("ended_at", opt(c.ended_at.map(|t| t.to_string()))),
        ("end_reason", opt(c.end_reason.clone())),
        ("status", opt(c.status.map(|s| s.to_string()))),
        (
            "duration",
            opt(c
                .duration_ms
                .map(|ms| format!("{} ({ms} ms)", duration(ms)))),
        ),
        ("codec", opt(c.codec.clone())),
        ("remote_rtp", opt(c.remote_rtp.clone())),
        ("recording", opt(c.recording.clone())),
        (
            "rtp",
            opt(c.rtp.as_ref().map(|r| {
                let mut line = format!(
                    "rx {} tx {} lost {} late {} dup {} jitter {:.1} ms rejected {}",
                    r.rx_packets,
                    r.tx_packets,
                    r.lost,
                    r.late,
                    r.duplicate,
                    r.jitter_ms,
                    r.rejected
                );
                if let (Some(lost), Some(jitter)) = (r.peer_lost, r.peer_jitter_ms) {
                    line.push_str(&format!("; peer RTCP: lost {lost} jitter {jitter:.1} ms"));
                    if let Some(rtt) = r.rtt_ms {
                        line.push_str(&format!(" rtt {rtt:.1} ms"));
                    }
                }
                line
            })),
        ),
        (
            "digits",
            if c.digits.is_empty() {
                "-".to_string()
            } else {
                c.digits
                    .iter()
                    .map(|d| format!("{}@{}ms/{}", d.key, d.at_ms, d.source))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        ),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out: String = fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect();
    if c.segments.is_empty() {
        out.push_str(&format!("{:<width$} -\n", "transcript:"));
    } else {
        out.push_str("transcript:\n");
        for s in &c.segments {
            out.push_str(&format!(
                "  [{} - {}] {:<7} {}\n",
                clock(s.start_ms),
                clock(s.end_ms),
                s.channel,
                s.text
            ));
        }
    }
    out
}

/// `m:ss.t` from milliseconds.
fn clock(ms: i64) -> String {
    let ms = ms.max(0);
    format!("{}:{:02}.{}", ms / 60_000, ms / 1000 % 60, ms / 100 % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_the_from_user() {
        assert_eq!(
            caller("\"Zhang San\" <sip:13800138000@10.0.0.1:5060>;tag=abc"),
            "13800138000"
        );
        assert_eq!(caller("sip:0101234567@pbx;tag=1"), "0101234567");
        assert_eq!(caller("<tel:+8613800138000>;tag=1"), "+8613800138000");
        assert_eq!(caller("<SIP:anonymous@anonymous.invalid>"), "anonymous");
        assert_eq!(caller("<sip:pbx.example.cn>"), "pbx.example.cn");
        assert_eq!(caller("张三 <sip:张三@x>"), "张三");
        assert_eq!(caller(""), "");
        assert_eq!(caller(">garbage<"), ">garbage<");
    }

    #[test]
    fn transcript_clock() {
        assert_eq!(clock(0), "0:00.0");
        assert_eq!(clock(65_950), "1:05.9");
        assert_eq!(clock(-5), "0:00.0");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0:00");
        assert_eq!(duration(65_900), "1:05");
        assert_eq!(duration(3_725_000), "1:02:05");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("12345", 5), "12345");
        assert_eq!(truncate("热线热线热线", 4), "热线热…");
    }
}
