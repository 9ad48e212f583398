//! Full disks. A node's database quota (`[store] max_bytes`) fails writes with SQLite's
//! "database or disk is full" — the error, and the code path, of a disk with no space
//! left — so these tests fill a custodian's and the coordinator's storage without
//! needing a small filesystem: the node refuses new work with `storage`, loses nothing,
//! and serves again once it has space.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use qvm_api::wire::RefusalKind;
use support::{GENEROUS, Live, linear};

/// Restarts a daemon with its database capped at its current size (`Some`) or uncapped.
fn restart_with_quota(c: &Live, name: &str, full: bool) {
    let pid = c.pid(name);
    c.signal(name, "KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let config = c.dir.path().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&config).expect("config");
    let mut text = match text.find("\n[store]") {
        Some(i) => text[..i + 1].to_string(),
        None => text,
    };
    if full {
        // At most what it holds now (the quota never cuts below that): the next pages it
        // needs are not there.
        text.push_str("\n[store]\nmax_bytes = 1\n");
    }
    std::fs::write(&config, text).expect("config");
    qvm::cluster::restart(c.dir.path(), name, &support::exe()).expect("restarts");
}

fn wait_all_healthy(c: &Live, n: u8) {
    for i in 1..=n {
        assert!(
            c.wait_health(i, true, Duration::from_secs(20)),
            "custodian {i} is healthy{}",
            c.logs()
        );
    }
}

/// Whether the coordinator reports custodian `index` unable to write.
fn unwritable(c: &Live, index: u8) -> bool {
    c.status()
        .custodians
        .iter()
        .any(|s| s.index == index && !s.writable)
}

fn log_of(c: &Live, name: &str) -> String {
    std::fs::read_to_string(c.dir.path().join("logs").join(format!("{name}.log")))
        .unwrap_or_default()
}

fn deploy_linear(c: &Live) -> qvm_coordinator::api::ProgramStatus {
    c.deploy_for("linear-score", "analyst", GENEROUS, &["score"]);
    c.program("linear_score")
}

#[test]
fn a_custodian_with_a_full_disk_is_failed_over_and_loses_nothing() {
    let c = Live::up(2, 3);
    let p = deploy_linear(&c);
    // A custodian serving `analyst`: its set is fixed while all are healthy (two
    // evaluations agree on it).
    wait_all_healthy(&c, 3);
    let members = |x: f64| {
        c.eval(&p, "analyst", vec![linear(x)])
            .unwrap_or_else(|e| panic!("{e}{}", c.logs()))
            .receipt
            .receipt
            .members
    };
    let (first, second) = (members(0.0), members(0.1));
    let victim = first
        .iter()
        .find(|m| second.contains(*m))
        .expect("two sets of 2 of 3 meet");
    let (v, name) = (victim.get(), format!("custodian-{victim}"));
    restart_with_quota(&c, &name, true);
    wait_all_healthy(&c, 3);
    // Every evaluation is answered — by another set once the victim has failed to write
    // (a session or an offline batch record) and reports itself unable to.
    let mut served_by_victim = usize::from(first.contains(victim)) + 1;
    let t0 = Instant::now();
    let mut n = 0;
    while !unwritable(&c, v) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the custodian never ran out of space{}",
            c.logs()
        );
        let r = c
            .eval(&p, "analyst", vec![linear(n as f64 / 10.0)])
            .unwrap_or_else(|e| panic!("evaluation {n}: {e}{}", c.logs()));
        served_by_victim += usize::from(r.receipt.receipt.members.contains(victim));
        n += 1;
    }
    let log = log_of(&c, &name);
    assert!(log.contains("cannot record durably"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The coordinator stops trying it: no session includes it, none is retried.
    let retries = c.metric("qvm_coordinator_retries_total");
    for i in 0..10 {
        let r = c
            .eval(&p, "analyst", vec![linear(i as f64)])
            .unwrap_or_else(|e| panic!("after the disk filled, {i}: {e}{}", c.logs()));
        assert!(!r.receipt.receipt.members.contains(victim));
    }
    assert_eq!(c.metric("qvm_coordinator_retries_total"), retries);
    // Nothing lost: every log verifies and cross-checks, and the victim holds a served
    // ticket for every evaluation it was part of.
    let lines = qvm::audit::verify_cluster(c.dir.path()).expect("audit logs verify");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let served: i64 = c
        .custodian_db(v)
        .query_row("SELECT COUNT(*) FROM tickets WHERE served = 1", [], |r| {
            r.get(0)
        })
        .expect("query");
    assert!(
        served as usize >= served_by_victim,
        "{served} < {served_by_victim}"
    );
    // Space again: it serves (with another custodian down, only sets with it remain).
    restart_with_quota(&c, &name, false);
    wait_all_healthy(&c, 3);
    let other = (1..=3u8).find(|i| *i != v).expect("another custodian");
    c.signal(&format!("custodian-{other}"), "STOP");
    assert!(c.wait_health(other, false, Duration::from_secs(5)));
    let r = c
        .eval(&p, "analyst", vec![linear(0.5)])
        .unwrap_or_else(|e| panic!("{e}{}", c.logs()));
    assert!(r.receipt.receipt.members.contains(victim));
    c.signal(&format!("custodian-{other}"), "CONT");
}

#[test]
fn a_coordinator_with_a_full_disk_refuses_with_storage_and_recovers() {
    let c = Live::up(2, 3);
    let p = deploy_linear(&c);
    c.eval(&p, "analyst", vec![linear(0.0)]).expect("served");
    restart_with_quota(&c, "coordinator", true);
    wait_all_healthy(&c, 3);
    // It cannot record a ticket: a clear refusal, not a hang or a crash.
    let t0 = Instant::now();
    let message = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the coordinator never ran out of space{}",
            c.logs()
        );
        match c.eval(&p, "analyst", vec![linear(0.1)]) {
            Ok(_) => continue,
            Err(e) => break support::refused(Err(e), RefusalKind::Storage),
        }
    };
    assert!(message.contains("cannot record durably"), "{message}");
    // Nothing served without its record: every audit log still verifies.
    qvm::audit::verify_cluster(c.dir.path()).expect("audit logs verify");
    assert!(!log_of(&c, "coordinator").contains("panicked"));
    restart_with_quota(&c, "coordinator", false);
    wait_all_healthy(&c, 3);
    c.eval(&p, "analyst", vec![linear(0.2)])
        .unwrap_or_else(|e| panic!("{e}{}", c.logs()));
}
