//! Cluster tests: the coordinator and N custodians as separate processes on loopback,
//! started by `qvm cluster up`, driven through the `qvm` binary as an operator and a
//! client would.

mod support;

use support::{Live, assert_matches, inputs, program};

#[test]
fn local_and_interactive_programs_match_the_evaluator() {
    for (k, n) in [(2u8, 3u8), (3, 5)] {
        let cluster = Live::up_cli(k, n);
        for name in ["linear-score", "credit-score"] {
            cluster.deploy_cli(name);
            let (ir, secrets) = program(name);
            for variant in 0..2 {
                let (args, scaled) = inputs(&ir, variant);
                let want = qvm_lang::eval::evaluate(&ir, &scaled, &secrets).expect("evaluates");
                let (code, out) = cluster.eval_cli(&ir.name, &args);
                assert_eq!(code, 0, "({k},{n}) {name}: {out}{}", cluster.logs());
                assert_matches(&ir, &out, &want);
            }
        }
    }
}

/// Every byte string of `needles` (each at least 8 bytes) found in `haystack`: one pass,
/// a bit filter on each position's first 8 bytes, then a full comparison.
fn found<'a>(haystack: &[u8], needles: &'a [(String, Vec<u8>)]) -> Vec<&'a str> {
    let prefix = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let mut filter = vec![0u64; 1 << 14];
    let slot = |p: u64| ((p ^ (p >> 20) ^ (p >> 40)) & ((1 << 20) - 1)) as usize;
    for (_, n) in needles {
        let s = slot(prefix(n));
        filter[s / 64] |= 1 << (s % 64);
    }
    let mut hits = vec![false; needles.len()];
    for i in 0..haystack.len().saturating_sub(7) {
        let p = prefix(&haystack[i..]);
        let s = slot(p);
        if filter[s / 64] & (1 << (s % 64)) == 0 {
            continue;
        }
        for (j, (_, n)) in needles.iter().enumerate() {
            if haystack[i..].starts_with(n) {
                hits[j] = true;
            }
        }
    }
    needles
        .iter()
        .zip(hits)
        .filter(|(_, h)| *h)
        .map(|((what, _), _)| what.as_str())
        .collect()
}

/// A process's writable memory (heap, stacks, anonymous mappings), region by region.
fn regions(pid: u32) -> impl Iterator<Item = Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    let ranges: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (range, perms) = (parts.next()?, parts.next()?);
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            // Skip huge reservations (the custodians' pooled instance slots are terabytes
            // of untouched address space; the coordinator has none).
            (perms.starts_with("rw") && b - a <= 1 << 30).then_some((a, b))
        })
        .collect();
    ranges.into_iter().filter_map(move |(a, b)| {
        let mut buf = vec![0u8; (b - a) as usize];
        (mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok()).then_some(buf)
    })
}

