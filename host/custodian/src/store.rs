//! The custodian's tables on top of the node store (`qvm_node::store`).
//!
//! Secret material (share bundles, PRSS keys) is stored sealed under the node key
//! ([`crate::node::NodeKey`]): the database file alone reveals nothing. Everything that
//! must change together changes in one transaction: an admitted evaluation's ticket
//! (budget debit), rate bucket, pool high-water marks and audit entry commit at once,
//! before the component runs.

use qvm_core::encoding::Digest;
use qvm_node::store::Cached;
pub use qvm_node::store::{Store, StoreError, Tx, dec, digest, enc, now_ms};
use rusqlite::{OptionalExtension, params};

/// The custodian's tables.
pub const TABLES: &str = "
CREATE TABLE IF NOT EXISTS packages (
    id BLOB PRIMARY KEY, program TEXT NOT NULL, version INTEGER NOT NULL,
    package BLOB NOT NULL, bundle BLOB NOT NULL, proposed_at INTEGER NOT NULL,
    state TEXT NOT NULL, certificate BLOB);
CREATE TABLE IF NOT EXISTS approvals (package BLOB PRIMARY KEY, approval BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    kind INTEGER NOT NULL, start INTEGER NOT NULL, id BLOB NOT NULL UNIQUE, record BLOB NOT NULL,
    PRIMARY KEY (kind, start));
