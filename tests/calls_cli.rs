//! `hotline calls` and `hotline calls show` over a call store written through `Store`.

mod common;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use hotline_gateway::call::{CallEvent, EndReason, Transport};
use hotline_gateway::store::Store;
use serde_json::Value;

const ANSWERED: &str = "0190a1b2-0000-7000-8000-000000000001";
const REJECTED: &str = "0190a1b2-0000-7000-8000-000000000002";
const OPEN: &str = "0190a1c3-0000-7000-8000-000000000003";

fn at(ms: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn started(id: &str, ms: u64) -> CallEvent {
    CallEvent::Started {
        id: id.into(),
        sip_call_id: format!("{id}@pbx"),
        from: "\"Caller\" <sip:13800138000@10.0.0.1>;tag=abc".into(),
        to: "12345".into(),
        source: "10.0.0.1:5060".parse().unwrap(),
        transport: Transport::Tcp,
        at: at(ms),
    }
}

fn fill(data: &Path) {
    let mut store = Store::open(data).unwrap();
    store
        .apply(&[
            started(ANSWERED, 0),
            CallEvent::Answered {
                id: ANSWERED.into(),
                at: at(1_000),
            },
            CallEvent::Ended {
                id: ANSWERED.into(),
                at: at(91_000),
                reason: EndReason::CallerBye,
            },
            started(REJECTED, 5_000),
            CallEvent::Ended {
                id: REJECTED.into(),
                at: at(5_010),
                reason: EndReason::Rejected(503),
            },
            started(OPEN, 10_000),
        ])
        .unwrap();
}

fn json(args: &[&str]) -> Value {
    let out = run(hotline().args(args));
    serde_json::from_str(&stdout(&out)).expect("--json prints one JSON document")
}

#[test]
fn list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data);
    let d = data.to_str().unwrap();

    let list = json(&["calls", "--data", d, "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [OPEN, REJECTED, ANSWERED], "newest first");
    let answered = &list[2];
    assert_eq!(answered["invite_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(answered["answered_at"], "2023-11-14T22:13:21.000Z");
    assert_eq!(answered["ended_at"], "2023-11-14T22:14:51.000Z");
    assert_eq!(answered["duration_ms"], 90_000);
    assert_eq!(answered["end_reason"], "caller-bye");
    assert_eq!(answered["status"], 200);
    assert_eq!(answered["transport"], "tcp");
    assert_eq!(list[1]["status"], 503);
    assert_eq!(list[0]["ended_at"], Value::Null);

    let limited = json(&["calls", "--data", d, "--json", "--limit", "1"]);
    assert_eq!(limited.as_array().unwrap().len(), 1);

    let text = stdout(&run(hotline().args(["calls", "--data", d])));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("ID "), "{text}");
    assert!(lines[3].contains("13800138000"), "{text}");
    assert!(lines[3].contains("1:30"), "{text}");
    assert!(lines[3].ends_with("caller-bye"), "{text}");
    let col = lines[0].find("FROM").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].starts_with("13800138000")),
        "columns aligned:\n{text}"
    );

    // Full id, a unique prefix, and flags after the subcommand.
    let one = json(&["calls", "--data", d, "--json", "show", ANSWERED]);
    assert_eq!(one, *answered);
    let one = json(&["calls", "show", &OPEN[..8], "--data", d, "--json"]);
    assert_eq!(one["id"], OPEN);
    let text = stdout(&run(
        hotline().args(["calls", "show", ANSWERED, "--data", d])
    ));
    assert!(text.contains("end_reason:  caller-bye"), "{text}");
    assert!(text.contains("sip_call_id: "), "{text}");
}

#[test]
fn unknown_or_ambiguous_id_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data);
    let d = data.to_str().unwrap();

    let out = hotline()
        .args(["calls", "show", "ffffffff-0000", "--data", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no call with id ffffffff-0000"), "{err}");
    assert!(out.stdout.is_empty());

    let out = hotline()
        .args(["calls", "show", "0190a1b2", "--data", d, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ambiguous"), "{err}");
}

#[test]
fn no_database_is_no_calls_and_stays_that_way() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty");
    let d = data.to_str().unwrap();
    assert_eq!(
        json(&["calls", "--data", d, "--json"]),
        Value::Array(vec![])
    );
    let text = stdout(&run(hotline().args(["calls", "--data", d])));
    assert_eq!(text.trim(), "no calls");
    let out = hotline()
        .args(["calls", "show", OPEN, "--data", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!data.exists(), "calls must not create the data directory");
}

#[test]
fn data_dir_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-config");
    fill(&data);
    let config = dir.path().join("hotline.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.to_str().unwrap()),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let list = json(&["calls", "--config", c, "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);

    // --data wins over the config's data_dir.
    let other = dir.path().join("other");
    let list = json(&[
        "calls",
        "--config",
        c,
        "--data",
        other.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(list, Value::Array(vec![]));

    // Without either, ./data under the working directory.
    let list = json_in(dir.path(), &["calls", "--json"]);
    assert_eq!(list, Value::Array(vec![]));
    std::fs::rename(&data, dir.path().join("data")).unwrap();
    let list = json_in(dir.path(), &["calls", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);

    std::fs::write(&config, "[sip]\nmax_calls = \"many\"\n").unwrap();
    let out = hotline().args(["calls", "--config", c]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{c}:2:13: invalid type")) && err.contains("sip.max_calls"),
        "{err}"
    );
}

fn json_in(cwd: &Path, args: &[&str]) -> Value {
    let out = run(hotline().current_dir(cwd).args(args));
    serde_json::from_str(&stdout(&out)).expect("--json prints one JSON document")
}