#[test]
fn the_coordinator_holds_no_share_and_no_key() {
    let c = support::Live::up(2, 3);
    c.deploy_for(
        "credit-score",
        "analyst",
        (1_000_000, 6_000, 1_000),
        &["band", "approve"],
    );
    let p = c.program("credit_score");
    for i in 0..4 {
        c.eval(&p, "analyst", vec![support::credit(i as f64)])
            .expect("served");
    }
    // What must never reach the coordinator: every custodian's shares of the secrets, its
    // PRSS keys and its pairwise keys (read from the custodians' own stores).
    let committee = qvm_package::committee::Committee::from_json(
        &std::fs::read_to_string(c.dir.path().join("committee.json")).expect("committee"),
    )
    .expect("committee");
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    let mut custodian_secrets = Vec::new();
    for i in 1..=3u8 {
        let config = qvm_custodian::Config::load(&c.dir.path().join(format!("custodian-{i}.toml")))
            .expect("config");
        let node = qvm_custodian::Node::open_offline(&config).expect("opens");
        let active = node.active("credit_score").expect("active");
        let mut mine = Vec::new();
        for (name, shares) in active.secrets.iter() {
            for (e, s) in shares.as_slice().iter().enumerate() {
                // Small shares could occur by chance; shares are uniform, so nearly all are large.
                if s.to_u128() > 1 << 64 {
                    mine.push((
                        format!("custodian {i}'s share of {name}[{e}]"),
                        s.to_le_bytes().to_vec(),
                    ));
                }
            }
        }
        for (set, k) in node.keyring().expect("keyring").keys() {
            needles.push((
                format!("custodian {i}'s PRSS key for {set:?}"),
                k.as_bytes().to_vec(),
            ));
        }
        let agreement = c
            .keys(&format!("custodian-{i}"))
            .agreement
            .expect("agreement key");
        for other in &committee.custodians {
            if other.index != i {
                let k = agreement.pairwise(&other.agreement, &committee.id().expect("id"));
                needles.push((
                    format!("pairwise key {i}-{}", other.index),
                    k.as_bytes().to_vec(),
                ));
            }
        }
        custodian_secrets.push((i, mine.clone()));
        needles.extend(mine);
    }
    assert!(needles.len() > 50, "{} needles", needles.len());
    // Control: the search finds a custodian's own shares in that custodian's memory.
    let (i, shares) = &custodian_secrets[0];
    let in_custodian =
        regions(c.pid(&format!("custodian-{i}"))).any(|r| !found(&r, shares).is_empty());
    assert!(in_custodian, "the scan finds shares where they are");
    // The coordinator: its memory, its database (and write-ahead log), its log file.
    let mut haystack: Vec<u8> = regions(c.pid("coordinator")).flatten().collect();
    assert!(haystack.len() > 1 << 20, "read the coordinator's memory");
    for f in [
        "data/coordinator/coordinator.db",
        "data/coordinator/coordinator.db-wal",
        "logs/coordinator.log",
    ] {
        haystack.extend(std::fs::read(c.dir.path().join(f)).unwrap_or_default());
    }
    let leaked = found(&haystack, &needles);
    assert!(leaked.is_empty(), "the coordinator holds {leaked:?}");
}

