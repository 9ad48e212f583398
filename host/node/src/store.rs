//! A node's durable state: SQLite in WAL mode with `synchronous = FULL`, so a commit
//! survives a crash or power loss once it returns (SQLite's atomic commit rather than a
//! hand-written file format), with the audit log (`qvm_api::audit`) as a table every
//! transaction can append to. Each daemon adds its own tables.

use std::path::Path;

use qvm_api::audit::{Checkpoint, Entry, Event, SignedCheckpoint};
use qvm_core::encoding::{Digest, from_canonical, to_canonical};
use qvm_core::sign::SigningKey;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Entries between two signed checkpoints.
pub const CHECKPOINT_EVERY: u64 = 16;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (disk full, I/O error, corruption).
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value does not decode.
    #[error("stored value: {0}")]
    Encoding(String),
}

/// A storage failure, as a refusal: the node refuses work it cannot record.
impl From<StoreError> for qvm_api::wire::Refusal {
    fn from(e: StoreError) -> qvm_api::wire::Refusal {
        qvm_api::wire::Refusal::new(
            qvm_api::wire::RefusalKind::Storage,
            format!("cannot record durably: {e}"),
        )
    }
}

/// Encodes a value to store.
pub fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    to_canonical(v).map_err(|e| StoreError::Encoding(e.to_string()))
}

/// Decodes a stored value.
pub fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    from_canonical(b).map_err(|e| StoreError::Encoding(e.to_string()))
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Statements through SQLite's prepared-statement cache. Parsing and planning a statement
/// cost more than running it here (a profile of the evaluation path had SQLite's parser
/// ahead of the signature checks), and the daemons run the same few statements for every
/// evaluation.
pub trait Cached {
    /// `Connection::execute` with a cached statement.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// `Connection::query_row` with a cached statement.
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

/// Deletes the offline batch records of pool slot `kind` wholly below item `below` (those
/// followed by a record starting at or below it) from a `batches (kind, start, …)`
/// table — the custodian's and the coordinator's; returns how many.
pub fn prune_batch_records(conn: &Connection, kind: usize, below: u64) -> rusqlite::Result<usize> {
    conn.exec(
        "DELETE FROM batches WHERE kind = ?1 AND start < \
         (SELECT MAX(start) FROM batches WHERE kind = ?1 AND start <= ?2)",
        rusqlite::params![kind as i64, below as i64],
    )
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Statements kept prepared per connection (both daemons use fewer than this).
const STATEMENT_CACHE: usize = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    sequence INTEGER PRIMARY KEY, previous BLOB NOT NULL, time_ms INTEGER NOT NULL,
    event BLOB NOT NULL, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (sequence INTEGER PRIMARY KEY, checkpoint BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS spending (
    program TEXT NOT NULL, identity TEXT NOT NULL, window INTEGER NOT NULL, cost INTEGER NOT NULL,
    PRIMARY KEY (program, identity, window));
";

/// The database, with the node's name and signing key for audit checkpoints.
pub struct Store {
    conn: Connection,
    node: String,
    signing: SigningKey,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store").field("node", &self.node).finish()
    }
}

/// A transaction that appends audit entries as it goes.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    node: &'a str,
    signing: &'a SigningKey,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, with the daemon's own tables.
    pub fn open(
        path: &Path,
        node: &str,
        signing: SigningKey,
        tables: &str,
    ) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // The query planner stability guarantee: without it (and with the bundled SQLite's
        // STAT4) a cached statement is parsed and planned again whenever a bound value
        // changes, which undoes the cache. Our statements are key lookups; one plan fits.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(tables)?;
        Ok(Store {
            conn,
            node: node.to_string(),
            signing,
        })
    }

    /// Caps the database at `max_bytes` (rounded down to whole pages, never below what it
    /// holds already): a write past it fails with SQLite's "database or disk is full",
    /// the same error, and the same refusal, as a full disk. Returns the cap in bytes.
    pub fn set_quota(&self, max_bytes: u64) -> Result<u64, StoreError> {
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        let page = page.max(512) as u64;
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let limit = (max_bytes / page).max(pages as u64);
        let set: i64 =
            self.conn
                .query_row(&format!("PRAGMA max_page_count = {limit}"), [], |r| {
                    r.get(0)
                })?;
        Ok(set as u64 * page)
    }

    /// Runs `f` in an immediate (write-locked) transaction; commits if it returns `Ok`.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let mut tx = Tx {
            tx,
            node: &self.node,
            signing: &self.signing,
        };
        let out = f(&mut tx)?;
        tx.tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Appends one audit entry in its own transaction.
    pub fn audit(&mut self, event: Event) -> Result<(), StoreError> {
        self.write(|tx| tx.audit(event))
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The whole audit log and its checkpoints.
    pub fn audit_log(&self) -> Result<(Vec<Entry>, Vec<SignedCheckpoint>), StoreError> {
        read_audit(&self.conn)
    }

    /// The connection, for the daemon's own queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Number of audit entries.
    pub fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            // The sequence is the primary key and dense from 0: its maximum is an index
            // lookup, where COUNT(*) would scan the whole log on every health check.
            .row(
                "SELECT COALESCE(MAX(sequence) + 1, 0) FROM audit",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
    }
}

