//! Custodians failing under load on real clusters: killed (SIGKILL) before and during a
//! load, stalled (SIGSTOP) mid-session, killed and restarted.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qvm_api::wire::RefusalKind;
use qvm_mpc::pool::PoolKind;
use support::{GENEROUS, Live, credit, linear, refused};

/// A load running on its own thread, and how many of its evaluations have finished.
struct Load {
    done: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<Result<qvm_core::PartySet, String>>>,
}

impl Load {
    /// Waits until `k` evaluations have finished (so what the test does next happens
    /// during the load, however fast evaluations are); returns how many had.
    fn after(&self, k: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.done.load(Ordering::SeqCst) < k && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.done.load(Ordering::SeqCst)
    }

    fn join(self) -> Vec<Result<qvm_core::PartySet, String>> {
        self.thread.join().expect("load")
    }
}

/// Runs `n` evaluations alternating the two programs on a thread, returning each result's
/// serving set (or the error) — while the test does things to the cluster.
fn load(c: &Live, n: usize) -> Load {
    let done = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&done);
    let client = c.client.clone();
    let key = c.client_key();
    let credit_p = c.program("credit_score");
    let linear_p = c.program("linear_score");
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (0..n)
            .map(|i| {
                let (p, input) = if i % 2 == 0 {
                    (&credit_p, credit(i as f64 / 10.0))
                } else {
                    (&linear_p, linear(i as f64 / 10.0))
                };
                let req =
                    qvm::client::sign(&key.signing, p, "analyst", vec![input]).expect("signs");
                let r = rt
                    .block_on(client.eval(&req))
                    .map(|r| r.receipt.receipt.members)
                    .map_err(|e| e.to_string());
                counter.fetch_add(1, Ordering::SeqCst);
                r
            })
            .collect()
    });
    Load { done, thread }
}

fn deploy_both(c: &Live) {
    c.deploy_for("linear-score", "analyst", GENEROUS, &["score"]);
    c.deploy_for(
        "credit-score",
        "analyst",
        GENEROUS,
        &["score", "band", "approve"],
    );
}

/// A custodian serving both programs for `analyst` (any two sets of K out of fewer than 2K
/// live custodians meet). The coordinator keeps one identity's requests on the same set
/// while it is healthy, so that is the custodian whose failure the load runs into.
fn serving_both(c: &Live) -> qvm_core::PartyIndex {
    let members = |name: &str, input| {
        c.eval(&c.program(name), "analyst", vec![input])
            .unwrap_or_else(|e| panic!("{name}: {e}{}", c.logs()))
            .receipt
            .receipt
            .members
    };
    let credit_q = members("credit_score", credit(0.0));
    let linear_q = members("linear_score", linear(0.0));
    credit_q
        .iter()
        .find(|p| linear_q.contains(*p))
        .expect("two sets of K among fewer than 2K custodians meet")
}

#[test]
fn n_minus_k_custodians_killed_before_and_during_load() {
    let c = Live::up(3, 5);
    deploy_both(&c);
    // One killed before the load, one during it.
    c.signal("custodian-5", "KILL");
    assert!(c.wait_health(5, false, Duration::from_secs(5)));
    let victim = serving_both(&c);
    let running = load(&c, 24);
    let killed_at = running.after(6);
    c.signal(&format!("custodian-{victim}"), "KILL");
    let results = running.join();
    for (i, r) in results.iter().enumerate() {
        let q = r
            .as_ref()
            .unwrap_or_else(|e| panic!("evaluation {i}: {e}{}", c.logs()));
        assert_eq!(q.len(), 3);
    }
    // Evaluations that started after the kill (the one in flight may have finished first).
    let late: Vec<_> = results[killed_at + 1..].iter().flatten().collect();
    assert!(late.len() >= 12);
    assert!(late.iter().all(|q| !q.contains(victim)));
    // One more: the refusal names the shortfall.
    let third = (1..=4u8)
        .find(|i| *i != victim.get())
        .expect("a live custodian");
    c.signal(&format!("custodian-{third}"), "KILL");
    let p = c.program("credit_score");
    let msg = refused(
        c.eval(&p, "analyst", vec![credit(0.0)]),
        RefusalKind::Unavailable,
    );
    assert!(msg.contains("2 of the 3 custodians needed"), "{msg}");
}

