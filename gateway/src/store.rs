//! The call store: one SQLite file, `<data_dir>/hotline.db`.
//!
//! The schema grows through numbered migrations recorded in `PRAGMA user_version`, so a
//! later issue adds a migration instead of editing the schema in place. The SIP core
//! never waits on the disk: it sends [`CallEvent`]s down a channel to [`spawn_writer`],
//! which batches them into transactions on its own thread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{
    named_params, params, Connection, OpenFlags, OptionalExtension, TransactionBehavior,
};
use serde::{Serialize, Serializer};

use crate::call::{CallEvent, EndReason};

pub const DB_FILE: &str = "hotline.db";

/// Shortest id prefix `get_call` accepts: UUIDv7 ids start with the millisecond
/// timestamp, so shorter prefixes match every call of the same minute or so.
pub const MIN_ID_PREFIX: usize = 8;

/// Most events the writer puts in one transaction.
const MAX_BATCH: usize = 1000;

/// Migration N (1-based) brings the schema from user_version N-1 to N. Append only:
/// a released migration never changes, since databases out there have already run it.
const MIGRATIONS: &[&str] = &[
    // 1: call records.
    "CREATE TABLE calls (
        id          TEXT PRIMARY KEY NOT NULL,
        sip_call_id TEXT NOT NULL,
        from_hdr    TEXT NOT NULL,
        to_user     TEXT NOT NULL,
        source      TEXT NOT NULL,
        transport   TEXT NOT NULL,
        invite_at   INTEGER NOT NULL,
        answered_at INTEGER,
        ended_at    INTEGER,
        end_reason  TEXT,
        status      INTEGER
    );
    CREATE INDEX calls_invite_at ON calls (invite_at);
    -- Start-up crash recovery looks for open calls; without this it scans every call
    -- ever taken.
    CREATE INDEX calls_open ON calls (id) WHERE ended_at IS NULL;",
    // 2: media plane: codec, recording, RTP statistics, key presses.
    "ALTER TABLE calls ADD COLUMN codec TEXT;
    ALTER TABLE calls ADD COLUMN remote_rtp TEXT;
    ALTER TABLE calls ADD COLUMN recording TEXT;
    ALTER TABLE calls ADD COLUMN rtp_stats TEXT;
    CREATE TABLE digits (
        call_id     TEXT NOT NULL REFERENCES calls (id),
        at_ms       INTEGER NOT NULL,
        key         TEXT NOT NULL,
        source      TEXT NOT NULL,
        duration_ms INTEGER
    );
    CREATE INDEX digits_call ON digits (call_id, at_ms);",
    // 3: live transcripts: one row per final segment, written as it arrives.
    "CREATE TABLE segments (
        call_id   TEXT NOT NULL REFERENCES calls (id),
        channel   TEXT NOT NULL,
        utterance INTEGER NOT NULL,
        start_ms  INTEGER NOT NULL,
        end_ms    INTEGER NOT NULL,
        text      TEXT NOT NULL,
        final     INTEGER NOT NULL DEFAULT 1,
        eou_at    INTEGER,
        stored_at INTEGER NOT NULL,
        decode_ms INTEGER
    );
    CREATE INDEX segments_call ON segments (call_id, start_ms);",
];

