//! Refusals on a real 2-of-3 cluster, each with its reason, and no budget spent where the
//! refusal is the client's fault; what a malicious coordinator could try (an altered
//! ticket, a forked chain, an unapproved version, pooled items granted twice) refused or
//! caught by the custodians themselves; and the coordinator's memory, database and log
//! hold no share and no key.

mod support;

use std::time::Duration;

use qvm_api::marks::{MarksQuery, SignedPoolMarks};
use qvm_api::request::{EvalRequest, InputField, InputValue, Real};
use qvm_api::ticket::Ticket;
use qvm_api::wire::{RefusalKind, SessionEvent, StartSession};
use qvm_core::PartySet;
use qvm_core::encoding::Digest;
use qvm_core::sign::SigningKey;
use qvm_mpc::pool::{PoolGrant, Range};
use qvm_node::client::{CallError, Peer, http_client};
use support::{Live, credit, identity, linear, policy, refused};

fn spent(db: &rusqlite::Connection, identity: &str) -> i64 {
    db.query_row(
        "SELECT COALESCE(SUM(cost), 0) FROM tickets WHERE identity = ?1",
        [identity],
        |r| r.get(0),
    )
    .expect("query")
}

#[test]
fn refusals_name_their_reason_and_spend_nothing() {
    let c = Live::up(2, 3);
    let key = c.client_key();
    c.deploy(
        "credit-score",
        policy(vec![
            identity(
                &key,
                "analyst",
                1_000_000,
                6_000,
                1_000,
                &["band", "approve"],
            ),
            identity(&key, "trial", 18, 6_000, 1_000, &["approve"]),
            identity(&key, "bursty", 1_000_000, 1, 2, &["band"]),
        ]),
    );
    let p = c.program("credit_score");
    let unit = p.cost.cost_units as i64;
    let mut served = 0;
    c.eval(&p, "analyst", vec![credit(0.0)]).expect("served");
    served += 1;
    // Bad client signature: another key speaks for `analyst`.
    let mallory = SigningKey::generate(&mut rand_core::OsRng);
    let req = qvm::client::sign(&mallory, &p, "analyst", vec![credit(0.0)]).expect("signs");
    refused(
        c.rt.block_on(c.client.eval(&req)),
        RefusalKind::BadClientSignature,
    );
    // A request altered after signing.
    let mut forged =
        qvm::client::sign(&key.signing, &p, "analyst", vec![credit(0.0)]).expect("signs");
    forged.request.inputs[0][0].value = support::reals(&[99.0; 12]);
    refused(
        c.rt.block_on(c.client.eval(&forged)),
        RefusalKind::BadClientSignature,
    );
    // Unknown identity.
    let msg = refused(
        c.eval(&p, "mallory", vec![credit(0.0)]),
        RefusalKind::UnknownIdentity,
    );
    assert!(msg.contains("mallory"), "{msg}");
    // Expired.
    let old = EvalRequest {
        program: p.name.clone(),
        version: p.version,
        identity: "analyst".into(),
        inputs: vec![credit(0.0)],
        nonce: vec![1; 16],
        issued_at: qvm_node::now_secs() - 3_600,
        reveal_to: None,
    }
    .sign(&key.signing)
    .expect("signs");
    refused(c.rt.block_on(c.client.eval(&old)), RefusalKind::Expired);
    // Replayed.
    let once = qvm::client::sign(&key.signing, &p, "analyst", vec![credit(1.0)]).expect("signs");
    c.rt.block_on(c.client.eval(&once)).expect("served");
    served += 1;
    refused(c.rt.block_on(c.client.eval(&once)), RefusalKind::Replay);
    // Copies of one request sent at once: one is served and charged, the others replays.
    let twice = qvm::client::sign(&key.signing, &p, "analyst", vec![credit(1.5)]).expect("signs");
    let copies = c.rt.block_on(async {
        tokio::join!(
            c.client.eval(&twice),
            c.client.eval(&twice),
            c.client.eval(&twice)
        )
    });
    let copies = [copies.0, copies.1, copies.2];
    assert_eq!(copies.iter().filter(|r| r.is_ok()).count(), 1, "{copies:?}");
    for r in copies.into_iter().filter(|r| r.is_err()) {
        refused(r, RefusalKind::Replay);
    }
    served += 1;
    // Inputs: out of bounds, wrong type, missing, undeclared.
    let mut out_of_bounds = credit(0.0);
    out_of_bounds[0].value = support::reals(&[5_000.0; 12]);
    let msg = refused(
        c.eval(&p, "analyst", vec![out_of_bounds]),
        RefusalKind::InvalidInput,
    );
    assert!(msg.contains("bounds"), "{msg}");
    let mut wrong_type = credit(0.0);
    wrong_type[1].value = InputValue::Booleans(vec![true; 4]);
    let msg = refused(
        c.eval(&p, "analyst", vec![wrong_type]),
        RefusalKind::InvalidInput,
    );
    assert!(msg.contains("wrong type"), "{msg}");
    refused(
        c.eval(&p, "analyst", vec![credit(0.0)[..1].to_vec()]),
        RefusalKind::InvalidInput,
    );
    let mut extra = credit(0.0);
    extra.push(InputField {
        name: "salary".into(),
        value: InputValue::Real(Real(1.0)),
    });
    refused(
        c.eval(&p, "analyst", vec![extra]),
        RefusalKind::InvalidInput,
    );
    // A version that is not active.
    let mut v2 = p.clone();
    v2.version += 1;
    refused(
        c.eval(&v2, "analyst", vec![credit(0.0)]),
        RefusalKind::UnknownProgram,
    );
    // Budget: `trial` affords two evaluations.
    for _ in 0..2 {
        c.eval(&p, "trial", vec![credit(2.0)])
            .expect("within budget");
    }
    let msg = refused(
        c.eval(&p, "trial", vec![credit(2.0)]),
        RefusalKind::BudgetExhausted,
    );
    assert!(msg.contains("18 of 18"), "{msg}");
    // Rate: `bursty` has a burst of two and one more per minute. Requests signed by
    // another key spend none of it (the coordinator checks the signature beside its other
    // checks, and takes a token only once it holds), nor does a forged one whose only
    // other fault is an exhausted budget learn about that budget.
    for _ in 0..3 {
        let forged = qvm::client::sign(&mallory, &p, "bursty", vec![credit(3.0)]).expect("signs");
        refused(
            c.rt.block_on(c.client.eval(&forged)),
            RefusalKind::BadClientSignature,
        );
    }
    let forged = qvm::client::sign(&mallory, &p, "trial", vec![credit(4.0)]).expect("signs");
    refused(
        c.rt.block_on(c.client.eval(&forged)),
        RefusalKind::BadClientSignature,
    );
    for _ in 0..2 {
        c.eval(&p, "bursty", vec![credit(3.0)])
            .expect("within the burst");
    }
    refused(
        c.eval(&p, "bursty", vec![credit(3.0)]),
        RefusalKind::RateLimited,
    );
    // Nothing was charged for the refusals, at the coordinator or any custodian that took
    // part: only the evaluations served.
    for i in 1..=3 {
        let db = c.custodian_db(i);
        assert!(spent(&db, "analyst") <= served * unit, "custodian {i}");
        assert!(spent(&db, "trial") <= 2 * unit, "custodian {i}");
    }
    let coordinator =
        qvm_node::store::open_read_only(&c.dir.path().join("data/coordinator/coordinator.db"))
            .expect("db");
    assert_eq!(spent(&coordinator, "analyst"), served * unit);
    assert_eq!(spent(&coordinator, "trial"), 2 * unit);
}

