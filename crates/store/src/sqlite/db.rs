//! The SQL of the embedded backend, as plain functions on a connection; callers hold the locks and run them off
//! the async runtime.
//!
//! Tables:
//! - `log`: every write ever made and not yet compacted away. `id` is the revision (AUTOINCREMENT, so ids are
//!   never reused even after compaction deletes rows); `prev_revision` links a row to the key's previous row, for
//!   watch events' previous values; `deleted` marks tombstones; `expires_at` (Unix ms) marks TTL keys.
//! - `current`: the latest live row of each key, so gets and lists at the latest revision avoid scanning history.
//! - `meta`: the compaction revision.
//!
//! Keys are stored as BLOBs so that they sort bytewise, as in etcd.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::{Error, EventKind, KeyValue, Revision, WatchEvent};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS log_key_id ON log (key, id);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    id INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS current_expiry ON current (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Revision 1 is the empty store, as in etcd: the first write is revision 2.
INSERT INTO sqlite_sequence (name, seq) SELECT 'log', 1
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'log');
INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0);
";

pub(super) fn sql_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::Timeout(format!("sqlite: {e}"))
        }
        _ => Error::Internal(format!("sqlite: {e}")),
    }
}

/// Opens a connection with the settings every connection needs; `writer` also creates the schema.
pub(super) fn open(path: &std::path::Path, writer: bool) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql_error)?;
    // WAL lets readers work while the writer commits; FULL syncs the WAL on every commit so an acknowledged
    // write survives a power cut.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_error)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_error)?;
    if writer {
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
    } else {
        conn.pragma_update(None, "query_only", true).map_err(sql_error)?;
    }
    Ok(conn)
}

pub(super) fn current_revision(conn: &Connection) -> Result<Revision, Error> {
    conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'log'", [], |r| {
        r.get(0)
    })
    .map_err(sql_error)
}

pub(super) fn compact_revision(conn: &Connection) -> Result<Revision, Error> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'compact_revision'",
        [],
        |r| r.get(0),
    )
    .map_err(sql_error)
}