/// Ends open calls (the caller adds the WHERE clause). The SIP status is the rejecting
/// code when there is one, else 200 for an answered call (its INVITE succeeded), else
/// unknown. `MAX` keeps the end from preceding the start when the wall clock stepped back.
macro_rules! end_call_set {
    () => {
        "UPDATE calls SET
           ended_at = MAX(:at, invite_at, COALESCE(answered_at, invite_at)),
           end_reason = :reason,
           status = COALESCE(:status, CASE WHEN answered_at IS NOT NULL THEN 200 END)
         "
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Schema version above what this build knows (or negative: not written by hotline).
    #[error("{}: schema version {found} is not one this hotline knows (1 to {known}); run a newer hotline", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{}: migration {version} failed: {source}", path.display())]
    Migration {
        path: PathBuf,
        version: usize,
        source: rusqlite::Error,
    },
    #[error("call store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("call id prefix `{prefix}` is too short: give at least {MIN_ID_PREFIX} characters")]
    PrefixTooShort { prefix: String },
    #[error("call id prefix `{prefix}` is ambiguous: {}", matches.join(", "))]
    AmbiguousId {
        prefix: String,
        /// Some of the ids it matches.
        matches: Vec<String>,
    },
}

/// Milliseconds since the Unix epoch, as stored. Displays and serializes as RFC 3339
/// UTC with milliseconds (`2025-03-01T08:30:00.250Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub fn from_system_time(t: SystemTime) -> UnixMillis {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
        };
        UnixMillis(ms)
    }

    pub fn to_system_time(self) -> SystemTime {
        let d = Duration::from_millis(self.0.unsigned_abs());
        let t = if self.0 >= 0 {
            UNIX_EPOCH.checked_add(d)
        } else {
            UNIX_EPOCH.checked_sub(d)
        };
        t.unwrap_or(UNIX_EPOCH)
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, min, s, ms) = (
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
            ms_of_day % 1000,
        );
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
    }
}

