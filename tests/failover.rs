//! Custodians failing under load on real clusters: killed (SIGKILL) before and during a
//! load, stalled (SIGSTOP) mid-session, killed and restarted.

mod support;

use std::time::Duration;

use qvm_api::wire::RefusalKind;
use support::{Live, credit, identity, linear, policy, refused};

/// Runs `n` evaluations alternating the two programs on a thread, returning each result's
/// serving set (or the error) — while the test does things to the cluster.
fn load(c: &Live, n: usize) -> std::thread::JoinHandle<Vec<Result<qvm_core::PartySet, String>>> {
    let client = c.client.clone();
    let key = c.client_key();
    let credit_p = c.program("credit_score");
    let linear_p = c.program("linear_score");
    std::thread::spawn(move || {
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
                rt.block_on(client.eval(&req))
                    .map(|r| r.receipt.receipt.members)
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
}

fn deploy_both(c: &Live) {
    let key = c.client_key();
    let p = |outputs: &[&str]| {
        policy(vec![identity(
            &key,
            "analyst",
            100_000_000,
            60_000,
            10_000,
            outputs,
        )])
    };
    c.deploy("linear-score", p(&["score"]));
    c.deploy("credit-score", p(&["score", "band", "approve"]));
}

#[test]
fn n_minus_k_custodians_killed_before_and_during_load() {
    let c = Live::up(3, 5);
    deploy_both(&c);
    // One killed before the load, one during it.
    c.signal("custodian-5", "KILL");
    let running = load(&c, 24);
    std::thread::sleep(Duration::from_millis(600));
    c.signal("custodian-2", "KILL");
    let results = running.join().expect("load");
    for (i, r) in results.iter().enumerate() {
        let q = r
            .as_ref()
            .unwrap_or_else(|e| panic!("evaluation {i}: {e}{}", c.logs()));
        assert_eq!(q.len(), 3);
    }
    let late: Vec<_> = results[results.len() / 2..].iter().flatten().collect();
    assert!(
        late.iter()
            .all(|q| !q.contains(qvm_core::PartyIndex::new(2).expect("index")))
    );
    // One more: the refusal names the shortfall.
    c.signal("custodian-1", "KILL");
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
    let running = load(&c, 12);
    std::thread::sleep(Duration::from_millis(400));
    c.signal("custodian-2", "STOP");
    let results = running.join().expect("load");
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "evaluation {i}: {r:?}{}", c.logs());
    }
    assert!(
        c.wait_health(2, false, Duration::from_secs(5)),
        "custodian 2 is marked unhealthy"
    );
    assert!(
        c.metric("qvm_coordinator_retries_total") >= 1.0,
        "a session was retried with another set"
    );
    c.signal("custodian-2", "CONT");
    assert!(
        c.wait_health(2, true, Duration::from_secs(10)),
        "custodian 2 recovers"
    );
    // It serves again: with 1 or 3 down, only {1,2} or {2,3} remain.
    c.signal("custodian-3", "STOP");
    assert!(c.wait_health(3, false, Duration::from_secs(5)));
    let p = c.program("credit_score");
    let r = c.eval(&p, "analyst", vec![credit(0.0)]).expect("served");
    assert!(
        r.receipt
            .receipt
            .members
            .contains(qvm_core::PartyIndex::new(2).expect("index"))
    );
    c.signal("custodian-3", "CONT");
}

#[test]
fn a_custodian_killed_under_load_restarts_with_nothing_lost() {
    let c = Live::up(2, 3);
    deploy_both(&c);
    let running = load(&c, 16);
    std::thread::sleep(Duration::from_millis(500));
    c.signal("custodian-1", "KILL");
    let results = running.join().expect("load");
    let served_by_1 = results
        .iter()
        .flatten()
        .filter(|q| q.contains(qvm_core::PartyIndex::new(1).expect("index")))
        .count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    qvm::cluster::restart(c.dir.path(), "custodian-1", &support::exe()).expect("restarts");
    assert!(
        c.wait_health(1, true, Duration::from_secs(20)),
        "custodian 1 is back{}",
        c.logs()
    );
    // Its audit chain verifies; its budget counters cover every evaluation it served.
    let lines = qvm::audit::verify_cluster(c.dir.path()).expect("audit logs verify");
    assert!(lines.len() == 4, "{lines:?}");
    let db = c.custodian_db(1);
    let recorded: i64 = db
        .query_row("SELECT COUNT(*) FROM tickets WHERE served = 1", [], |r| {
            r.get(0)
        })
        .expect("query");
    assert!(
        recorded as usize >= served_by_1,
        "{recorded} < {served_by_1}"
    );
    // No package or approval lost: it serves both programs again.
    let approvals: i64 = db
        .query_row("SELECT COUNT(*) FROM approvals", [], |r| r.get(0))
        .expect("query");
    assert_eq!(approvals, 2);
    c.signal("custodian-2", "KILL");
    assert!(c.wait_health(2, false, Duration::from_secs(5)));
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
        assert!(
            r.receipt
                .receipt
                .members
                .contains(qvm_core::PartyIndex::new(1).expect("index"))
        );
    }
}