CREATE TABLE IF NOT EXISTS started_batches (id BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS taken (kind INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, PRIMARY KEY (kind, start));
CREATE TABLE IF NOT EXISTS tickets (
    program TEXT NOT NULL, identity TEXT NOT NULL, sequence INTEGER NOT NULL,
    hash BLOB NOT NULL, request BLOB NOT NULL, attempt INTEGER NOT NULL,
    cost INTEGER NOT NULL, window INTEGER NOT NULL, served INTEGER NOT NULL,
    PRIMARY KEY (program, identity, sequence));
CREATE INDEX IF NOT EXISTS tickets_request ON tickets (request);
CREATE TABLE IF NOT EXISTS buckets (
    program TEXT NOT NULL, identity TEXT NOT NULL, tokens REAL NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (program, identity));
";

/// A stored package.
#[derive(Debug, Clone)]
pub struct PackageRow {
    /// Package id.
    pub id: Digest,
    /// The package file.
    pub package: Vec<u8>,
    /// This custodian's bundle, sealed under the node key.
    pub bundle: Vec<u8>,
    /// When the proposal window opened.
    pub proposed_at: u64,
    /// `proposed`, `active` or `superseded`.
    pub state: String,
    /// The activation certificate, once active.
    pub certificate: Option<Vec<u8>>,
}

fn package_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PackageRow> {
    Ok(PackageRow {
        id: digest(r.get(0)?)?,
        package: r.get(1)?,
        bundle: r.get(2)?,
        proposed_at: r.get::<_, i64>(3)? as u64,
        state: r.get(4)?,
        certificate: r.get(5)?,
    })
}

/// The custodian's queries.
pub trait CustodianReads {
    /// The connection.
    fn db(&self) -> &rusqlite::Connection;
    /// A package by id.
    fn package(&self, id: &Digest) -> Result<Option<PackageRow>, StoreError> {
        Ok(self
            .db()
            .row(
                "SELECT id, package, bundle, proposed_at, state, certificate FROM packages WHERE id = ?1",
                [id.as_bytes().as_slice()],
                package_row,
            )
            .optional()?)
    }

    /// Packages in a state.
    fn packages_in(&self, state: &str) -> Result<Vec<PackageRow>, StoreError> {
        let mut stmt = self.db().prepare_cached(
            "SELECT id, package, bundle, proposed_at, state, certificate FROM packages WHERE state = ?1 ORDER BY program, version",
        )?;
        let rows = stmt.query_map([state], package_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The active package of a program, if any.
    fn active_of(&self, program: &str) -> Result<Option<PackageRow>, StoreError> {
        Ok(self
            .db()
            .row(
                "SELECT id, package, bundle, proposed_at, state, certificate FROM packages WHERE program = ?1 AND state = 'active'",
                [program],
                package_row,
            )
            .optional()?)
    }

    /// This custodian's approval of a package.
    fn approval(&self, package: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db()
            .row(
                "SELECT approval FROM approvals WHERE package = ?1",
                [package.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every offline batch record, by pool kind then start.
    fn batch_records(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self
            .db()
            .prepare_cached("SELECT record FROM batches ORDER BY kind, start")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The pooled ranges handed out, per pool slot: (slot, start, end).
    fn taken(&self) -> Result<Vec<(usize, u64, u64)>, StoreError> {
        let mut stmt = self
            .db()
            .prepare_cached("SELECT kind, start, end FROM taken ORDER BY kind, start")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Cost units charged to an identity in a budget window.
    fn spent(&self, program: &str, identity: &str, window: u64) -> Result<u64, StoreError> {
        qvm_node::store::tickets::spent(self.db(), program, identity, window)
    }
}

impl CustodianReads for Store {
    fn db(&self) -> &rusqlite::Connection {
        self.conn()
    }
}

/// The custodian's writes, inside a node-store transaction.
pub trait CustodianWrites {
    /// The transaction.
    fn conn(&self) -> &rusqlite::Transaction<'_>;
    /// Stores a proposed package.
    fn insert_package(
        &mut self,
        id: &Digest,
        program: &str,
        version: u64,
        package: &[u8],
        sealed_bundle: &[u8],
        proposed_at: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn().exec(
            "INSERT OR IGNORE INTO packages (id, program, version, package, bundle, proposed_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'proposed')",
            params![id.as_bytes().as_slice(), program, version as i64, package, sealed_bundle, proposed_at as i64],
        )?;
        Ok(n == 1)
    }

    /// Stores this custodian's approval.
    fn put_approval(&mut self, package: &Digest, approval: &[u8]) -> Result<(), StoreError> {
        self.conn().exec(
            "INSERT OR REPLACE INTO approvals (package, approval) VALUES (?1, ?2)",
            params![package.as_bytes().as_slice(), approval],
        )?;
        Ok(())
    }

    /// Makes `id` the program's active version (the previous one is superseded).
    fn activate(
        &mut self,
        id: &Digest,
        program: &str,
        certificate: &[u8],
    ) -> Result<(), StoreError> {
        self.conn().exec(
            "UPDATE packages SET state = 'superseded' WHERE program = ?1 AND state = 'active'",
            [program],
        )?;
        self.conn().exec(
            "UPDATE packages SET state = 'active', certificate = ?2 WHERE id = ?1",
            params![id.as_bytes().as_slice(), certificate],
        )?;
        Ok(())
    }

    /// Records that this custodian sent shares for a batch id (never again for that id:
    /// reusing a batch's PRSS context with another spec would leak its values).
    fn start_batch(&mut self, id: &Digest) -> Result<bool, StoreError> {
        let n = self.conn().exec(
            "INSERT OR IGNORE INTO started_batches (id) VALUES (?1)",
            [id.as_bytes().as_slice()],
        )?;
        Ok(n == 1)
    }

    /// Stores a batch record.
    fn insert_batch(
        &mut self,
        kind: usize,
        start: u64,
        id: &Digest,
        record: &[u8],
    ) -> Result<(), StoreError> {
        self.conn().exec(
            "INSERT INTO batches (kind, start, id, record) VALUES (?1, ?2, ?3, ?4)",
            params![kind as i64, start as i64, id.as_bytes().as_slice(), record],
        )?;
        Ok(())
    }

    /// The head of an identity's ticket chain: (sequence, hash).
    fn chain_head(
        &self,
        program: &str,
        identity: &str,
    ) -> Result<Option<(u64, Digest)>, StoreError> {
        qvm_node::store::tickets::chain_head(self.conn(), program, identity)
    }

    /// The hash of ticket `sequence` of a chain, if held.
    fn ticket_hash(
        &self,
        program: &str,
        identity: &str,
        sequence: u64,
    ) -> Result<Option<Digest>, StoreError> {
        let h: Option<Vec<u8>> = self
            .conn()
            .row(
                "SELECT hash FROM tickets WHERE program = ?1 AND identity = ?2 AND sequence = ?3",
                params![program, identity, sequence as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(h.map(digest).transpose()?)
    }

    /// Attempts of a request recorded in any chain.
    fn attempts(&self, request: &Digest) -> Result<u64, StoreError> {
        Ok(self.conn().row(
            "SELECT COUNT(*) FROM tickets WHERE request = ?1",
            [request.as_bytes().as_slice()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Cost units charged to an identity in a budget window.
    fn spent(&self, program: &str, identity: &str, window: u64) -> Result<u64, StoreError> {
        qvm_node::store::tickets::spent(self.conn(), program, identity, window)
    }

    /// Appends a ticket to its chain.
    #[allow(clippy::too_many_arguments)]
    fn insert_ticket(
        &mut self,
        program: &str,
        identity: &str,
        sequence: u64,
        hash: &Digest,
        request: &Digest,
        attempt: u32,
        cost: u64,
        window: u64,
        served: bool,
    ) -> Result<(), StoreError> {
        self.conn().exec(
            "INSERT INTO tickets (program, identity, sequence, hash, request, attempt, cost, window, served) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![program, identity, sequence as i64, hash.as_bytes().as_slice(), request.as_bytes().as_slice(), attempt as i64, cost as i64, window as i64, served as i64],
        )?;
        qvm_node::store::tickets::charge(self.conn(), program, identity, window, cost)
    }

    /// A rate bucket: (tokens, updated_ms).
    fn bucket(&self, program: &str, identity: &str) -> Result<Option<(f64, u64)>, StoreError> {
        Ok(self
            .conn()
            .row(
                "SELECT tokens, updated_ms FROM buckets WHERE program = ?1 AND identity = ?2",
                params![program, identity],
                |r| Ok((r.get::<_, f64>(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?)
    }

    /// Sets a rate bucket.
    fn put_bucket(
        &mut self,
        program: &str,
        identity: &str,
        tokens: f64,
        updated_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn().exec(
            "INSERT INTO buckets (program, identity, tokens, updated_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(program, identity) DO UPDATE SET tokens = ?3, updated_ms = ?4",
            params![program, identity, tokens, updated_ms as i64],
        )?;
        Ok(())
    }

    /// Records a range of pool slot `kind` as handed out, unless it overlaps one handed
    /// out before (then returns false and records nothing).
    ///
    /// Recorded ranges never overlap, so only the one starting last before `end` can
    /// overlap `start..end`: every earlier one ends before that one starts. One index
    /// probe, however long the history.
    fn take_range(&mut self, kind: usize, start: u64, end: u64) -> Result<bool, StoreError> {
        let overlaps = self
            .conn()
            .row(
                "SELECT end FROM taken WHERE kind = ?1 AND start < ?2 ORDER BY start DESC LIMIT 1",
                params![kind as i64, end as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some_and(|e| e as u64 > start);
        if overlaps {
            return Ok(false);
        }
        self.conn().exec(
            "INSERT INTO taken (kind, start, end) VALUES (?1, ?2, ?3)",
            params![kind as i64, start as i64, end as i64],
        )?;
        Ok(true)
    }

    /// Whether ticket `sequence` of a chain is held and whether this custodian served it.
    fn ticket_served(
        &self,
        program: &str,
        identity: &str,
        sequence: u64,
    ) -> Result<Option<bool>, StoreError> {
        Ok(self
            .conn()
            .row(
                "SELECT served FROM tickets WHERE program = ?1 AND identity = ?2 AND sequence = ?3",
                params![program, identity, sequence as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|s| s != 0))
    }

    /// Marks a ticket learned from a later ticket's chain as served here now.
    fn mark_served(
        &mut self,
        program: &str,
        identity: &str,
        sequence: u64,
    ) -> Result<(), StoreError> {
        self.conn().exec(
            "UPDATE tickets SET served = 1 WHERE program = ?1 AND identity = ?2 AND sequence = ?3",
            params![program, identity, sequence as i64],
        )?;
        Ok(())
    }
}

impl CustodianWrites for Tx<'_> {
    fn conn(&self) -> &rusqlite::Transaction<'_> {
        Tx::conn(self)
    }
}