fn to_string(key: Vec<u8>) -> String {
    String::from_utf8(key).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Reads `key, value, create_revision, id` columns.
fn read_kv(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: to_string(row.get(0)?),
        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>, Error> {
    conn.prepare_cached(
        "SELECT l.key, l.value, l.create_revision, l.id FROM current c JOIN log l ON l.id = c.id WHERE c.key = ?1",
    )
    .and_then(|mut stmt| stmt.query_row([key.as_bytes()], read_kv).optional())
    .map_err(sql_error)
}

pub(super) struct Page {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub count: u64,
}

/// Keys in `[start, end)` as of `revision` (latest when `None`), at most `limit`, plus how many there are in all.
pub(super) fn list(
    conn: &mut Connection,
    start: &str,
    end: &[u8],
    revision: Option<Revision>,
    limit: Option<usize>,
) -> Result<Page, Error> {
    // One read transaction: the revision, the items and the count come from the same snapshot.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(sql_error)?;
    let current = current_revision(&tx)?;
    let compacted = compact_revision(&tx)?;
    let revision = revision.unwrap_or(current);
    if revision > current {
        return Err(Error::FutureRevision { requested: revision });
    }
    if revision < compacted {
        return Err(Error::Compacted {
            compact_revision: compacted,
        });
    }
    let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let (items, count) = if revision == current {
        let items = tx
            .prepare_cached(
                "SELECT l.key, l.value, l.create_revision, l.id FROM current c JOIN log l ON l.id = c.id
                 WHERE c.key >= ?1 AND c.key < ?2 ORDER BY c.key LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![start.as_bytes(), end, limit], read_kv)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql_error)?;
        let count: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM current WHERE key >= ?1 AND key < ?2",
                params![start.as_bytes(), end],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        (items, count)
    } else {
        const AT_REVISION: &str = "FROM log l JOIN (SELECT key, MAX(id) AS id FROM log
                 WHERE key >= ?1 AND key < ?2 AND id <= ?3 GROUP BY key) m ON l.id = m.id WHERE l.deleted = 0";
        let items = tx
            .prepare_cached(&format!(
                "SELECT l.key, l.value, l.create_revision, l.id {AT_REVISION} ORDER BY l.key LIMIT ?4"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(params![start.as_bytes(), end, revision, limit], read_kv)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql_error)?;
        let count: i64 = tx
            .query_row(
                &format!("SELECT COUNT(*) {AT_REVISION}"),
                params![start.as_bytes(), end, revision],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        (items, count)
    };
    tx.commit().map_err(sql_error)?;
    Ok(Page {
        items,
        revision,
        count: u64::try_from(count).unwrap_or(0),
    })
}

/// A write the writer applies.
pub(super) enum Write<'a> {
    Create {
        value: &'a [u8],
        expires_at: Option<i64>,
    },
    Update {
        value: &'a [u8],
        expected: Revision,
        expires_at: Option<i64>,
    },
    Delete {
        expected: Option<Revision>,
    },
}

/// Applies one write at revision `revision` (the current revision + 1) and returns the event it makes.
pub(super) fn write(
    conn: &mut Connection,
    revision: Revision,
    key: &str,
    op: Write<'_>,
) -> Result<WatchEvent, Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    let current = get(&tx, key)?;
    let check = |expected: Revision| match &current {
        None => Err(Error::NotFound { key: key.to_owned() }),
        Some(kv) if kv.mod_revision != expected => Err(Error::Conflict {
            key: key.to_owned(),
            current_revision: kv.mod_revision,
        }),
        Some(kv) => Ok(kv.clone()),
    };
    let event = match op {
        Write::Create { value, expires_at } => {
            if current.is_some() {
                return Err(Error::AlreadyExists { key: key.to_owned() });
            }
            let prev_revision: Option<i64> = tx
                .query_row("SELECT MAX(id) FROM log WHERE key = ?1", [key.as_bytes()], |r| {
                    r.get(0)
                })
                .map_err(sql_error)?;
            insert(
                &tx,
                revision,
                key,
                revision,
                prev_revision.unwrap_or(0),
                false,
                value,
                expires_at,
            )?;
            set_current(&tx, key, revision, expires_at)?;
            let kv = KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision: revision,
                mod_revision: revision,
            };
            WatchEvent {
                kind: EventKind::Added,
                key: key.to_owned(),
                revision,
                current: Some(kv),
                prev: None,
            }
        }
        Write::Update {
            value,
            expected,
            expires_at,
        } => {
            let prev = check(expected)?;
            insert(
                &tx,
                revision,
                key,
                prev.create_revision,
                prev.mod_revision,
                false,
                value,
                expires_at,
            )?;
            set_current(&tx, key, revision, expires_at)?;
            let kv = KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision: prev.create_revision,
                mod_revision: revision,
            };
            WatchEvent {
                kind: EventKind::Modified,
                key: key.to_owned(),
                revision,
                current: Some(kv),
                prev: Some(prev),
            }
        }
        Write::Delete { expected } => {
            let prev = match expected {
                Some(expected) => check(expected)?,
                None => current.ok_or_else(|| Error::NotFound { key: key.to_owned() })?,
            };
            insert(
                &tx,
                revision,
                key,
                prev.create_revision,
                prev.mod_revision,
                true,
                &[],
                None,
            )?;
            tx.execute("DELETE FROM current WHERE key = ?1", [key.as_bytes()])
                .map_err(sql_error)?;
            WatchEvent {
                kind: EventKind::Deleted,
                key: key.to_owned(),
                revision,
                current: None,
                prev: Some(prev),
            }
        }
    };
    tx.commit().map_err(sql_error)?;
    Ok(event)
}