/// Sends a session start straight to custodian 1, as a (malicious) coordinator would.
fn start_at_custodian(c: &Live, start: &StartSession) -> Result<SessionEvent, CallError> {
    c.rt.block_on(start_at(c, 1, start))
}

/// Sends a session start straight to custodian `i`.
async fn start_at(c: &Live, i: usize, start: &StartSession) -> Result<SessionEvent, CallError> {
    let peer = Peer::new(&c.file.custodians[i - 1], http_client().expect("client"));
    peer.post("/v1/sessions", start, Duration::from_secs(10))
        .await
}

fn kind(r: Result<SessionEvent, CallError>) -> RefusalKind {
    match r {
        Err(CallError::Refused(r)) => r.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn custodians_refuse_what_a_malicious_coordinator_sends() {
    let c = Live::up(2, 3);
    c.deploy_for(
        "linear-score",
        "auditor",
        (1_000_000, 6_000, 1_000),
        &["score"],
    );
    let key = c.client_key();
    let p = c.program("linear_score");
    let coordinator = c.keys("coordinator");
    let ticket = |request: &qvm_api::request::SignedRequest,
                  sequence: u64,
                  previous: Digest,
                  package: Digest| Ticket {
        request: request.hash().expect("hash"),
        package,
        program: request.request.program.clone(),
        identity: "auditor".into(),
        session: Digest::from_bytes([sequence as u8 + 40; 32]),
        members: PartySet::first(2),
        grant: PoolGrant::default(),
        items: 1,
        attempt: 0,
        issued_at: qvm_node::now_secs(),
        expires_at: qvm_node::now_secs() + 30,
        sequence,
        previous,
    };
    let request = |shift: f64| {
        qvm::client::sign(&key.signing, &p, "auditor", vec![linear(shift)]).expect("signs")
    };
    // A ticket altered after the coordinator signed it.
    let r1 = request(0.0);
    let mut altered = ticket(&r1, 1, Digest::default(), p.package)
        .sign(&coordinator.signing)
        .expect("signs");
    altered.ticket.members = PartySet::first(3);
    let start = StartSession {
        request: r1.clone(),
        ticket: altered,
        chain: Vec::new(),
    };
    assert_eq!(kind(start_at_custodian(&c, &start)), RefusalKind::BadTicket);
    // A ticket for another request than the one it carries.
    let other = request(1.0);
    let mismatched = StartSession {
        request: other.clone(),
        ticket: ticket(&r1, 1, Digest::default(), p.package)
            .sign(&coordinator.signing)
            .expect("signs"),
        chain: Vec::new(),
    };
    assert_eq!(
        kind(start_at_custodian(&c, &mismatched)),
        RefusalKind::BadTicket
    );
    // A valid first ticket is served; a second history for the same position is a fork.
    let good = StartSession {
        request: r1.clone(),
        ticket: ticket(&r1, 1, Digest::default(), p.package)
            .sign(&coordinator.signing)
            .expect("signs"),
        chain: Vec::new(),
    };
    assert!(matches!(
        start_at_custodian(&c, &good),
        Ok(SessionEvent::Done(_))
    ));
    let fork = StartSession {
        request: other.clone(),
        ticket: ticket(&other, 1, Digest::default(), p.package)
            .sign(&coordinator.signing)
            .expect("signs"),
        chain: Vec::new(),
    };
    assert_eq!(kind(start_at_custodian(&c, &fork)), RefusalKind::ChainFork);
    // The same ticket again: a replay.
    assert_eq!(kind(start_at_custodian(&c, &good)), RefusalKind::Replay);
    // A package the custodians never activated (proposed, no certificate).
    let fraud = std::fs::read_to_string(support::root().join("packages/fraud-tree/fraud-tree.qvm"))
        .expect("source");
    let secrets = std::fs::read_to_string(support::root().join("packages/fraud-tree/secrets.toml"))
        .expect("secrets");
    let committee = qvm_package::committee::Committee::from_json(
        &std::fs::read_to_string(c.dir.path().join("committee.json")).expect("committee"),
    )
    .expect("committee");
    let pkg = qvm_package::build::build(
        qvm_package::build::BuildRequest {
            source: &fraud,
            secrets_toml: &secrets,
            policy: policy(vec![identity(
                &key,
                "auditor",
                1_000_000,
                6_000,
                1_000,
                &["flag"],
            )]),
            committee: &committee,
            owner: &c.keys("owner").signing,
            version: 1,
            previous: None,
        },
        &mut rand_core::OsRng,
    )
    .expect("builds");
    let id = pkg.manifest.id().expect("id");
    c.rt.block_on(c.client.upload(pkg.to_bytes().expect("bytes")))
        .expect("uploads");
    std::thread::sleep(Duration::from_millis(500));
    let mut fp = p.clone();
    fp.name = "fraud_tree".into();
    let fr = qvm::client::sign(
        &key.signing,
        &fp,
        "auditor",
        vec![vec![InputField {
            name: "x".into(),
            value: support::reals(&[1.0; 8]),
        }]],
    )
    .expect("signs");
    let unapproved = StartSession {
        request: fr.clone(),
        ticket: ticket(&fr, 1, Digest::default(), id)
            .sign(&coordinator.signing)
            .expect("signs"),
        chain: Vec::new(),
    };
    assert_eq!(
        kind(start_at_custodian(&c, &unapproved)),
        RefusalKind::NotActive
    );
    // And through the coordinator: no active version.
    refused(
        c.rt.block_on(c.client.eval(&fr)),
        RefusalKind::UnknownProgram,
    );
    // A batch record of four billion items, where custodian 1's triples pool ends: refused
    // before anything is derived for it (it used to allocate the items, and abort).
    wait_until(&c, "the pools stop filling", || {
        let before = pool_end(&c, 1);
        std::thread::sleep(Duration::from_millis(300));
        before[0] > 0 && before[1] > 0 && pool_end(&c, 1) == before
    });
    let record = qvm_api::wire::Control {
        to: qvm_api::wire::EVERY_CUSTODIAN,
        committee: committee.id().expect("id"),
        body: qvm_api::wire::ControlBody::BatchRecord {
            record: qvm_mpc::offline::BatchRecord {
                spec: qvm_mpc::offline::BatchSpec {
                    id: Digest::from_bytes([9; 32]),
                    kind: qvm_mpc::pool::PoolKind::Triples,
                    count: u32::MAX,
                    start: pool_end(&c, 1)[0],
                },
                public: Vec::new(),
            },
        },
    }
    .sign(&coordinator.signing)
    .expect("signs");
    let peer = Peer::new(&c.file.custodians[0], http_client().expect("client"));
    match c
        .rt
        .block_on(peer.post::<_, ()>("/v1/control", &record, Duration::from_secs(10)))
    {
        Err(CallError::Refused(r)) => assert_eq!(r.kind, RefusalKind::BadControl, "{}", r.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(pool_end(&c, 1)[0] > 0, "custodian 1 still answers");
    // Batches started where the pools end whose records never come (as from a coordinator
    // that crashed mid-batch): a later start of the same kind drops the earlier one, so at
    // most one per kind waits at the custodian.
    let start_batch = |n: u8, kind: qvm_mpc::pool::PoolKind| {
        let slot = match kind {
            qvm_mpc::pool::PoolKind::Triples => 0,
            qvm_mpc::pool::PoolKind::Bits => 1,
        };
        let control = qvm_api::wire::Control {
            to: 1,
            committee: committee.id().expect("id"),
            body: qvm_api::wire::ControlBody::BatchStart {
                spec: qvm_mpc::offline::BatchSpec {
                    id: Digest::from_bytes([n; 32]),
                    kind,
                    count: 64,
                    start: pool_end(&c, 1)[slot],
                },
            },
        }
        .sign(&coordinator.signing)
        .expect("signs");
        c.rt.block_on(peer.post::<_, qvm_mpc::msgs::ShareMsg>(
            "/v1/control",
            &control,
            Duration::from_secs(10),
        ))
        .expect("a batch starts where the pool ends");
    };
    let pending = || {
        let m = c.custodian_metrics(1);
        support::metric(&m, "qvm_custodian_offline_pending")
    };
    for n in 20..23 {
        start_batch(n, qvm_mpc::pool::PoolKind::Triples);
        assert_eq!(pending(), 1.0, "after start {n}");
    }
    start_batch(23, qvm_mpc::pool::PoolKind::Bits);
    assert_eq!(pending(), 2.0);
}

/// Custodian `i`'s pool ends (triples, bits) from its health report.
fn pool_end(c: &Live, i: usize) -> [u64; 2] {
    let peer = Peer::new(&c.file.custodians[i - 1], http_client().expect("client"));
    c.rt.block_on(peer.get::<qvm_api::wire::Health>("/v1/health", Duration::from_secs(5)))
        .expect("health")
        .pool_end
}

/// With N > 2K − 1 two session sets can be disjoint, so no custodian sees both uses of an
/// item a coordinator grants twice. The custodians pull each other's signed pool marks:
/// once custodian 3 has learned what custodian 1 admitted, it refuses the same items; two
/// grants that overlap before either has learned of the other raise an alarm at both.
#[test]
fn custodians_compare_pool_marks_and_catch_items_granted_twice() {
    let c = Live::up(2, 4);
    let key = c.client_key();
    let names = ["a", "b", "c", "d", "e"];
    c.deploy(
        "credit-score",
        policy(
            names
                .iter()
                .map(|n| identity(&key, n, 1_000_000, 6_000, 1_000, &["approve"]))
                .collect(),
        ),
    );
    let p = c.program("credit_score");
    let (per_t, per_b) = (p.cost.multiplications, p.cost.random_bits);
    assert!(per_t > 0 && per_b > 0, "credit-score is interactive");
    // Far above what the coordinator itself grants in this test (nothing).
    let grant = |n: u64| PoolGrant {
        triples: Range {
            start: 10 * per_t + n * per_t,
            count: per_t,
        },
        bits: Range {
            start: 10 * per_b + n * per_b,
            count: per_b,
        },
    };
    wait_for_pools(&c, 4, [13 * per_t, 13 * per_b]);
    let coordinator = c.keys("coordinator");
    let start = |who: &str, members: &[u32], g: PoolGrant| {
        let req = qvm::client::sign(&key.signing, &p, who, vec![credit(0.0)]).expect("signs");
        let ticket = Ticket {
            request: req.hash().expect("hash"),
            package: p.package,
            program: p.name.clone(),
            identity: who.into(),
            session: Digest::from_bytes([who.as_bytes()[0]; 32]),
            members: members.iter().fold(PartySet::EMPTY, |set, &i| {
                set.with(qvm_core::PartyIndex::new(i).expect("index"))
            }),
            grant: g,
            items: 1,
            attempt: 0,
            issued_at: qvm_node::now_secs(),
            expires_at: qvm_node::now_secs() + 30,
            sequence: 1,
            previous: Digest::default(),
        }
        .sign(&coordinator.signing)
        .expect("signs");
        StartSession {
            request: req,
            ticket,
            chain: Vec::new(),
        }
    };
    // Custodian 1 admits items for {1, 2}; once custodian 3 has pulled its marks, the
    // same items for {3, 4} are refused there.
    let admitted =
        c.rt.block_on(start_at(&c, 1, &start("a", &[1, 2], grant(0))));
    assert!(
        matches!(admitted, Ok(SessionEvent::Round(_))),
        "{admitted:?}"
    );
    // Another ticket reusing the id of that session, still running at custodian 1 (it waits
    // for its first round), is refused there before anything is charged or recorded.
    let mut reusing = start("e", &[1, 2], grant(5));
    let mut t = reusing.ticket.ticket.clone();
    t.session = Digest::from_bytes([b'a'; 32]);
    reusing.ticket = t.sign(&coordinator.signing).expect("signs");
    match c.rt.block_on(start_at(&c, 1, &reusing)) {
        Err(CallError::Refused(r)) => {
            assert_eq!(r.kind, RefusalKind::BadTicket);
            assert!(r.message.contains("already running"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let charged: i64 = c
        .custodian_db(1)
        .query_row(
            "SELECT COUNT(*) FROM tickets WHERE identity = 'e'",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(charged, 0, "nothing recorded for the refused ticket");
    wait_until(&c, "custodian 3 learns custodian 1's ranges", || {
        learned(&c, 3, 1) >= 2
    });
    let reused =
        c.rt.block_on(start_at(&c, 3, &start("b", &[3, 4], grant(0))));
    match reused {
        Err(CallError::Refused(r)) => {
            assert_eq!(r.kind, RefusalKind::ItemsUsed);
            assert!(r.message.contains("already used"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Two grants of the same items at once: each custodian admits one (unless a pull
    // fell between the two, which refuses the second: the check above), and the marks
    // each pulls from the other are the evidence.
    let (s1, s3) = (start("c", &[1, 2], grant(1)), start("d", &[3, 4], grant(1)));
    let (r1, r3) =
        c.rt.block_on(async { tokio::join!(start_at(&c, 1, &s1), start_at(&c, 3, &s3)) });
    assert!(matches!(r1, Ok(SessionEvent::Round(_))) || matches!(r3, Ok(SessionEvent::Round(_))));
    if matches!(r1, Ok(SessionEvent::Round(_))) && matches!(r3, Ok(SessionEvent::Round(_))) {
        for i in [1, 3] {
            wait_until(&c, &format!("custodian {i} raises the alarm"), || {
                alarms(&c, i).iter().any(|a| a.contains("pool reuse"))
            });
            let alarm = alarms(&c, i)
                .into_iter()
                .find(|a| a.contains("pool reuse"))
                .expect("alarm");
            for t in [&s1.ticket, &s3.ticket] {
                assert!(alarm.contains(&t.hash().expect("hash").to_hex()), "{alarm}");
            }
            let metrics = c.custodian_metrics(i);
            assert!(
                metrics.contains("qvm_custodian_alarms_total{kind=\"pool_reuse\"}"),
                "{metrics}"
            );
        }
    }
    // The alarm is in custodian 1's log, which still verifies and lists it; the cluster
    // check fails, since custodian 1 admitted tickets the coordinator never logged.
    if !alarms(&c, 1).is_empty() {
        let d = c.dir.path();
        let (db, key) = (
            d.join("data/custodian-1/custodian.db"),
            d.join("keys/custodian-1/public.json"),
        );
        let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
        let (code, out, err) =
            support::qvm(&["audit", "verify", "--db", &path(&db), "--key", &path(&key)]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("ALARM") && out.contains("pool reuse"), "{out}");
        let (code, _, err) = support::qvm(&["audit", "verify", "--cluster", &path(d)]);
        assert_ne!(code, 0);
        assert!(
            err.contains("which the coordinator's log does not give it"),
            "{err}"
        );
    }
    // Custodian 1 admits items for {1, 2}; custodian 2 learns them from its marks before
    // its own start arrives, and admits them all the same (the same ticket, no reuse).
    let e = start("e", &[1, 2], grant(2));
    let e_hash = e.ticket.hash().expect("hash");
    let first = c.rt.block_on(start_at(&c, 1, &e));
    assert!(matches!(first, Ok(SessionEvent::Round(_))), "{first:?}");
    wait_until(&c, "custodian 2 learns the session's ranges", || {
        origin_of(&c, 2, &e_hash) == Some(1)
    });
    let second = c.rt.block_on(start_at(&c, 2, &e));
    assert!(matches!(second, Ok(SessionEvent::Round(_))), "{second:?}");
    assert_eq!(origin_of(&c, 2, &e_hash), Some(0));
    // The same start again (anyone on the coordinator's links could resend it) is a
    // replay, not a ticket for used items: replays and forks are named before pools.
    let again = c.rt.block_on(start_at(&c, 1, &e));
    assert_eq!(kind(again), RefusalKind::Replay);
    // Custodian 2 and 4 took no part, and learned every admitted range all the same.
    wait_until(&c, "custodian 4 learns custodian 1's ranges", || {
        learned(&c, 4, 1) >= 2
    });
    marks_are_told_only_to_the_committee(&c, &key.signing);
}

/// Custodian 1's marks name who queried what: it answers custodian 2's signed, recent
/// question, and nobody else's.
fn marks_are_told_only_to_the_committee(c: &Live, client: &SigningKey) {
    let json = std::fs::read_to_string(c.dir.path().join("committee.json")).expect("committee");
    let committee = qvm_package::committee::Committee::from_json(&json)
        .expect("parses")
        .id()
        .expect("id");
    let peer = Peer::new(&c.file.custodians[0], http_client().expect("client"));
    let ask = |from: u8, issued_at: u64, key: &SigningKey| {
        let q = MarksQuery {
            committee,
            from,
            to: 1,
            after: 0,
            issued_at,
        }
        .sign(key)
        .expect("signs");
        c.rt.block_on(peer.post::<_, SignedPoolMarks>("/v1/pool-marks", &q, Duration::from_secs(5)))
    };
    let now = qvm_node::now_secs();
    let member = c.keys("custodian-2").signing;
    let told = ask(2, now, &member).expect("a member's question is answered");
    assert_eq!(told.marks.from, 1);
    assert!(!told.marks.tickets.is_empty());
    for (from, when, key, kind) in [
        (2, now, client, RefusalKind::BadControl), // not custodian 2's signature
        (9, now, &member, RefusalKind::BadControl), // no such custodian
        (
            1,
            now,
            &c.keys("custodian-1").signing,
            RefusalKind::BadControl,
        ), // itself
        (2, now - 3_600, &member, RefusalKind::Expired), // an old question replayed
    ] {
        match ask(from, when, key) {
            Err(CallError::Refused(r)) => assert_eq!(r.kind, kind, "{}", r.message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Counted apart from evaluation refusals.
    let metrics = c.custodian_metrics(1);
    for line in [
        "qvm_custodian_pool_marks_refused_total{reason=\"bad_control\"} 3",
        "qvm_custodian_pool_marks_refused_total{reason=\"expired\"} 1",
    ] {
        assert!(metrics.contains(line), "{metrics}");
    }
}

/// Waits until every custodian's pools reach `end` (triples, bits).
fn wait_for_pools(c: &Live, n: usize, end: [u64; 2]) {
    wait_until(c, "the pools fill", || {
        (1..=n).all(|i| {
            let peer = Peer::new(&c.file.custodians[i - 1], http_client().expect("client"));
            c.rt.block_on(peer.get::<qvm_api::wire::Health>("/v1/health", Duration::from_secs(5)))
                .is_ok_and(|h| h.pool_end[0] >= end[0] && h.pool_end[1] >= end[1])
        })
    });
}

fn wait_until(c: &Live, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn custodian_db(c: &Live, i: usize) -> rusqlite::Connection {
    qvm_node::store::open_read_only(
        &c.dir
            .path()
            .join(format!("data/custodian-{i}/custodian.db")),
    )
    .expect("db")
}

/// How many ranges custodian `i` has learned from custodian `from`.
fn learned(c: &Live, i: usize, from: u8) -> i64 {
    custodian_db(c, i)
        .query_row(
            "SELECT COUNT(*) FROM taken WHERE origin = ?1",
            [from as i64],
            |r| r.get(0),
        )
        .expect("query")
}

/// Who recorded a ticket's ranges at custodian `i`: 0 itself, else the custodian whose
/// marks it learned them from.
fn origin_of(c: &Live, i: usize, ticket: &Digest) -> Option<i64> {
    use rusqlite::OptionalExtension;
    custodian_db(c, i)
        .query_row(
            "SELECT MIN(origin) FROM taken WHERE ticket = ?1 HAVING COUNT(*) > 0",
            [ticket.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .optional()
        .expect("query")
}

/// The alarms in custodian `i`'s audit log.
fn alarms(c: &Live, i: usize) -> Vec<String> {
    let (entries, _) = qvm_node::store::read_audit(&custodian_db(c, i)).expect("audit");
    entries
        .into_iter()
        .filter_map(|e| match e.event {
            qvm_api::audit::Event::Alarm { reason } => Some(reason),
            _ => None,
        })
        .collect()
}