#[test]
fn a_batch_runs_in_the_rounds_of_one_evaluation() {
    let c = support::Live::up(2, 3);
    c.deploy_for(
        "credit-score",
        "analyst",
        (1_000_000, 6_000, 1_000),
        &["band", "approve"],
    );
    let p = c.program("credit_score");
    let single = c
        .eval(&p, "analyst", vec![support::credit(0.0)])
        .unwrap_or_else(|e| panic!("{e}{}", c.logs()));
    let batch: Vec<_> = (0..5).map(|i| support::credit(i as f64 * -3.0)).collect();
    let many = c.eval(&p, "analyst", batch.clone()).expect("served");
    assert_eq!(many.outputs.len(), 5);
    assert_eq!(many.receipt.receipt.rounds, single.receipt.receipt.rounds);
    assert_eq!(many.receipt.receipt.cost, 5 * p.cost.cost_units);
    // Each row equals the evaluation of that input alone.
    for (row, input) in many.outputs.iter().zip(&batch) {
        let want = support::expected("credit-score", input);
        for o in row {
            let (_, w) = want.iter().find(|(n, _)| *n == o.name).expect("output");
            assert_eq!(&o.raw, w, "{}", o.name);
        }
    }
    // A local-only program's batch runs its inputs one after another in one instance at
    // each custodian: no rounds, and each row still its input's own evaluation.
    c.deploy_for(
        "linear-score",
        "analyst",
        (1_000_000, 6_000, 1_000),
        &["score"],
    );
    let p = c.program("linear_score");
    let batch: Vec<_> = (0..7)
        .map(|i| support::linear(i as f64 * 7.5 - 20.0))
        .collect();
    let many = c
        .eval(&p, "analyst", batch.clone())
        .unwrap_or_else(|e| panic!("{e}{}", c.logs()));
    assert_eq!(many.outputs.len(), 7);
    assert_eq!(many.receipt.receipt.rounds, 0);
    for (row, input) in many.outputs.iter().zip(&batch) {
        let want = support::expected("linear-score", input);
        assert_eq!(row.len(), 1);
        assert_eq!(row[0].raw, want[0].1, "{}", row[0].name);
    }
    // Through the CLI: a CSV file gives one output row per input.
    let csv = c.dir.path().join("applicants.csv");
    std::fs::write(
        &csv,
        "features,boundaries\n10;4;1.5;2;0;3;1;0.5;2.5;8;-4;6,0;5;10;20\n-2;4;1.5;2;0;3;1;0.5;2.5;8;-4;6,0;5;10;20\n",
    )
    .expect("writes");
    let (code, out, err) = support::qvm(&[
        "eval",
        "--coordinator",
        &c.file.coordinator,
        "--key",
        c.dir.path().join("keys/client").to_str().expect("utf-8"),
        "--program",
        "credit_score",
        "--batch",
        csv.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["band,approve", "3,1", "2,1"],
        "{out}"
    );
}

/// Checks a JSON value against an OpenAPI 3.1 schema (the subset the description uses:
/// `$ref`, types, `required`, `properties`, `items`, `enum`).
fn conforms(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        serde_json::Value::String(t) => vec![t.as_str()],
        serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => vec![],
    };
    let type_ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
    if !type_ok {
        return Err(format!("{at}: {v} is not {types:?}"));
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(req) = schema["required"].as_array() {
        for r in req.iter().filter_map(|r| r.as_str()) {
            if v.get(r).is_none() {
                return Err(format!("{at}: missing `{r}`"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                conforms(doc, s, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Method, described path, concrete path, body (content type and bytes).
type ApiCall = (
    &'static str,
    &'static str,
    String,
    Option<(&'static str, Vec<u8>)>,
);

#[test]
fn the_client_api_matches_its_openapi_description() {
    let c = support::Live::up(2, 3);
    let key = c.client_key();
    let deploy = || {
        c.deploy_for(
            "linear-score",
            "analyst",
            (1_000_000, 6_000, 1_000),
            &["score"],
        )
    };
    let id = deploy();
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("docs/openapi.json")).expect("openapi.json"),
    )
    .expect("JSON");
    let http = reqwest::Client::new();
    let p = c.program("linear_score");
    let good =
        qvm::client::sign(&key.signing, &p, "analyst", vec![support::linear(0.0)]).expect("signs");
    let mut bad = good.clone();
    bad.request.nonce = vec![9; 16];
    let canonical =
        qvm::client::sign(&key.signing, &p, "analyst", vec![support::linear(1.0)]).expect("signs");
    let canonical = qvm_core::encoding::to_canonical(&canonical).expect("encodes");
    let binary = qvm_api::request::CANONICAL_MEDIA_TYPE;
    let calls: Vec<ApiCall> = vec![
        ("get", "/healthz", "/healthz".into(), None),
        ("get", "/metrics", "/metrics".into(), None),
        ("get", "/v1/status", "/v1/status".into(), None),
        ("get", "/v1/programs", "/v1/programs".into(), None),
        (
            "get",
            "/v1/programs/{name}",
            "/v1/programs/linear_score".into(),
            None,
        ),
        (
            "get",
            "/v1/programs/{name}",
            "/v1/programs/no_such_program".into(),
            None,
        ),
        (
            "get",
            "/v1/packages/{id}",
            format!("/v1/packages/{id}"),
            None,
        ),
        (
            "post",
            "/v1/packages",
            "/v1/packages".into(),
            Some(("application/octet-stream", b"not a package".to_vec())),
        ),
        (
            "post",
            "/v1/eval",
            "/v1/eval".into(),
            Some(("application/json", serde_json::to_vec(&good).expect("json"))),
        ),
        (
            "post",
            "/v1/eval",
            "/v1/eval".into(),
            Some(("application/json", serde_json::to_vec(&bad).expect("json"))),
        ),
        (
            "post",
            "/v1/eval",
            "/v1/eval".into(),
            Some((binary, canonical.clone())),
        ),
        (
            "post",
            "/v1/eval",
            "/v1/eval".into(),
            Some((binary, canonical[..canonical.len() - 3].to_vec())),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (method, template, path, body) in calls {
        let url = format!("{}{path}", c.file.coordinator);
        let req = match &body {
            Some((ct, b)) => http.post(&url).header("content-type", *ct).body(b.clone()),
            None => http.get(&url),
        };
        if let Some((ct, _)) = &body {
            let described = &doc["paths"][template][method]["requestBody"]["content"][*ct];
            assert!(
                described.is_object(),
                "{method} {template}: {ct} is not described"
            );
        }
        let resp = c.rt.block_on(req.send()).expect("answers");
        let status = resp.status().as_u16().to_string();
        let is_json = resp.headers().get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .starts_with("application/json")
        });
        let text = c.rt.block_on(resp.text()).expect("body");
        if let Some((ct, b)) = &body
            && *ct == binary
        {
            // The canonical encoding evaluates; a truncated one is a clear client error.
            let want = if b.len() == canonical.len() {
                "200"
            } else {
                "400"
            };
            assert_eq!(status, want, "{text}");
            assert!(
                want == "200" || text.contains("malformed request"),
                "{text}"
            );
        }
        let op = &doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not described");
        let mut response = op["responses"][&status].clone();
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which is not described: {text}"
        );
        if let Some(r) = response["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap_or_default();
            response = doc["components"]["responses"][name].clone();
        }
        if let Some(schema) = response["content"]["application/json"].get("schema") {
            assert!(is_json, "{method} {path}: JSON expected");
            let v: serde_json::Value = serde_json::from_str(&text).expect("JSON body");
            conforms(&doc, schema, &v, path.as_str())
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        seen.insert((method, template));
    }
    // Every described operation was exercised, and nothing undescribed answers.
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            assert!(
                seen.contains(&(method.as_str(), path.as_str())),
                "{method} {path} not exercised"
            );
        }
    }
    let resp =
        c.rt.block_on(
            http.get(format!("{}/v1/secrets", c.file.coordinator))
                .send(),
        )
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 404);
    // Deploying the program again makes version 2, chained to version 1, and it serves.
    deploy();
    let v2 = c.program("linear_score");
    assert_eq!(v2.version, 2);
    assert_ne!(v2.package, p.package);
    c.eval(&v2, "analyst", vec![support::linear(1.0)])
        .expect("version 2 serves");
}

#[test]
fn outputs_sealed_to_the_client_never_reach_the_coordinator() {
    let c = support::Live::up(2, 3);
    let key = c.client_key();
    let mut private =
        support::identity(&key, "private", 1_000_000, 6_000, 1_000, &["score", "band"]);
    private.reveal_to_client = true;
    c.deploy("credit-score", support::policy(vec![private]));
    let p = c.program("credit_score");
    let agreement = key
        .agreement
        .as_ref()
        .expect("a client has a key-agreement key");
    let inputs = vec![support::credit(0.0), support::credit(-12.0)];
    let req = qvm::client::sign_with(
        &key.signing,
        Some(agreement.public()),
        &p,
        "private",
        inputs.clone(),
    )
    .expect("signs");
    let resp =
        c.rt.block_on(c.client.eval(&req))
            .unwrap_or_else(|e| panic!("{e}{}", c.logs()));
    // The coordinator answered without any output: only sealed deliveries, one per custodian.
    assert!(resp.outputs.is_empty());
    assert_eq!(resp.sealed.len(), 2);
    let opened = qvm::client::open_sealed(&resp, agreement, &p).expect("opens");
    for (row, input) in opened.iter().zip(&inputs) {
        let want = support::expected("credit-score", input);
        let band = row.iter().find(|o| o.name == "band").expect("band");
        assert_eq!(
            Some(&band.raw),
            want.iter().find(|(n, _)| n == "band").map(|(_, v)| v)
        );
    }
    // Another key cannot open them.
    let stranger = qvm_core::pairwise::KeyAgreementSecret::generate(&mut rand_core::OsRng);
    assert!(qvm::client::open_sealed(&resp, &stranger, &p).is_err());
    // Without a key to seal to, the request is refused before anything is spent.
    let bare =
        qvm::client::sign(&key.signing, &p, "private", vec![support::credit(1.0)]).expect("signs");
    support::refused(
        c.rt.block_on(c.client.eval(&bare)),
        qvm_api::wire::RefusalKind::InvalidInput,
    );
}

#[test]
fn qvm_bench_loads_a_cluster_and_reports_what_it_served() {
    let c = Live::up_cli(2, 3);
    for (program, batch, rounds) in [("linear-score", "1", 0), ("credit-score", "10", 7)] {
        let (code, out, err) = support::qvm(&[
            "bench",
            "--cluster",
            c.path(),
            "--program",
            program,
            "--batch",
            batch,
            "--concurrency",
            "2",
            "--seconds",
            "1",
        ]);
        assert_eq!(code, 0, "{program}: {out}{err}{}", c.logs());
        let served: f64 = out
            .split(" evaluations/s")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{program}: no throughput in {out}"));
        assert!(served > 0.0, "{program}: {out}");
        assert!(
            out.contains(&format!("; {rounds} rounds per request")),
            "{program}: {out}"
        );
        assert!(out.contains("; 0 errors;"), "{program}: {out}");
    }
}