#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &Transaction<'_>,
    id: Revision,
    key: &str,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    value: &[u8],
    expires_at: Option<i64>,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO log (id, key, create_revision, prev_revision, deleted, value, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            key.as_bytes(),
            create_revision,
            prev_revision,
            deleted,
            value,
            expires_at
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

fn set_current(tx: &Transaction<'_>, key: &str, id: Revision, expires_at: Option<i64>) -> Result<(), Error> {
    tx.prepare_cached("INSERT OR REPLACE INTO current (key, id, expires_at) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| stmt.execute(params![key.as_bytes(), id, expires_at]))
        .map_err(sql_error)?;
    Ok(())
}

/// Live keys whose expiry is at or before `now_ms`, with their modification revisions.
pub(super) fn expired(conn: &Connection, now_ms: i64) -> Result<Vec<(String, Revision)>, Error> {
    conn.prepare_cached(
        "SELECT key, id FROM current WHERE expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY key",
    )
    .and_then(|mut stmt| {
        stmt.query_map([now_ms], |r| Ok((to_string(r.get(0)?), r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(sql_error)
}

/// Drops history before `revision`, keeping for every key its latest row before it (the state at `revision`,
/// and the previous value of the key's next event); tombstones before it go entirely.
pub(super) fn compact(conn: &mut Connection, revision: Revision) -> Result<usize, Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    let compacted = compact_revision(&tx)?;
    if revision <= compacted {
        return Err(Error::Compacted {
            compact_revision: compacted,
        });
    }
    if revision > current_revision(&tx)? {
        return Err(Error::FutureRevision { requested: revision });
    }
    let removed = tx
        .execute(
            "DELETE FROM log WHERE id < ?1 AND (deleted = 1 OR id NOT IN
                (SELECT MAX(id) FROM log WHERE id < ?1 GROUP BY key))",
            [revision],
        )
        .map_err(sql_error)?;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'compact_revision'",
        [revision],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(removed)
}

/// What a watch replays from the log.
pub(super) enum Range<'a> {
    Key(&'a str),
    Prefix { start: &'a str, end: &'a [u8] },
}

impl Range<'_> {
    pub(super) fn contains(&self, key: &str) -> bool {
        match self {
            Range::Key(k) => *k == key,
            Range::Prefix { start, end } => key >= *start && key.as_bytes() < *end,
        }
    }
}

pub(super) enum Replay {
    Events(Vec<WatchEvent>),
    Compacted(Revision),
}

/// Up to `limit` events in `range` from revision `from` on, in revision order.
pub(super) fn replay(
    conn: &mut Connection,
    range: &Range<'_>,
    from: Revision,
    limit: usize,
) -> Result<Replay, Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(sql_error)?;
    let compacted = compact_revision(&tx)?;
    if from < compacted {
        return Ok(Replay::Compacted(compacted));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    type RawRow = (Vec<u8>, Vec<u8>, Revision, Revision, Revision, bool);
    let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<RawRow> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
    };
    const COLUMNS: &str = "SELECT key, value, create_revision, id, prev_revision, deleted FROM log";
    let rows = match range {
        Range::Key(key) => tx
            .prepare_cached(&format!(
                "{COLUMNS} WHERE key = ?1 AND id >= ?2 ORDER BY id LIMIT ?3"
            ))
            .and_then(|mut s| s.query_map(params![key.as_bytes(), from, limit], read)?.collect()),
        Range::Prefix { start, end } => tx
            .prepare_cached(&format!(
                "{COLUMNS} WHERE id >= ?1 AND key >= ?2 AND key < ?3 ORDER BY id LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![from, start.as_bytes(), end, limit], read)?
                    .collect()
            }),
    };
    let rows: Vec<RawRow> = rows.map_err(sql_error)?;
    let mut events = Vec::with_capacity(rows.len());
    for (key, value, create_revision, id, prev_revision, deleted) in rows {
        let key = to_string(key);
        let prev = if prev_revision > 0 {
            tx.prepare_cached("SELECT key, value, create_revision, id FROM log WHERE id = ?1 AND deleted = 0")
                .and_then(|mut s| s.query_row([prev_revision], read_kv).optional())
                .map_err(sql_error)?
        } else {
            None
        };
        let event = if deleted {
            WatchEvent {
                kind: EventKind::Deleted,
                key,
                revision: id,
                current: None,
                prev,
            }
        } else {
            let kind = if create_revision == id {
                EventKind::Added
            } else {
                EventKind::Modified
            };
            let prev = if kind == EventKind::Added { None } else { prev };
            let current = KeyValue {
                key: key.clone(),
                value: Bytes::from(value),
                create_revision,
                mod_revision: id,
            };
            WatchEvent {
                kind,
                key,
                revision: id,
                current: Some(current),
                prev,
            }
        };
        events.push(event);
    }
    tx.commit().map_err(sql_error)?;
    Ok(Replay::Events(events))
}
