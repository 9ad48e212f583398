//! The custodian's tables on top of the node store (`qvm_node::store`).
//!
//! Secret material (share bundles, PRSS keys) is stored sealed under the node key
//! ([`crate::node::NodeKey`]): the database file alone reveals nothing. Everything that
//! must change together changes in one transaction: an admitted evaluation's ticket
//! (budget debit), rate bucket, pool high-water marks and audit entry commit at once,
//! before the component runs.

use qvm_api::marks::TakenRange;
use qvm_api::wire::pool_slot;
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
CREATE TABLE IF NOT EXISTS taken (
    kind INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    ticket BLOB, origin INTEGER NOT NULL DEFAULT 0, signed BLOB, seq INTEGER,
    mine INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, start));
CREATE TABLE IF NOT EXISTS gossip (peer INTEGER PRIMARY KEY, after INTEGER NOT NULL);
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

    /// The pooled ranges this custodian can never hand out, per pool slot: (slot, start,
    /// end) — those it admitted, and those others admitted under tickets that leave it
    /// out (a learned range of a ticket naming it may still be admitted here).
    fn taken(&self) -> Result<Vec<(usize, u64, u64)>, StoreError> {
        let mut stmt = self.db().prepare_cached(
            "SELECT kind, start, end FROM taken WHERE origin = 0 OR mine = 0 ORDER BY kind, start",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The tickets with pooled items this custodian admitted itself after `after` (a
    /// sequence number), oldest first, at most `limit`, each with the sequence number of
    /// its last range: what it tells the other custodians. Ranges recorded before
    /// tickets were kept are not told.
    fn own_tickets_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut stmt = self.db().prepare_cached(
            "SELECT seq, ticket, signed FROM taken WHERE seq > ?1 AND signed IS NOT NULL ORDER BY seq LIMIT ?2",
        )?;
        // A ticket's ranges are recorded one after another, so at most 2 rows a ticket.
        let rows = stmt.query_map(params![after as i64, 2 * limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        for row in rows {
            let (id, hash, signed) = row?;
            if last.as_ref() == Some(&hash) {
                if let Some(l) = out.last_mut() {
                    l.0 = id;
                }
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push((id, signed));
            last = Some(hash);
        }
        Ok(out)
    }

    /// Whether a ticket's ranges are recorded here (admitted or learned).
    fn knows_ticket(&self, ticket: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .row(
                "SELECT 1 FROM taken WHERE ticket = ?1 LIMIT 1",
                [ticket.as_bytes().as_slice()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// How far this custodian has read custodian `peer`'s ranges (a sequence number
    /// there).
    fn gossip_cursor(&self, peer: u8) -> Result<u64, StoreError> {
        Ok(self
            .db()
            .row(
                "SELECT after FROM gossip WHERE peer = ?1",
                [peer as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0) as u64)
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

    /// Deletes the batch records of pool `kind` wholly below `base` (those followed by a
    /// batch starting at or below it); returns how many.
    fn prune_batches(&mut self, kind: usize, base: u64) -> Result<usize, StoreError> {
        Ok(qvm_node::store::prune_batch_records(
            self.conn(),
            kind,
            base,
        )?)
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

    /// Records `range`, granted by its ticket, as admitted here, unless it overlaps a
    /// range recorded before (then returns false and records nothing). The same range of
    /// the same ticket learned from another member of the session is no overlap: it
    /// becomes this custodian's own record, which it then tells the others too.
    fn take_range(&mut self, range: &TakenRange, signed: &[u8]) -> Result<bool, StoreError> {
        let known = self.overlapping(range)?;
        match known.as_slice() {
            [] => {}
            [(k, origin)] if same(k, range) => {
                if *origin == 0 {
                    return Ok(false);
                }
                self.conn().exec(
                    "DELETE FROM taken WHERE kind = ?1 AND start = ?2",
                    params![pool_slot(range.kind) as i64, range.start as i64],
                )?;
            }
            _ => return Ok(false),
        }
        self.insert_taken(range, 0, Some(signed), true)?;
        Ok(true)
    }

    /// Records a range custodian `from` admitted (pool marks it signed) under a ticket
    /// that names this custodian too (`mine`) or not, unless this custodian knows it
    /// already or knows an overlapping range of another ticket: then the coordinator
    /// handed the same items out twice, and the overlapping ranges known here are
    /// returned as the evidence.
    fn learn_range(
        &mut self,
        from: u8,
        range: &TakenRange,
        mine: bool,
    ) -> Result<Learned, StoreError> {
        let known = self.overlapping(range)?;
        if known.is_empty() {
            self.insert_taken(range, from, None, mine)?;
            return Ok(Learned::New);
        }
        if let [(k, _)] = known.as_slice()
            && same(k, range)
        {
            return Ok(Learned::Known);
        }
        Ok(Learned::Conflict(
            known.into_iter().map(|(k, _)| k).collect(),
        ))
    }

    /// The recorded ranges overlapping `range`'s items, with their origins.
    ///
    /// Recorded ranges never overlap each other, so walking back from the last one that
    /// starts before `range.end` can stop at the first that ends at or before
    /// `range.start`: a single index probe for the usual case.
    fn overlapping(&self, range: &TakenRange) -> Result<Vec<(TakenRange, u8)>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT start, end, ticket, origin FROM taken WHERE kind = ?1 AND start < ?2 ORDER BY start DESC",
        )?;
        let mut rows = stmt.query(params![pool_slot(range.kind) as i64, range.end as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (start, end) = (r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64);
            if end <= range.start {
                break;
            }
            let ticket = match r.get::<_, Option<Vec<u8>>>(2)? {
                Some(t) => digest(t)?,
                None => Digest::default(),
            };
            let origin = r.get::<_, i64>(3)? as u8;
            let kind = range.kind;
            out.push((
                TakenRange {
                    kind,
                    start,
                    end,
                    ticket,
                },
                origin,
            ));
        }
        Ok(out)
    }

    /// Inserts a range recorded by `origin` (0: this custodian, with the signed ticket
    /// it tells the others and the next sequence number of what it tells — explicit,
    /// because `VACUUM` may renumber implicit row ids and peers keep cursors into it).
    fn insert_taken(
        &mut self,
        range: &TakenRange,
        origin: u8,
        signed: Option<&[u8]>,
        mine: bool,
    ) -> Result<(), StoreError> {
        self.conn().exec(
            &format!("INSERT INTO taken (kind, start, end, ticket, origin, signed, mine, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?5 = 0 THEN ({NEXT_SEQ}) END)"),
            params![
                pool_slot(range.kind) as i64,
                range.start as i64,
                range.end as i64,
                range.ticket.as_bytes().as_slice(),
                origin as i64,
                signed,
                mine
            ],
        )?;
        Ok(())
    }

    /// Moves the cursor on custodian `peer`'s ranges.
    fn set_gossip_cursor(&mut self, peer: u8, after: u64) -> Result<(), StoreError> {
        self.conn().exec(
            "INSERT INTO gossip (peer, after) VALUES (?1, ?2) ON CONFLICT(peer) DO UPDATE SET after = ?2",
            params![peer as i64, after as i64],
        )?;
        Ok(())
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

/// What a range learned from another custodian was, here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// New: recorded, and refused at admission from now on.
    New,
    /// Already recorded, for the same ticket.
    Known,
    /// Overlapping ranges of another ticket are recorded here: the coordinator handed
    /// the same items out twice.
    Conflict(Vec<TakenRange>),
}

/// The same range of the same ticket. A range recorded before tickets were kept (the
/// all-zero hash stands for its ticket) is taken to be the same when its bounds are.
fn same(known: &TakenRange, range: &TakenRange) -> bool {
    known.start == range.start
        && known.end == range.end
        && (known.ticket == range.ticket || known.ticket == Digest::default())
}

/// The next sequence number of an own range. The `WHERE` lets SQLite read it from the
/// partial index `taken_seq` instead of scanning the table (which made every admission
/// slower as the table grew: 2.7 → 5.4 ms per credit-score evaluation within a minute).
const NEXT_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) + 1 FROM taken WHERE seq IS NOT NULL";

/// The columns pool marks added to `taken`, for a table made before them.
const TAKEN_COLUMNS: [(&str, &str); 5] = [
    ("ticket", "BLOB"),
    ("origin", "INTEGER NOT NULL DEFAULT 0"),
    ("signed", "BLOB"),
    ("seq", "INTEGER"),
    ("mine", "INTEGER NOT NULL DEFAULT 0"),
];

/// Adds the columns of pool marks to a `taken` table made before them, and their indices.
pub fn migrate(tx: &Tx<'_>) -> Result<(), StoreError> {
    for (name, ty) in TAKEN_COLUMNS {
        let has: i64 = tx.conn().query_row(
            "SELECT COUNT(*) FROM pragma_table_info('taken') WHERE name = ?1",
            [name],
            |r| r.get(0),
        )?;
        if has == 0 {
            tx.conn()
                .execute_batch(&format!("ALTER TABLE taken ADD COLUMN {name} {ty};"))?;
        }
    }
    tx.conn().execute_batch(
        "CREATE INDEX IF NOT EXISTS taken_ticket ON taken (ticket);
         CREATE UNIQUE INDEX IF NOT EXISTS taken_seq ON taken (seq) WHERE seq IS NOT NULL;",
    )?;
    Ok(())
}

impl CustodianWrites for Tx<'_> {
    fn conn(&self) -> &rusqlite::Transaction<'_> {
        Tx::conn(self)
    }
}

#[cfg(test)]
mod tests {
    use qvm_core::sign::SigningKey;
    use qvm_mpc::pool::PoolKind;

    use super::*;

    fn open(dir: &std::path::Path) -> Store {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let mut store = Store::open(&dir.join("c.db"), "custodian-1", key, TABLES).expect("opens");
        store.write(|tx| migrate(tx)).expect("migrates");
        store
    }

    fn range(kind: PoolKind, start: u64, end: u64, ticket: u8) -> TakenRange {
        TakenRange {
            kind,
            start,
            end,
            ticket: Digest::from_bytes([ticket; 32]),
        }
    }

    /// Admits a range; the stand-in for its signed ticket is the ticket hash's first byte.
    fn take(s: &mut Store, r: &TakenRange) -> bool {
        let signed = [r.ticket.as_bytes()[0]];
        s.write(|tx| tx.take_range(r, &signed)).expect("writes")
    }

    /// What it tells: the stand-ins of the tickets, after a cursor.
    fn told(s: &Store, after: u64, limit: usize) -> Vec<(u64, u8)> {
        s.own_tickets_after(after, limit)
            .expect("reads")
            .into_iter()
            .map(|(id, t)| (id, t[0]))
            .collect()
    }

    fn learn(s: &mut Store, from: u8, r: &TakenRange) -> Learned {
        s.write(|tx| tx.learn_range(from, r, false))
            .expect("writes")
    }

    #[test]
    fn admitted_and_learned_ranges_are_refused_alike_and_reuse_is_evidence() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = open(dir.path());
        let own = range(PoolKind::Triples, 100, 200, 1);
        assert!(take(&mut s, &own));
        // The same ticket again is a replay; any overlap with it is refused.
        assert!(!take(&mut s, &own));
        assert!(!take(&mut s, &range(PoolKind::Triples, 199, 300, 2)));
        assert!(take(&mut s, &range(PoolKind::Bits, 100, 200, 2)));
        // Learned from custodian 3: recorded, then refused at admission.
        let theirs = range(PoolKind::Triples, 300, 400, 3);
        assert_eq!(learn(&mut s, 3, &theirs), Learned::New);
        assert_eq!(learn(&mut s, 3, &theirs), Learned::Known);
        assert!(s.knows_ticket(&theirs.ticket).expect("reads"));
        assert!(!s.knows_ticket(&Digest::from_bytes([9; 32])).expect("reads"));
        assert!(!take(&mut s, &range(PoolKind::Triples, 350, 360, 4)));
        // Another member of the same session told first: admitting it is no reuse, and
        // the range becomes this custodian's own to tell.
        assert_eq!(
            learn(&mut s, 2, &range(PoolKind::Triples, 500, 600, 5)),
            Learned::New
        );
        assert!(take(&mut s, &range(PoolKind::Triples, 500, 600, 5)));
        // Another ticket's items overlapping what was admitted here: the evidence.
        let reused = range(PoolKind::Triples, 150, 350, 6);
        match learn(&mut s, 3, &reused) {
            Learned::Conflict(known) => {
                assert_eq!(known.len(), 2, "{known:?}");
                assert!(known.contains(&own) && known.contains(&theirs));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // What it tells the others: the tickets of its own ranges, once each, in
        // admission order, after a cursor.
        assert!(take(&mut s, &range(PoolKind::Triples, 700, 800, 7)));
        assert!(take(&mut s, &range(PoolKind::Bits, 700, 800, 7)));
        let all = told(&s, 0, 10);
        let tickets: Vec<u8> = all.iter().map(|(_, t)| *t).collect();
        assert_eq!(tickets, vec![1, 2, 5, 7]);
        assert_eq!(told(&s, all[0].0, 10).len(), 3);
        assert!(told(&s, all[3].0, 10).is_empty());
        // A limit counts tickets, and the cursor covers both ranges of the last one.
        let two = told(&s, all[1].0, 2);
        assert_eq!(two.iter().map(|(_, t)| *t).collect::<Vec<_>>(), vec![5, 7]);
        assert_eq!(two[1].0, all[3].0);
    }

    #[test]
    fn a_range_learned_under_a_ticket_naming_this_custodian_stays_usable_here() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = open(dir.path());
        let ours = range(PoolKind::Triples, 0, 10, 1);
        let others = range(PoolKind::Triples, 10, 20, 2);
        let learned = |s: &mut Store, r: &TakenRange, mine| {
            s.write(|tx| tx.learn_range(2, r, mine)).expect("writes")
        };
        assert_eq!(learned(&mut s, &ours, true), Learned::New);
        assert_eq!(learned(&mut s, &others, false), Learned::New);
        // After a restart the pool drops what it can never hand out, not what it may.
        assert_eq!(s.taken().expect("reads"), vec![(0, 10, 20)]);
        // The other member's start arrives: admitted, now its own record.
        assert!(take(&mut s, &ours));
        assert_eq!(s.taken().expect("reads"), vec![(0, 0, 10), (0, 10, 20)]);
        assert_eq!(told(&s, 0, 10).len(), 1);
    }

    #[test]
    fn the_next_sequence_number_is_read_from_its_index() {
        let dir = tempfile::tempdir().expect("dir");
        let s = open(dir.path());
        let plan: String = s
            .db()
            .prepare(&format!("EXPLAIN QUERY PLAN {NEXT_SEQ}"))
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
            .join("; ");
        assert!(plan.contains("taken_seq"), "{plan}");
    }

    #[test]
    fn a_table_from_before_pool_marks_is_migrated_and_its_ranges_still_count() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let conn = rusqlite::Connection::open(dir.path().join("c.db")).expect("opens");
            conn.execute_batch(
                "CREATE TABLE taken (kind INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, PRIMARY KEY (kind, start));
                 INSERT INTO taken VALUES (0, 10, 20);",
            )
            .expect("old table");
        }
        let mut s = open(dir.path());
        assert!(!take(&mut s, &range(PoolKind::Triples, 15, 25, 1)));
        // Its ticket was not kept: the same bounds from a peer are taken as the same.
        assert_eq!(
            learn(&mut s, 2, &range(PoolKind::Triples, 10, 20, 1)),
            Learned::Known
        );
        assert!(told(&s, 0, 10).is_empty());
        assert!(take(&mut s, &range(PoolKind::Triples, 20, 30, 1)));
        assert_eq!(told(&s, 0, 10).len(), 1);
        s.write(|tx| tx.set_gossip_cursor(2, 7)).expect("writes");
        assert_eq!(s.gossip_cursor(2).expect("reads"), 7);
        assert_eq!(s.gossip_cursor(3).expect("reads"), 0);
    }
}