#[test]
fn a_stalled_custodian_is_failed_over_and_recovers() {
    let c = Live::up(2, 3);
    deploy_both(&c);
    let stalled = serving_both(&c);
    let name = format!("custodian-{stalled}");
    let running = load(&c, 12);
    running.after(3);
    c.signal(&name, "STOP");
    let results = running.join();
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "evaluation {i}: {r:?}{}", c.logs());
    }
    let index = stalled.get();
    assert!(
        c.wait_health(index, false, Duration::from_secs(5)),
        "the stalled custodian is marked unhealthy"
    );
    assert!(
        c.metric("qvm_coordinator_retries_total") >= 1.0,
        "a session was retried with another set"
    );
    c.signal(&name, "CONT");
    assert!(
        c.wait_health(index, true, Duration::from_secs(10)),
        "the stalled custodian recovers"
    );
    // It serves again: with one of the other two down, the only set left includes it.
    let other = (1..=3u8).find(|i| *i != index).expect("another custodian");
    c.signal(&format!("custodian-{other}"), "STOP");
    assert!(c.wait_health(other, false, Duration::from_secs(5)));
    let p = c.program("credit_score");
    let r = c.eval(&p, "analyst", vec![credit(0.0)]).expect("served");
    assert!(r.receipt.receipt.members.contains(stalled));
    c.signal(&format!("custodian-{other}"), "CONT");
}

#[test]
fn a_custodian_killed_under_load_restarts_with_nothing_lost() {
    let c = Live::up(2, 3);
    deploy_both(&c);
    let victim = serving_both(&c);
    let (v, name) = (victim.get(), format!("custodian-{victim}"));
    let running = load(&c, 16);
    running.after(4);
    c.signal(&name, "KILL");
    let results = running.join();
    // With the two probes of `serving_both`.
    let served = 2 + results
        .iter()
        .flatten()
        .filter(|q| q.contains(victim))
        .count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    qvm::cluster::restart(c.dir.path(), &name, &support::exe()).expect("restarts");
    assert!(
        c.wait_health(v, true, Duration::from_secs(20)),
        "{name} is back{}",
        c.logs()
    );
    // Its audit chain verifies; its budget counters cover every evaluation it served.
    let lines = qvm::audit::verify_cluster(c.dir.path()).expect("audit logs verify");
    assert!(lines.len() == 4, "{lines:?}");
    let db = c.custodian_db(v);
    let recorded: i64 = db
        .query_row("SELECT COUNT(*) FROM tickets WHERE served = 1", [], |r| {
            r.get(0)
        })
        .expect("query");
    assert!(recorded as usize >= served, "{recorded} < {served}");
    // No package or approval lost: it serves both programs again.
    let approvals: i64 = db
        .query_row("SELECT COUNT(*) FROM approvals", [], |r| r.get(0))
        .expect("query");
    assert_eq!(approvals, 2);
    let other = (1..=3u8).find(|i| *i != v).expect("another custodian");
    c.signal(&format!("custodian-{other}"), "KILL");
    assert!(c.wait_health(other, false, Duration::from_secs(5)));
    for p in ["credit_score", "linear_score"] {
        let prog = c.program(p);
        let input = if p == "credit_score" {
            credit(0.5)
        } else {
            linear(0.5)
        };
        let r = c
            .eval(&prog, "analyst", vec![input])
            .unwrap_or_else(|e| panic!("{p}: {e}{}", c.logs()));
        assert!(r.receipt.receipt.members.contains(victim));
    }
}

/// A session start for one credit-score input at custodians 2 and 3, signed by the
/// coordinator's key, granting the given items.
fn stale_start(
    c: &Live,
    p: &qvm_coordinator::api::ProgramStatus,
    triples: qvm_mpc::pool::Range,
    bits: qvm_mpc::pool::Range,
) -> qvm_api::wire::StartSession {
    let request =
        qvm::client::sign(&c.client_key().signing, p, "analyst", vec![credit(0.5)]).expect("signs");
    let members = [2, 3].iter().fold(qvm_core::PartySet::EMPTY, |set, &i| {
        set.with(qvm_core::PartyIndex::new(i).expect("index"))
    });
    let ticket = qvm_api::ticket::Ticket {
        request: request.hash().expect("hash"),
        package: p.package,
        program: p.name.clone(),
        identity: "analyst".into(),
        session: qvm_core::encoding::Digest::from_bytes([7; 32]),
        members,
        grant: qvm_mpc::pool::PoolGrant { triples, bits },
        items: 1,
        attempt: 0,
        issued_at: qvm_node::now_secs(),
        expires_at: qvm_node::now_secs() + 30,
        sequence: 1,
        previous: qvm_core::encoding::Digest::default(),
    }
    .sign(&c.keys("coordinator").signing)
    .expect("signs");
    qvm_api::wire::StartSession {
        request,
        ticket,
        chain: Vec::new(),
    }
}

