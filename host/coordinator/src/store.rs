//! The coordinator's tables on top of the node store: packages and their certificates,
//! every ticket it issued (the chains), offline batch records (public values, kept for
//! custodians that catch up), and the pool ledger.

use qvm_core::encoding::Digest;
use qvm_node::store::Cached;
pub use qvm_node::store::{Store, StoreError, Tx, dec, digest, enc, now_ms};
use rusqlite::{OptionalExtension, params};

/// The coordinator's tables.
pub const TABLES: &str = "
CREATE TABLE IF NOT EXISTS packages (
    id BLOB PRIMARY KEY, program TEXT NOT NULL, version INTEGER NOT NULL,
    package BLOB NOT NULL, proposed_at INTEGER NOT NULL, state TEXT NOT NULL, certificate BLOB);
CREATE TABLE IF NOT EXISTS tickets (
    program TEXT NOT NULL, identity TEXT NOT NULL, sequence INTEGER NOT NULL,
    hash BLOB NOT NULL, ticket BLOB NOT NULL, request BLOB NOT NULL,
    cost INTEGER NOT NULL, window INTEGER NOT NULL,
    PRIMARY KEY (program, identity, sequence));
CREATE INDEX IF NOT EXISTS coordinator_tickets_request ON tickets (request);
CREATE TABLE IF NOT EXISTS batches (
    kind INTEGER NOT NULL, start INTEGER NOT NULL, record BLOB NOT NULL, PRIMARY KEY (kind, start));
";

/// A stored package.
#[derive(Debug, Clone)]
pub struct PackageRow {
    /// Package id.
    pub id: Digest,
    /// The package file.
    pub package: Vec<u8>,
    /// When the proposal window opened.
    pub proposed_at: u64,
    /// `proposed`, `active` or `superseded`.
    pub state: String,
}

fn package_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PackageRow> {
    Ok(PackageRow {
        id: digest(r.get(0)?)?,
        package: r.get(1)?,
        proposed_at: r.get::<_, i64>(2)? as u64,
        state: r.get(3)?,
    })
}