/// Opens a node's database read-only (beside a running daemon: WAL readers never block
/// the writer), for `qvm audit verify`.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Reads an audit log and its checkpoints from any node's database.
pub fn read_audit(conn: &Connection) -> Result<(Vec<Entry>, Vec<SignedCheckpoint>), StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT event, sequence, previous, time_ms FROM audit ORDER BY sequence")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (event, sequence, previous, time_ms) = row?;
        let previous: [u8; 32] = previous
            .try_into()
            .map_err(|_| StoreError::Encoding("an audit link is not 32 bytes".into()))?;
        entries.push(Entry {
            sequence: sequence as u64,
            previous: Digest::from_bytes(previous),
            time_ms: time_ms as u64,
            event: dec(&event)?,
        });
    }
    let mut stmt = conn.prepare_cached("SELECT checkpoint FROM checkpoints ORDER BY sequence")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut checkpoints = Vec::new();
    for row in rows {
        checkpoints.push(dec(&row?)?);
    }
    Ok((entries, checkpoints))
}

/// A stored 32-byte digest.
pub fn digest(bytes: Vec<u8>) -> rusqlite::Result<Digest> {
    let b: [u8; 32] = bytes.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob)
    })?;
    Ok(Digest::from_bytes(b))
}

impl Tx<'_> {
    /// The underlying transaction, for queries.
    pub fn conn(&self) -> &rusqlite::Transaction<'_> {
        &self.tx
    }

    /// Appends an audit entry (and a signed checkpoint every [`CHECKPOINT_EVERY`]).
    pub fn audit(&mut self, event: Event) -> Result<(), StoreError> {
        let last: Option<(i64, Vec<u8>)> = self
            .tx
            .row(
                "SELECT sequence, hash FROM audit ORDER BY sequence DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (sequence, previous) = match last {
            Some((s, h)) => (s as u64 + 1, digest(h)?),
            None => (0, Digest::default()),
        };
        let entry = Entry {
            sequence,
            previous,
            time_ms: now_ms(),
            event,
        };
        let hash = entry
            .hash()
            .map_err(|e| StoreError::Encoding(e.to_string()))?;
        self.tx.exec(
            "INSERT INTO audit (sequence, previous, time_ms, event, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                sequence as i64,
                previous.as_bytes().as_slice(),
                entry.time_ms as i64,
                enc(&entry.event)?,
                hash.as_bytes().as_slice()
            ],
        )?;
        if (sequence + 1) % CHECKPOINT_EVERY == 0 {
            let cp = Checkpoint {
                node: self.node.to_string(),
                sequence,
                head: hash,
                time_ms: entry.time_ms,
            }
            .sign(self.signing)
            .map_err(|e| StoreError::Encoding(e.to_string()))?;
            self.tx.exec(
                "INSERT INTO checkpoints (sequence, checkpoint) VALUES (?1, ?2)",
                params![sequence as i64, enc(&cp)?],
            )?;
        }
        Ok(())
    }

    /// Sets a metadata value.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.tx.exec(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }
}

/// Both daemons keep every ticket in a `tickets` table with at least the columns
/// `program, identity, sequence, hash, cost, window`, and the sum of its costs per budget
/// window in `spending` (a running total: summing the tickets would scan an identity's
/// whole history on every evaluation); these read and count them.
pub mod tickets {
    use qvm_core::encoding::Digest;
    use rusqlite::{Connection, OptionalExtension, params};

    use super::{Cached, StoreError, digest};

    /// Adds a ticket's cost to its budget window; called with every ticket insert.
    pub fn charge(
        conn: &Connection,
        program: &str,
        identity: &str,
        window: u64,
        cost: u64,
    ) -> Result<(), StoreError> {
        conn.exec(
            "INSERT INTO spending (program, identity, window, cost) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(program, identity, window) DO UPDATE SET cost = cost + ?4",
            params![program, identity, window as i64, cost as i64],
        )?;
        Ok(())
    }

    /// The head of an identity's chain: (sequence, hash).
    pub fn chain_head(
        conn: &Connection,
        program: &str,
        identity: &str,
    ) -> Result<Option<(u64, Digest)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = conn
            .row(
                "SELECT sequence, hash FROM tickets WHERE program = ?1 AND identity = ?2 ORDER BY sequence DESC LIMIT 1",
                params![program, identity],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(s, h)| Ok((s as u64, digest(h)?))).transpose()
    }

    /// Cost units charged to an identity in a budget window.
    pub fn spent(
        conn: &Connection,
        program: &str,
        identity: &str,
        window: u64,
    ) -> Result<u64, StoreError> {
        Ok(conn
            .row(
                "SELECT cost FROM spending WHERE program = ?1 AND identity = ?2 AND window = ?3",
                params![program, identity, window as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0) as u64)
    }
}