impl Serialize for UnixMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`); hand-written because it is the only date arithmetic we need and
/// it must not panic on whatever number a database row holds.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One row of `calls`, as the CLI and (later) the HTTP API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub id: String,
    pub sip_call_id: String,
    /// From header as received.
    pub from: String,
    /// Dialed number (To user part).
    pub to: String,
    /// Peer `ip:port`.
    pub source: String,
    pub transport: String,
    pub invite_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
    /// `EndReason::as_str()`; newer gateways may write reasons this one does not know.
    pub end_reason: Option<String>,
    /// Final SIP status of the INVITE: 200 when answered, else the rejecting code.
    pub status: Option<u16>,
    /// Answered to ended; None unless both happened.
    pub duration_ms: Option<i64>,
    /// Last negotiated codec (`PCMU`, `PCMA`).
    pub codec: Option<String>,
    pub remote_rtp: Option<String>,
    /// Path of the stereo WAV (caller left, gateway right).
    pub recording: Option<String>,
    pub rtp: Option<crate::call::RtpStats>,
    /// Key presses in order.
    pub digits: Vec<DigitRecord>,
    /// Final transcript segments of both sides, by start time.
    pub segments: Vec<SegmentRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRecord {
    /// `caller` or `gateway`.
    pub channel: String,
    pub utterance: i64,
    /// Milliseconds from the answer.
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// When the utterance's end was decided, and when this row was written.
    pub eou_at: Option<UnixMillis>,
    pub stored_at: UnixMillis,
    /// Whisper's time on the final decode.
    pub decode_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigitRecord {
    pub key: String,
    pub at_ms: i64,
    pub source: String,
    pub duration_ms: Option<i64>,
}

const RECORD_COLUMNS: &str = "id, sip_call_id, from_hdr, to_user, source, transport, \
     invite_at, answered_at, ended_at, end_reason, status, codec, remote_rtp, recording, rtp_stats";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    let answered_at: Option<i64> = row.get(7)?;
    let ended_at: Option<i64> = row.get(8)?;
    Ok(CallRecord {
        id: row.get(0)?,
        sip_call_id: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        source: row.get(4)?,
        transport: row.get(5)?,
        invite_at: UnixMillis(row.get(6)?),
        answered_at: answered_at.map(UnixMillis),
        ended_at: ended_at.map(UnixMillis),
        end_reason: row.get(9)?,
        status: row.get(10)?,
        duration_ms: match (answered_at, ended_at) {
            (Some(a), Some(e)) => Some(e.saturating_sub(a).max(0)),
            _ => None,
        },
        codec: row.get(11)?,
        remote_rtp: row.get(12)?,
        recording: row.get(13)?,
        // A row written by a newer gateway may hold fields this one lacks: keep
        // what parses rather than failing the whole listing.
        rtp: row
            .get::<_, Option<String>>(14)?
            .and_then(|s| serde_json::from_str(&s).ok()),
        digits: Vec::new(),
        segments: Vec::new(),
    })
}

fn millis(t: SystemTime) -> i64 {
    UnixMillis::from_system_time(t).0
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens `<data_dir>/hotline.db`, creating the directory and the database if needed,
    /// and brings the schema up to date.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        Store::open_file(
            &data_dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
    }

    /// Like [`Store::open`], but None when there is no database yet: for readers such
    /// as `hotline calls`, which should not leave an empty database behind.
    pub fn open_existing(data_dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        Store::open_file(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).map(Some)
    }

    fn open_file(path: &Path, flags: OpenFlags) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(open_err)?;
        // The gateway writer, `hotline calls` and later the HTTP API share the file;
        // waiting a while for a lock beats failing a write.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // WAL: readers never block the writer. NORMAL is durable across process
        // crashes (only a power cut can lose the last transactions), at a fraction of
        // FULL's fsyncs.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        loop {
            // IMMEDIATE takes the write lock before reading the version, so two
            // processes opening a fresh database at once cannot both run migration N.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let version = match usize::try_from(found) {
                Ok(done) if done < MIGRATIONS.len() => done + 1,
                Ok(done) if done == MIGRATIONS.len() => return Ok(()),
                _ => {
                    return Err(StoreError::TooNew {
                        path: self.path.clone(),
                        found,
                        known,
                    })
                }
            };
            let migration_err = |source| StoreError::Migration {
                path: self.path.clone(),
                version,
                source,
            };
            tx.execute_batch(MIGRATIONS[version - 1])
                .map_err(migration_err)?;
            tx.pragma_update(None, "user_version", version as i64)
                .map_err(migration_err)?;
            tx.commit().map_err(migration_err)?;
            tracing::info!(path = %self.path.display(), version, "call store migrated");
        }
    }

    /// Writes a batch of events in one transaction, in order. A repeated `Started`
    /// is ignored; for a call that already ended, a later `Ended` keeps the first.
    pub fn apply(&mut self, events: &[CallEvent]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for event in events {
            let changed = match event {
                CallEvent::Started {
                    id,
                    sip_call_id,
                    from,
                    to,
                    source,
                    transport,
                    at,
                } => {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO calls
                         (id, sip_call_id, from_hdr, to_user, source, transport, invite_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        id,
                        sip_call_id,
                        from,
                        to,
                        source.to_string(),
                        transport.as_str(),
                        millis(*at)
                    ])?;
                    continue;
                }
                CallEvent::Answered { id, at } => tx
                    .prepare_cached(
                        "UPDATE calls SET answered_at = ?2
                         WHERE id = ?1 AND answered_at IS NULL AND ended_at IS NULL",
                    )?
                    .execute(params![id, millis(*at)])?,
                CallEvent::Media {
                    id,
                    codec,
                    remote_rtp,
                } => tx
                    .prepare_cached("UPDATE calls SET codec = ?2, remote_rtp = ?3 WHERE id = ?1")?
                    .execute(params![id, codec, remote_rtp.map(|a| a.to_string())])?,
                CallEvent::Digit {
                    id,
                    key,
                    at_ms,
                    source,
                    duration_ms,
                } => tx
                    .prepare_cached(
                        "INSERT INTO digits (call_id, at_ms, key, source, duration_ms)
                         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM calls WHERE id = ?1)",
                    )?
                    .execute(params![
                        id,
                        i64::try_from(*at_ms).unwrap_or(i64::MAX),
                        key.to_string(),
                        source,
                        duration_ms
                    ])?,
                CallEvent::Recording { id, path } => tx
                    .prepare_cached("UPDATE calls SET recording = ?2 WHERE id = ?1")?
                    .execute(params![id, path])?,
                CallEvent::Segment {
                    id,
                    channel,
                    utterance,
                    start_ms,
                    end_ms,
                    text,
                    eou_at,
                    decode_ms,
                } => tx
                    .prepare_cached(
                        "INSERT INTO segments
                         (call_id, channel, utterance, start_ms, end_ms, text, final, eou_at, stored_at, decode_ms)
                         SELECT ?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9
                         WHERE EXISTS (SELECT 1 FROM calls WHERE id = ?1)",
                    )?
                    .execute(params![
                        id,
                        channel,
                        i64::try_from(*utterance).unwrap_or(i64::MAX),
                        i64::try_from(*start_ms).unwrap_or(i64::MAX),
                        i64::try_from(*end_ms).unwrap_or(i64::MAX),
                        text,
                        millis(*eou_at),
                        millis(SystemTime::now()),
                        i64::try_from(*decode_ms).unwrap_or(i64::MAX)
                    ])?,
                CallEvent::RtpStats { id, stats } => tx
                    .prepare_cached("UPDATE calls SET rtp_stats = ?2 WHERE id = ?1")?
                    .execute(params![
                        id,
                        serde_json::to_string(stats).unwrap_or_default()
                    ])?,
                CallEvent::Ended { id, at, reason } => tx
                    .prepare_cached(concat!(
                        end_call_set!(),
                        "WHERE id = :id AND ended_at IS NULL"
                    ))?
                    .execute(named_params! {
                        ":id": id,
                        ":at": millis(*at),
                        ":reason": reason.as_str(),
                        ":status": reason.status(),
                    })?,
            };
            if changed == 0 {
                let known: bool = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM calls WHERE id = ?1)")?
                    .query_row([event.call_id()], |r| r.get(0))?;
                if known {
                    tracing::debug!(?event, "call already ended; event ignored");
                } else {
                    tracing::warn!(?event, "event for a call the store has no record of");
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends every call still open, as left by a process that died with calls up.
    /// Returns how many there were.
    pub fn close_open_calls(
        &mut self,
        at: SystemTime,
        reason: &EndReason,
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            concat!(end_call_set!(), "WHERE ended_at IS NULL"),
            named_params! {
                ":at": millis(at),
                ":reason": reason.as_str(),
                ":status": reason.status(),
            },
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// The newest `limit` calls, newest first.
    pub fn list_calls(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM calls ORDER BY invite_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], record_from_row)?;
        let mut calls = rows.collect::<Result<Vec<_>, _>>()?;
        for c in &mut calls {
            c.digits = self.digits_of(&c.id)?;
            c.segments = self.segments_of(&c.id)?;
        }
        Ok(calls)
    }

    fn digits_of(&self, id: &str) -> Result<Vec<DigitRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, at_ms, source, duration_ms FROM digits
             WHERE call_id = ?1 ORDER BY at_ms, rowid",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(DigitRecord {
                key: r.get(0)?,
                at_ms: r.get(1)?,
                source: r.get(2)?,
                duration_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn segments_of(&self, id: &str) -> Result<Vec<SegmentRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT channel, utterance, start_ms, end_ms, text, final, eou_at, stored_at, decode_ms
             FROM segments WHERE call_id = ?1 ORDER BY start_ms, rowid",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(SegmentRecord {
                channel: r.get(0)?,
                utterance: r.get(1)?,
                start_ms: r.get(2)?,
                end_ms: r.get(3)?,
                text: r.get(4)?,
                is_final: r.get::<_, i64>(5)? != 0,
                eou_at: r.get::<_, Option<i64>>(6)?.map(UnixMillis),
                stored_at: UnixMillis(r.get(7)?),
                decode_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn with_digits(&self, call: Option<CallRecord>) -> Result<Option<CallRecord>, StoreError> {
        match call {
            Some(mut c) => {
                c.digits = self.digits_of(&c.id)?;
                c.segments = self.segments_of(&c.id)?;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }

    /// The call with this id, or with this id prefix (at least [`MIN_ID_PREFIX`]
    /// characters) when exactly one call has it. Case-insensitive, since ids are
    /// lowercase and people copy them from all sorts of places.
    pub fn get_call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let id = id.trim().to_ascii_lowercase();
        let exact = self
            .conn
            .prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM calls WHERE id = ?1"))?
            .query_row([&id], record_from_row)
            .optional()?;
        if exact.is_some() {
            return self.with_digits(exact);
        }
        if id.chars().count() < MIN_ID_PREFIX {
            return Err(StoreError::PrefixTooShort { prefix: id });
        }
        // A range scan on the primary key: every string that starts with `id` sorts
        // between `id` and `id` with its last character bumped (SQLite compares text
        // as UTF-8 bytes, which orders like code points).
        let matches = match bump_last_char(&id) {
            Some(upper) => self
                .conn
                .prepare_cached(
                    "SELECT id FROM calls WHERE id >= ?1 AND id < ?2
                     AND substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT 5",
                )?
                .query_map(params![id, upper], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?,
            None => self
                .conn
                .prepare_cached(
                    "SELECT id FROM calls WHERE id >= ?1
                     AND substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT 5",
                )?
                .query_map(params![id], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?,
        };
        match matches.as_slice() {
            [] => Ok(None),
            [one] => {
                let call = self
                    .conn
                    .prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM calls WHERE id = ?1"))?
                    .query_row([one], record_from_row)
                    .optional()?;
                self.with_digits(call)
            }
            _ => Err(StoreError::AmbiguousId {
                prefix: id,
                matches,
            }),
        }
    }
}

fn bump_last_char(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    let last = chars.pop()?;
    let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32)?;
    chars.push(next);
    Some(chars.into_iter().collect())
}

/// Runs `store` on its own OS thread until `rx` closes, writing events in batches of
/// whatever is queued (up to 1000) per transaction: one fsync per batch instead of per
/// event keeps up with call bursts.
///
/// A failed batch is retried once after a short pause (the database may have been
/// locked or the disk briefly full); if it fails again its events are written one by one
/// so that one bad event cannot take the others with it, and each that still fails is
/// logged with its content. When `rx` closes, every queued event is written before the
/// thread returns. The result is the first write error, if any event was lost.
///
/// The thread blocks on the channel, so call this from anywhere except inside an async
/// task's poll (spawning it from async code is fine).
pub fn spawn_writer(
    store: Store,
    rx: tokio::sync::mpsc::Receiver<CallEvent>,
) -> std::thread::JoinHandle<Result<(), StoreError>> {
    let spawned = std::thread::Builder::new()
        .name("call-store".into())
        .spawn(move || run_writer(store, rx));
    match spawned {
        Ok(handle) => handle,
        // The OS refused a thread (as std::thread::spawn, which panics the same way): at
        // start-up, where this runs, a gateway that cannot make one thread cannot run.
        Err(e) => panic!("cannot start the call store thread: {e}"),
    }
}

fn run_writer(
    mut store: Store,
    mut rx: tokio::sync::mpsc::Receiver<CallEvent>,
) -> Result<(), StoreError> {
    let mut first_error = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(event) = rx.blocking_recv() {
        batch.push(event);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        if let Err(e) = write_batch(&mut store, &batch) {
            first_error.get_or_insert(e);
        }
        batch.clear();
    }
    tracing::debug!("call store writer: channel closed, all events written");
    first_error.map_or(Ok(()), Err)
}

const RETRY_PAUSE: Duration = Duration::from_millis(200);

fn write_batch(store: &mut Store, batch: &[CallEvent]) -> Result<(), StoreError> {
    let Err(first) = store.apply(batch) else {
        return Ok(());
    };
    tracing::warn!(error = %first, events = batch.len(), "call store write failed; retrying");
    std::thread::sleep(RETRY_PAUSE);
    let Err(second) = store.apply(batch) else {
        return Ok(());
    };
    tracing::error!(error = %second, events = batch.len(), "call store write failed again; writing events one by one");
    let mut lost = None;
    for event in batch {
        if let Err(e) = store.apply(std::slice::from_ref(event)) {
            tracing::error!(error = %e, ?event, "call event not stored");
            lost.get_or_insert(e);
        }
    }
    lost.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Transport;

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn started(id: &str, at: u64) -> CallEvent {
        CallEvent::Started {
            id: id.to_string(),
            sip_call_id: format!("{id}@pbx"),
            from: "\"Caller\" <sip:13800138000@10.0.0.1>;tag=abc".into(),
            to: "12345".into(),
            source: "10.0.0.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            at: t(at),
        }
    }

    fn answered(id: &str, at: u64) -> CallEvent {
        CallEvent::Answered {
            id: id.into(),
            at: t(at),
        }
    }

    fn ended(id: &str, at: u64, reason: EndReason) -> CallEvent {
        CallEvent::Ended {
            id: id.into(),
            at: t(at),
            reason,
        }
    }

    const A: &str = "0190a1b2-0000-7000-8000-000000000001";
    const B: &str = "0190a1b2-0000-7000-8000-000000000002";
    const C: &str = "0190a1c3-0000-7000-8000-000000000003";

    #[test]
    fn segments_are_stored_in_time_order_and_after_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let seg = |channel, utterance, start_ms: u64, text: &str| CallEvent::Segment {
            id: A.into(),
            channel,
            utterance,
            start_ms,
            end_ms: start_ms + 900,
            text: text.into(),
            eou_at: t(start_ms + 1500),
            decode_ms: 120,
        };
        store
            .apply(&[
                started(A, 0),
                answered(A, 10),
                seg("gateway", 0, 0, "您好"),
                seg("caller", 1, 4000, "谢谢"),
                seg("caller", 0, 2000, "我想咨询社保"),
                ended(A, 9000, EndReason::CallerBye),
                // A final decoded after the hang-up still belongs to the call.
                seg("caller", 2, 8000, "再见"),
                // One for a call never seen is not stored.
                CallEvent::Segment {
                    id: "nope".into(),
                    channel: "caller",
                    utterance: 0,
                    start_ms: 0,
                    end_ms: 1,
                    text: "x".into(),
                    eou_at: t(1),
                    decode_ms: 1,
                },
            ])
            .unwrap();
        let c = store.get_call(A).unwrap().unwrap();
        let got: Vec<(&str, i64, &str, bool)> = c
            .segments
            .iter()
            .map(|s| (s.channel.as_str(), s.start_ms, s.text.as_str(), s.is_final))
            .collect();
        assert_eq!(
            got,
            vec![
                ("gateway", 0, "您好", true),
                ("caller", 2000, "我想咨询社保", true),
                ("caller", 4000, "谢谢", true),
                ("caller", 8000, "再见", true),
            ]
        );
        assert_eq!(
            c.segments[1].eou_at,
            Some(UnixMillis::from_system_time(t(3500)))
        );
        assert_eq!(c.segments[1].decode_ms, Some(120));
        assert!(c.segments[1].stored_at.0 > 0);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["segments"][0]["final"], true);
        let n: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM segments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 4);
    }

    #[test]
    fn media_events_fill_codec_recording_stats_and_digits_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let digit = |key, at_ms| CallEvent::Digit {
            id: A.into(),
            key,
            at_ms,
            source: "rfc4733",
            duration_ms: Some(120),
        };
        store
            .apply(&[
                started(A, 0),
                answered(A, 10),
                CallEvent::Media {
                    id: A.into(),
                    codec: "PCMA".into(),
                    remote_rtp: Some("10.0.0.1:30000".parse().unwrap()),
                },
                CallEvent::Recording {
                    id: A.into(),
                    path: "/data/recordings/a.wav".into(),
                },
                digit('1', 500),
                digit('#', 900),
                CallEvent::RtpStats {
                    id: A.into(),
                    stats: crate::call::RtpStats {
                        rx_packets: 100,
                        lost: 2,
                        jitter_ms: 1.5,
                        ..Default::default()
                    },
                },
                ended(A, 2000, EndReason::RtpTimeout),
                // Unknown call: dropped with a warning, not an orphan row.
                CallEvent::Digit {
                    id: B.into(),
                    key: '9',
                    at_ms: 1,
                    source: "info",
                    duration_ms: None,
                },
            ])
            .unwrap();
        let c = store.get_call(A).unwrap().unwrap();
        assert_eq!(c.codec.as_deref(), Some("PCMA"));
        assert_eq!(c.remote_rtp.as_deref(), Some("10.0.0.1:30000"));
        assert_eq!(c.recording.as_deref(), Some("/data/recordings/a.wav"));
        assert_eq!(
            c.rtp.as_ref().map(|r| (r.rx_packets, r.lost)),
            Some((100, 2))
        );
        let keys: Vec<&str> = c.digits.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["1", "#"]);
        assert_eq!(c.end_reason.as_deref(), Some("rtp-timeout"));
        let n: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM digits", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(store.list_calls(10).unwrap()[0].digits.len(), 2);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(UnixMillis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis(1_700_000_000_123).to_string(),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            UnixMillis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(UnixMillis(-1).to_string(), "1969-12-31T23:59:59.999Z");
        // Garbage from a row must render, not panic.
        let _ = UnixMillis(i64::MIN).to_string();
        let _ = UnixMillis(i64::MAX).to_string();
        assert_eq!(
            UnixMillis::from_system_time(t(5)),
            UnixMillis(1_700_000_000_005)
        );
        assert_eq!(UnixMillis(1_700_000_000_005).to_system_time(), t(5));
        assert_eq!(
            serde_json::to_string(&UnixMillis(0)).unwrap(),
            "\"1970-01-01T00:00:00.000Z\""
        );
    }

    #[test]
    fn migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let mut s = Store::open(&data).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.apply(&[started(A, 0)]).unwrap();
        drop(s);
        let s = Store::open(&data).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.list_calls(10).unwrap().len(), 1);
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_a_database_from_the_future() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = Store::open(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("run a newer hotline"), "{e}");
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", -3).unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { found: -3, .. })
        ));
    }

    #[test]
    fn open_existing_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(Store::open_existing(&data).unwrap().is_none());
        assert!(!data.exists());
        drop(Store::open(&data).unwrap());
        assert!(Store::open_existing(&data).unwrap().is_some());
    }

    #[test]
    fn apply_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.apply(&[
            started(A, 0),
            started(B, 10),
            answered(A, 2_000),
            ended(B, 50, EndReason::Rejected(503)),
        ])
        .unwrap();
        s.apply(&[
            started(A, 999),
            ended(A, 62_500, EndReason::CallerBye),
            // Repeats and stragglers change nothing.
            ended(A, 70_000, EndReason::Timeout),
            answered(B, 80_000),
            answered("nope", 1),
        ])
        .unwrap();

        let calls = s.list_calls(10).unwrap();
        assert_eq!(calls.len(), 2);
        let (b, a) = (&calls[0], &calls[1]);
        assert_eq!(b.id, B, "newest first");
        assert_eq!(b.answered_at, None);
        assert_eq!(b.end_reason.as_deref(), Some("rejected-503"));
        assert_eq!(b.status, Some(503));
        assert_eq!(b.duration_ms, None);

        assert_eq!(a.id, A);
        assert_eq!(a.sip_call_id, format!("{A}@pbx"));
        assert_eq!(a.from, "\"Caller\" <sip:13800138000@10.0.0.1>;tag=abc");
        assert_eq!(a.to, "12345");
        assert_eq!(a.source, "10.0.0.1:5060");
        assert_eq!(a.transport, "udp");
        assert_eq!(a.invite_at, UnixMillis::from_system_time(t(0)));
        assert_eq!(a.answered_at, Some(UnixMillis::from_system_time(t(2_000))));
        assert_eq!(a.ended_at, Some(UnixMillis::from_system_time(t(62_500))));
        assert_eq!(a.end_reason.as_deref(), Some("caller-bye"));
        assert_eq!(a.status, Some(200));
        assert_eq!(a.duration_ms, Some(60_500));

        assert_eq!(s.list_calls(1).unwrap().len(), 1);
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["invite_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["answered_at"], "2023-11-14T22:13:22.000Z");
        assert_eq!(json["from"], a.from);
        assert_eq!(json["duration_ms"], 60_500);
        assert_eq!(
            serde_json::to_value(b).unwrap()["answered_at"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn cancel_records_487() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.apply(&[started(A, 0), ended(A, 3_000, EndReason::Cancel)])
            .unwrap();
        let a = s.get_call(A).unwrap().unwrap();
        assert_eq!(
            (a.end_reason.as_deref(), a.status),
            (Some("cancel"), Some(487))
        );
    }

    #[test]
    fn lookup_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.apply(&[started(A, 0), started(B, 1), started(C, 2)])
            .unwrap();
        assert_eq!(s.get_call(A).unwrap().unwrap().id, A);
        assert_eq!(s.get_call(&A.to_uppercase()).unwrap().unwrap().id, A);
        assert_eq!(s.get_call("0190a1c3").unwrap().unwrap().id, C);
        assert_eq!(s.get_call(&C[..20]).unwrap().unwrap().id, C);
        assert!(s.get_call("0190a1ff").unwrap().is_none());
        assert!(s.get_call("ffffffff-0000").unwrap().is_none());
        assert!(s.get_call("0190a1b2-0000-7000-8000-00000000000").is_err());
        match s.get_call("0190a1b2") {
            Err(StoreError::AmbiguousId { matches, .. }) => assert_eq!(matches, [A, B]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.get_call("0190a1"),
            Err(StoreError::PrefixTooShort { .. })
        ));
        // LIKE-style wildcards are plain characters here.
        assert!(s.get_call("0190a1__%").unwrap().is_none());
        assert_eq!(bump_last_char("ab"), Some("ac".into()));
        assert_eq!(bump_last_char("a\u{d7ff}"), Some("a\u{e000}".into()));
        assert_eq!(bump_last_char("a\u{10ffff}"), None);
    }

    #[test]
    fn crash_recovery_closes_open_calls() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.apply(&[
            started(A, 0),
            answered(A, 1_000),
            started(B, 10),
            started(C, 20),
            ended(C, 30, EndReason::Rejected(403)),
        ])
        .unwrap();
        drop(s);
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.close_open_calls(t(100_000), &EndReason::Crash).unwrap(),
            2
        );
        assert_eq!(
            s.close_open_calls(t(200_000), &EndReason::Crash).unwrap(),
            0
        );
        let a = s.get_call(A).unwrap().unwrap();
        assert_eq!(a.end_reason.as_deref(), Some("crash"));
        assert_eq!(a.status, Some(200));
        assert_eq!(a.duration_ms, Some(99_000));
        let b = s.get_call(B).unwrap().unwrap();
        assert_eq!((b.end_reason.as_deref(), b.status), (Some("crash"), None));
        let c = s.get_call(C).unwrap().unwrap();
        assert_eq!(c.end_reason.as_deref(), Some("rejected-403"));
    }

    #[test]
    fn end_never_precedes_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.apply(&[
            started(A, 5_000),
            answered(A, 6_000),
            ended(A, 1_000, EndReason::GatewayBye),
        ])
        .unwrap();
        let a = s.get_call(A).unwrap().unwrap();
        assert_eq!(a.ended_at, a.answered_at);
        assert_eq!(a.duration_ms, Some(0));
    }

    #[test]
    fn writer_drains_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        // Queue everything before the writer starts so it must batch and drain.
        let ids: Vec<String> = (0..2500).map(|_| crate::call::new_call_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            tx.try_send(started(id, i as u64)).unwrap();
        }
        let handle = spawn_writer(store, rx);
        for id in &ids {
            tx.blocking_send(ended(id, 10_000, EndReason::Shutdown))
                .unwrap();
        }
        drop(tx);
        handle.join().unwrap().unwrap();

        let s = Store::open(dir.path()).unwrap();
        let calls = s.list_calls(10_000).unwrap();
        assert_eq!(calls.len(), ids.len());
        assert!(calls
            .iter()
            .all(|c| c.end_reason.as_deref() == Some("shutdown")));
    }

    #[test]
    fn writer_reports_lost_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Another connection drops the table, so every write fails.
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute_batch("DROP TABLE calls")
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let handle = spawn_writer(store, rx);
        tx.blocking_send(started(A, 0)).unwrap();
        drop(tx);
        assert!(handle.join().unwrap().is_err());
    }
}