/// Items no ticket can grant any more are retired (their tickets expired), which frees
/// the pool behind them, and the batch records wholly below the pool's base are deleted;
/// the custodian restarts from the first batch it kept and serves again. Custodian 3 is
/// down while custodians 1 and 2 use the first pooled items, so they stay in its pool
/// until retired — as after sessions that failed over without it, or with gossip off.
#[test]
fn retired_items_prune_their_batches_and_the_custodian_restarts_from_the_rest() {
    let c = Live::up(2, 3);
    deploy_both(&c);
    let p = c.program("credit_score");
    let per_t = p.cost.multiplications;
    let of_kind = |kind: i64| -> i64 {
        c.custodian_db(3)
            .query_row(
                "SELECT COUNT(*) FROM batches WHERE kind = ?1",
                [kind],
                |r| r.get(0),
            )
            .expect("query")
    };
    // The pools fill (two batches of triples) before custodian 3 goes down.
    let wait = std::time::Instant::now() + Duration::from_secs(60);
    while of_kind(0) < 2 || of_kind(1) < 1 {
        assert!(std::time::Instant::now() < wait, "pools fill{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.signal("custodian-3", "KILL");
    assert!(c.wait_health(3, false, Duration::from_secs(5)));
    // More triples than the first batch holds (16 384: the offline phase starts with
    // batches of twice the configured 8 192 while the pools are empty), in batches of ten
    // inputs; and fewer than the two filled (24 576), since nothing refills them while
    // custodian 3 is down and the test serves three more with custodian 1 down later.
    for n in 0..4 {
        let inputs = (0..10).map(|i| credit(i as f64 / 10.0)).collect();
        c.eval(&p, "analyst", inputs)
            .unwrap_or_else(|e| panic!("batch {n}: {e}{}", c.logs()));
    }
    let granted = |kind: i64| -> u64 {
        c.custodian_db(1)
            .query_row(
                "SELECT COALESCE(MAX(end), 0) FROM taken WHERE kind = ?1",
                [kind],
                |r| r.get::<_, i64>(0),
            )
            .expect("query") as u64
    };
    // Every item below was allocated to a ticket that expires.
    let x = [granted(0), granted(1)];
    assert!(x[0] >= 40 * per_t, "{x:?}");
    let toml = c.dir.path().join("custodian-3.toml");
    let batches = || -> i64 {
        c.custodian_db(3)
            .query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))
            .expect("query")
    };
    let before = batches();
    {
        let node =
            qvm_custodian::Node::open_offline(&qvm_custodian::Config::load(&toml).expect("config"))
                .expect("opens");
        let bases =
            || node.with_pool(|pool| [PoolKind::Triples, PoolKind::Bits].map(|k| pool.base(k)));
        let range = |start, count| qvm_mpc::pool::Range { start, count };
        // Not yet expired: nothing is retired, nothing pruned.
        node.note_grant(
            1_000,
            &qvm_mpc::pool::PoolGrant {
                triples: range(x[0], 1),
                bits: range(x[1], 1),
            },
        );
        assert_eq!(node.sweep(1_000).expect("sweeps"), 0);
        let pinned = bases();
        assert_eq!(pinned, [0, 0]);
        // Expired: everything below is retired, and the records below the bases pruned.
        let pruned = node.sweep(2_000).expect("sweeps");
        let freed = bases();
        assert!(
            freed[0] >= x[0] && freed[1] >= x[1],
            "{pinned:?} -> {freed:?}, {x:?}"
        );
        // The first triples batch at least (its successor starts at 16 384 <= the base).
        assert!(pruned >= 1, "{pruned} batch records pruned");
        assert_eq!(batches(), before - pruned as i64);
        // A ticket still valid for retired items (as a coordinator whose clock stepped
        // back would issue) is refused before anything is recorded.
        let per_b = p.cost.random_bits;
        let stale = stale_start(
            &c,
            &p,
            range(x[0] - per_t, per_t),
            range(x[1] - per_b, per_b),
        );
        let entries = node.store().audit_len().expect("audit");
        match qvm_custodian::admission::admit(&node, &stale) {
            Err(r) => {
                assert_eq!(r.kind, RefusalKind::ItemsUsed);
                assert!(r.message.contains("retired"), "{}", r.message);
            }
            Ok(_) => panic!("a ticket for retired items was admitted"),
        }
        assert_eq!(node.store().audit_len().expect("audit"), entries);
        let tickets: i64 = c
            .custodian_db(3)
            .query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get(0))
            .expect("query");
        assert_eq!(tickets, 0, "nothing recorded for the refused ticket");
    }
    qvm::cluster::restart(c.dir.path(), "custodian-3", &support::exe()).expect("restarts");
    assert!(
        c.wait_health(3, true, Duration::from_secs(20)),
        "custodian 3 is back{}",
        c.logs()
    );
    // Its sweeps report what its pools hold.
    let metrics = || c.custodian_metrics(3);
    let wait = std::time::Instant::now() + Duration::from_secs(10);
    while !metrics().contains("qvm_custodian_pool_held{pool=\"triples\"}") {
        assert!(std::time::Instant::now() < wait, "{}", metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Served with custodian 3 in every set: from the pool it rebuilt.
    c.signal("custodian-1", "KILL");
    assert!(c.wait_health(1, false, Duration::from_secs(5)));
    served_with(&c, 3);
}

/// The coordinator keeps batch records only until every custodian holds them: a custodian
/// down through a long load keeps them all there, catches up in order when back (a
/// record beyond its pool's end is refused, never skipped to), and then they go.
#[test]
fn the_coordinator_prunes_records_once_every_custodian_holds_them() {
    let c = Live::up(2, 4);
    deploy_both(&c);
    // Custodian 4 goes down with at most the first fill (about 20 000 triples).
    c.signal("custodian-4", "KILL");
    assert!(c.wait_health(4, false, Duration::from_secs(5)));
    let p = c.program("credit_score");
    let per_t = p.cost.multiplications;
    let mut used = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while used < 80 * per_t {
        assert!(std::time::Instant::now() < deadline, "{}", c.logs());
        let inputs = (0..10).map(|i| credit(i as f64 / 10.0)).collect();
        match c.eval(&p, "analyst", inputs) {
            Ok(_) => used += 10 * per_t,
            Err(e) if e.to_string().contains("pool") => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("{e}{}", c.logs()),
        }
    }
    let first_kept = || -> i64 {
        let db =
            qvm_node::store::open_read_only(&c.dir.path().join("data/coordinator/coordinator.db"))
                .expect("db");
        db.query_row(
            "SELECT COALESCE(MIN(start), 0) FROM batches WHERE kind = 0",
            [],
            |r| r.get(0),
        )
        .expect("query")
    };
    let custodian_end = || -> i64 {
        c.custodian_db(4)
            .query_row(
                "SELECT COALESCE(MAX(start), 0) FROM batches WHERE kind = 0",
                [],
                |r| r.get(0),
            )
            .expect("query")
    };
    // Custodian 4 lacks records; the coordinator still has them.
    std::thread::sleep(Duration::from_secs(2));
    let behind = custodian_end();
    assert!(
        first_kept() <= behind + 8_192,
        "{} > {behind}",
        first_kept()
    );
    qvm::cluster::restart(c.dir.path(), "custodian-4", &support::exe()).expect("restarts");
    assert!(
        c.wait_health(4, true, Duration::from_secs(20)),
        "{}",
        c.logs()
    );
    // It catches up in order, and then the records every custodian holds go.
    let wait = std::time::Instant::now() + Duration::from_secs(60);
    while custodian_end() < 32_768 || first_kept() < 32_768 {
        assert!(
            std::time::Instant::now() < wait,
            "custodian 4 at {}, first record kept {}{}",
            custodian_end(),
            first_kept(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in [1u8, 2] {
        c.signal(&format!("custodian-{i}"), "KILL");
        assert!(c.wait_health(i, false, Duration::from_secs(5)));
    }
    served_with(&c, 4);
}

/// Three credit-score evaluations, each served by a set that includes custodian `i`.
fn served_with(c: &Live, i: u32) {
    let (p, member) = (
        c.program("credit_score"),
        qvm_core::PartyIndex::new(i).expect("index"),
    );
    for n in 0..3 {
        let r = c
            .eval(&p, "analyst", vec![credit(n as f64 / 3.0)])
            .unwrap_or_else(|e| panic!("{e}{}", c.logs()));
        assert!(r.receipt.receipt.members.contains(member));
    }
}