/// Reads.
pub fn packages_in(store: &Store, state: &str) -> Result<Vec<PackageRow>, StoreError> {
    let mut stmt = store.conn().prepare_cached(
        "SELECT id, package, proposed_at, state FROM packages WHERE state = ?1 ORDER BY program, version",
    )?;
    let rows = stmt.query_map([state], package_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Batch records from `start` on, for catch-up.
pub fn records_from(
    store: &Store,
    kind: usize,
    start: u64,
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = store.conn().prepare_cached(
        "SELECT record FROM batches WHERE kind = ?1 AND start >= ?2 ORDER BY start LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![kind as i64, start as i64, limit as i64], |r| {
        r.get(0)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The record whose range contains `index`, and those after it.
pub fn records_covering(
    store: &Store,
    kind: usize,
    index: u64,
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let first: Option<i64> = store
        .conn()
        .row(
            "SELECT start FROM batches WHERE kind = ?1 AND start <= ?2 ORDER BY start DESC LIMIT 1",
            params![kind as i64, index as i64],
            |r| r.get(0),
        )
        .optional()?;
    records_from(store, kind, first.unwrap_or(0) as u64, limit)
}

/// Tickets of a chain from `from` (inclusive) on.
pub fn chain_from(
    store: &Store,
    program: &str,
    identity: &str,
    from: u64,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = store.conn().prepare_cached(
        "SELECT ticket FROM tickets WHERE program = ?1 AND identity = ?2 AND sequence >= ?3 ORDER BY sequence",
    )?;
    let rows = stmt.query_map(params![program, identity, from as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The head of a chain: (sequence, hash).
pub fn chain_head(
    store: &Store,
    program: &str,
    identity: &str,
) -> Result<Option<(u64, Digest)>, StoreError> {
    qvm_node::store::tickets::chain_head(store.conn(), program, identity)
}

/// Whether a request was ticketed before.
pub fn request_seen(store: &Store, request: &Digest) -> Result<bool, StoreError> {
    request_seen_in(store.conn(), request)
}

/// [`request_seen`] inside a transaction: the ticket's, so two copies of one request
/// checked at the same time cannot both be charged.
pub fn request_seen_in(conn: &rusqlite::Connection, request: &Digest) -> Result<bool, StoreError> {
    Ok(conn
        .row(
            "SELECT 1 FROM tickets WHERE request = ?1 LIMIT 1",
            [request.as_bytes().as_slice()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Cost units charged to an identity in a window.
pub fn spent(store: &Store, program: &str, identity: &str, window: u64) -> Result<u64, StoreError> {
    qvm_node::store::tickets::spent(store.conn(), program, identity, window)
}

/// Writes.
pub fn insert_package(
    tx: &Tx<'_>,
    id: &Digest,
    program: &str,
    version: u64,
    package: &[u8],
    proposed_at: u64,
) -> Result<bool, StoreError> {
    let n = tx.conn().exec(
        "INSERT OR IGNORE INTO packages (id, program, version, package, proposed_at, state) VALUES (?1, ?2, ?3, ?4, ?5, 'proposed')",
        params![id.as_bytes().as_slice(), program, version as i64, package, proposed_at as i64],
    )?;
    Ok(n == 1)
}

/// Marks a package active (superseding the program's previous version).
pub fn activate(
    tx: &Tx<'_>,
    id: &Digest,
    program: &str,
    certificate: &[u8],
) -> Result<(), StoreError> {
    tx.conn().exec(
        "UPDATE packages SET state = 'superseded' WHERE program = ?1 AND state = 'active'",
        [program],
    )?;
    tx.conn().exec(
        "UPDATE packages SET state = 'active', certificate = ?2 WHERE id = ?1",
        params![id.as_bytes().as_slice(), certificate],
    )?;
    Ok(())
}

/// Records an issued ticket.
#[allow(clippy::too_many_arguments)]
pub fn insert_ticket(
    tx: &Tx<'_>,
    program: &str,
    identity: &str,
    sequence: u64,
    hash: &Digest,
    ticket: &[u8],
    request: &Digest,
    cost: u64,
    window: u64,
) -> Result<(), StoreError> {
    tx.conn().exec(
        "INSERT INTO tickets (program, identity, sequence, hash, ticket, request, cost, window) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![program, identity, sequence as i64, hash.as_bytes().as_slice(), ticket, request.as_bytes().as_slice(), cost as i64, window as i64],
    )?;
    qvm_node::store::tickets::charge(tx.conn(), program, identity, window, cost)
}

/// Deletes the batch records wholly below item `below` of pool slot `kind` (every
/// custodian holds them). Returns how many.
pub fn prune_batches(tx: &Tx<'_>, kind: usize, below: u64) -> Result<usize, StoreError> {
    Ok(qvm_node::store::prune_batch_records(
        tx.conn(),
        kind,
        below,
    )?)
}

/// Records a batch.
pub fn insert_batch(tx: &Tx<'_>, kind: usize, start: u64, record: &[u8]) -> Result<(), StoreError> {
    tx.conn().exec(
        "INSERT INTO batches (kind, start, record) VALUES (?1, ?2, ?3)",
        params![kind as i64, start as i64, record],
    )?;
    Ok(())
}

/// A package file the coordinator holds, by id (read from any connection, such as a
/// read-only one beside the running daemon).
pub fn package_bytes(
    conn: &rusqlite::Connection,
    id: &Digest,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .row(
            "SELECT package FROM packages WHERE id = ?1",
            [id.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .optional()?)
}

/// A package's bytes, proposal time and encoded certificate.
pub type ActiveRow = (Vec<u8>, u64, Vec<u8>);

/// A package's bytes, proposal time and certificate, once active.
pub fn package_with_certificate(
    store: &Store,
    id: &Digest,
) -> Result<Option<ActiveRow>, StoreError> {
    Ok(store
        .conn()
        .row(
            "SELECT package, proposed_at, certificate FROM packages WHERE id = ?1 AND certificate IS NOT NULL",
            [id.as_bytes().as_slice()],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)),
        )
        .optional()?)
}
