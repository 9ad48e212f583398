//! A custodian's verification refuses every tampering, naming the failed check; a
//! certificate needs K distinct valid approvals of exactly the package.

use qvm_core::sign::SigningKey;
use qvm_package::VerifyError;
use qvm_package::approval::{Approval, Certificate, CertificateError, Decision};
use qvm_package::build::{BuildRequest, build};
use qvm_package::committee::{Committee, Custodian, DEFAULT_PROPOSAL_TTL_SECS};
use qvm_package::keys::{KeySet, Role};
use qvm_package::manifest::{MANIFEST, Package};
use qvm_package::policy::Policy;
use qvm_package::verify::{AsCustodian, verify};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SOURCE: &str = include_str!("../../../packages/credit-score/credit-score.qvm");
const SECRETS: &str = include_str!("../../../packages/credit-score/secrets.toml");

struct World {
    committee: Committee,
    custodians: Vec<KeySet>,
    owner: KeySet,
    rng: ChaCha20Rng,
}

fn world(k: u8, n: u8) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let custodians: Vec<KeySet> = (0..n)
        .map(|_| KeySet::generate(Role::Custodian, &mut rng))
        .collect();
    let coordinator = KeySet::generate(Role::Coordinator, &mut rng);
    let entries = custodians
        .iter()
        .enumerate()
        .map(|(i, ks)| Custodian {
            index: i as u8 + 1,
            signing: ks.signing.verifying_key(),
            agreement: ks.agreement.as_ref().expect("custodian").public(),
            url: None,
        })
        .collect();
    let committee = Committee::new(
        k,
        entries,
        coordinator.signing.verifying_key(),
        DEFAULT_PROPOSAL_TTL_SECS,
    )
    .expect("committee");
    World {
        committee,
        custodians,
        owner: KeySet::generate(Role::Owner, &mut rng),
        rng,
    }
}

fn policy(w: &mut World) -> Policy {
    let client = SigningKey::generate(&mut w.rng).verifying_key();
    Policy::from_toml(&format!(
        "[[identity]]\nname = \"bank\"\nkey = \"{}\"\nbudget = 1000\nperiod_secs = 86400\nrate_per_minute = 60\nburst = 10\noutputs = [\"band\", \"approve\"]\n",
        hex(&client.to_sec1_bytes())
    ))
    .expect("policy")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn package(
    w: &mut World,
    version: u64,
    previous: Option<&qvm_package::manifest::Manifest>,
) -> Package {
    let policy = policy(w);
    let req = BuildRequest {
        source: SOURCE,
        secrets_toml: SECRETS,
        policy,
        committee: &w.committee,
        owner: &w.owner.signing,
        version,
        previous,
    };
    build(req, &mut w.rng).expect("builds")
}

/// Re-signs the sealed contents after the manifest changed (an owner forging its own
/// package).
fn reseal(p: &mut Package, owner: &SigningKey) {
    let sealed =
        qvm_package::manifest::SealedContents::of(p.manifest.id().expect("id"), &p.bundles)
            .expect("sealed");
    p.seal_signature = owner
        .sign(qvm_package::manifest::SEALED, &sealed)
        .expect("sign");
}

fn as_custodian(w: &World, i: u8) -> AsCustodian<'_> {
    AsCustodian {
        index: i,
        agreement: w.custodians[i as usize - 1]
            .agreement
            .as_ref()
            .expect("custodian"),
    }
}

#[test]
fn every_custodian_verifies_and_opens_its_own_bundle() {
    let mut w = world(2, 3);
    let pkg = package(&mut w, 1, None);
    let bytes = pkg.to_bytes().expect("encodes");
    for i in 1..=3 {
        let v = verify(&bytes, &w.committee, None, Some(as_custodian(&w, i))).expect("verifies");
        let bundle = v.bundle.expect("opened");
        assert_eq!(bundle.custodian, i);
        assert_eq!(bundle.secrets.len(), 3);
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let mut w = world(2, 3);
    let bytes = package(&mut w, 1, None).to_bytes().expect("encodes");
    let mut checked = 0;
    for pos in (0..bytes.len()).step_by(53).chain([bytes.len() - 1]) {
        let mut t = bytes.clone();
        t[pos] ^= 0x01;
        let r = verify(&t, &w.committee, None, Some(as_custodian(&w, 2)));
        assert!(
            r.is_err(),
            "flipping byte {pos} of {} went unnoticed",
            bytes.len()
        );
        checked += 1;
    }
    assert!(checked > 100);
}

#[test]
fn each_tampering_names_its_check() {
    let mut w = world(2, 3);
    let pkg = package(&mut w, 1, None);
    let enc = |p: &Package| p.to_bytes().expect("encodes");

    // A component that does not match the source (re-hashed and re-signed by the owner).
    let mut p = pkg.clone();
    let other = qvm_package::build::compile("program other\nsecret w: int in [0, 1]\noutput y = w")
        .expect("compiles")
        .1;
    p.manifest.component = qvm_package::build::component_hash(&other).expect("hash");
    p.component = other;
    p.signature = w.owner.signing.sign(MANIFEST, &p.manifest).expect("sign");
    reseal(&mut p, &w.owner.signing);
    assert!(matches!(
        verify(&enc(&p), &w.committee, None, None),
        Err(VerifyError::Recompile(_))
    ));

    // A component swapped without updating the manifest.
    let mut p = pkg.clone();
    p.component.push(0);
    assert_eq!(
        verify(&enc(&p), &w.committee, None, None).err(),
        Some(VerifyError::ComponentHash)
    );

    // A manifest signed by another key.
    let mut p = pkg.clone();
    let stranger = SigningKey::generate(&mut w.rng);
    p.signature = stranger.sign(MANIFEST, &p.manifest).expect("sign");
    assert_eq!(
        verify(&enc(&p), &w.committee, None, None).err(),
        Some(VerifyError::OwnerSignature)
    );

    // A bundle sealed to another custodian: custodian 1 receives custodian 2's (the owner
    // re-signs the sealed contents, so only the seal itself can catch it).
    let mut p = pkg.clone();
    p.bundles.swap(0, 1);
    let sealed =
        qvm_package::manifest::SealedContents::of(p.manifest.id().expect("id"), &p.bundles)
            .expect("sealed");
    p.seal_signature = w
        .owner
        .signing
        .sign(qvm_package::manifest::SEALED, &sealed)
        .expect("sign");
    assert_eq!(
        verify(&enc(&p), &w.committee, None, Some(as_custodian(&w, 1))).err(),
        Some(VerifyError::BundleSeal(1))
    );

    // Another committee.
    let other = world(2, 4);
    assert!(matches!(
        verify(&enc(&pkg), &other.committee, None, None),
        Err(VerifyError::Committee { .. })
    ));

    // A committee that cannot run an interactive program (N < 2K − 1).
    let small = world(2, 2);
    let req = BuildRequest {
        source: SOURCE,
        secrets_toml: SECRETS,
        policy: Policy::default(),
        committee: &small.committee,
        owner: &w.owner.signing,
        version: 1,
        previous: None,
    };
    let err = build(req, &mut w.rng).expect_err("refused");
    assert!(err.to_string().contains("N >= 3"), "{err}");

    // Garbage.
    assert!(matches!(
        verify(b"not a package", &w.committee, None, None),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn the_version_chain_is_checked() {
    let mut w = world(2, 3);
    let v1 = package(&mut w, 1, None);
    let v2 = package(&mut w, 2, Some(&v1.manifest));
    let bytes2 = v2.to_bytes().expect("encodes");
    verify(&bytes2, &w.committee, Some(&v1.manifest), None).expect("v2 follows v1");
    // Not following the active version.
    let other_v1 = package(&mut w, 1, None);
    assert!(matches!(
        verify(&bytes2, &w.committee, Some(&other_v1.manifest), None),
        Err(VerifyError::VersionChain(_))
    ));
    // Unknown previous.
    assert!(matches!(
        verify(&bytes2, &w.committee, None, None),
        Err(VerifyError::VersionChain(_))
    ));
    // A version that does not increase cannot even be built.
    let policy = policy(&mut w);
    let req = BuildRequest {
        source: SOURCE,
        secrets_toml: SECRETS,
        policy,
        committee: &w.committee,
        owner: &w.owner.signing,
        version: 2,
        previous: Some(&v2.manifest),
    };
    assert!(build(req, &mut w.rng).is_err());
    // A forged package claiming v1 as previous with a lower version, re-signed.
    let mut forged = v2.clone();
    forged.manifest.version = 1;
    forged.signature = w
        .owner
        .signing
        .sign(MANIFEST, &forged.manifest)
        .expect("sign");
    reseal(&mut forged, &w.owner.signing);
    assert!(matches!(
        verify(
            &forged.to_bytes().expect("enc"),
            &w.committee,
            Some(&v1.manifest),
            None
        ),
        Err(VerifyError::VersionChain(_))
    ));
}

#[test]
fn certificates_need_k_distinct_valid_approvals_of_exactly_this_package() {
    let mut w = world(3, 5);
    let pkg = package(&mut w, 1, None);
    let other = package(&mut w, 1, None);
    let m = &pkg.manifest;
    let sign = |i: u8, manifest: &qvm_package::manifest::Manifest, decision: Decision, at: u64| {
        Approval::of(manifest, i, decision, at)
            .expect("approval")
            .sign(&w.custodians[i as usize - 1].signing)
            .expect("sign")
    };
    let cert = |approvals| Certificate {
        package: m.id().expect("id"),
        approvals,
    };
    let t0 = 1_000;
    // K approvals: valid.
    cert(vec![
        sign(1, m, Decision::Approve, t0),
        sign(2, m, Decision::Approve, t0),
        sign(5, m, Decision::Approve, t0),
    ])
    .check(m, &w.committee, t0)
    .expect("valid");
    // K − 1.
    let short = cert(vec![
        sign(1, m, Decision::Approve, t0),
        sign(2, m, Decision::Approve, t0),
    ]);
    assert_eq!(
        short.check(m, &w.committee, t0),
        Err(CertificateError::NotEnough {
            valid: 2,
            needed: 3
        })
    );
    // Duplicates count once.
    let dup = cert(vec![
        sign(1, m, Decision::Approve, t0),
        sign(1, m, Decision::Approve, t0 + 1),
        sign(2, m, Decision::Approve, t0),
    ]);
    assert!(dup.check(m, &w.committee, t0).is_err());
    // Approvals of another package id.
    let wrong = cert(vec![
        sign(1, &other.manifest, Decision::Approve, t0),
        sign(2, m, Decision::Approve, t0),
        sign(3, m, Decision::Approve, t0),
    ]);
    assert!(wrong.check(m, &w.committee, t0).is_err());
    // A refusal is not an approval.
    let refused = cert(vec![
        sign(1, m, Decision::Refuse("bias too high".into()), t0),
        sign(2, m, Decision::Approve, t0),
        sign(3, m, Decision::Approve, t0),
    ]);
    assert!(refused.check(m, &w.committee, t0).is_err());
    // A signature by the wrong custodian key (custodian 4 signs as 3).
    let mut forged = sign(4, m, Decision::Approve, t0);
    forged.approval.custodian = 3;
    assert!(
        cert(vec![
            sign(1, m, Decision::Approve, t0),
            sign(2, m, Decision::Approve, t0),
            forged
        ])
        .check(m, &w.committee, t0)
        .is_err()
    );
    // After the proposal expired.
    let late = t0 + DEFAULT_PROPOSAL_TTL_SECS + 1;
    assert!(
        cert(vec![
            sign(1, m, Decision::Approve, t0),
            sign(2, m, Decision::Approve, t0),
            sign(3, m, Decision::Approve, late)
        ])
        .check(m, &w.committee, t0)
        .is_err()
    );
}

/// The package file alone, and any K − 1 opened bundles, leave each secret undetermined,
/// while K bundles reconstruct it: no secret is in the file in the clear; K bundles give
/// back exactly the owner's values; the shares K − 1 custodians hold change from one build
/// of the same secrets to the next (fresh randomness), and the secret cannot be read off
/// them as if the sharing were of lower degree.
#[test]
fn k_minus_one_bundles_leave_every_secret_undetermined() {
    use qvm_core::shamir::Lagrange;
    use qvm_core::{Fp, PartyIndex};
    let mut w = world(3, 5);
    let open_all = |w: &World, bytes: &[u8], who: &[u8]| -> Vec<qvm_package::manifest::Bundle> {
        who.iter()
            .map(|i| {
                verify(bytes, &w.committee, None, Some(as_custodian(w, *i)))
                    .expect("verifies")
                    .bundle
                    .expect("opened")
            })
            .collect()
    };
    let first = package(&mut w, 1, None).to_bytes().expect("encodes");
    let second = package(&mut w, 1, None).to_bytes().expect("encodes");
    // No secret in the clear: the example weight 0.5 (scaled) is nowhere in the file.
    let half = Fp::from(1u64 << 15).to_le_bytes();
    assert!(!first.windows(16).any(|win| win == half));

    let (ir, _) = qvm_package::build::compile(SOURCE).expect("compiles");
    let secrets = qvm_package::build::read_secrets(&ir, SECRETS).expect("secrets");
    let who = [1u8, 4, 5];
    let (a, b) = (open_all(&w, &first, &who), open_all(&w, &second, &who));
    let lagrange = Lagrange::new();
    let points = |bundles: &[qvm_package::manifest::Bundle],
                  s: usize,
                  e: usize,
                  n: usize|
     -> Vec<(PartyIndex, Fp)> {
        bundles[..n]
            .iter()
            .map(|bd| {
                (
                    PartyIndex::new(bd.custodian as u32).expect("index"),
                    bd.secrets[s].1[e],
                )
            })
            .collect()
    };
    for (s, (name, values)) in secrets.iter().enumerate() {
        for (e, value) in values.iter().enumerate() {
            // K = 3 bundles reconstruct the owner's value, from either build.
            assert_eq!(
                lagrange
                    .interpolate(&points(&a, s, e, 3), 2, 0)
                    .expect("3 shares"),
                *value,
                "{name}[{e}]"
            );
            assert_eq!(
                lagrange
                    .interpolate(&points(&b, s, e, 3), 2, 0)
                    .expect("3 shares"),
                *value,
                "{name}[{e}]"
            );
            // K − 1 = 2 bundles: fresh shares in each build, and no line through them hits the value.
            assert_ne!(points(&a, s, e, 2), points(&b, s, e, 2), "{name}[{e}]");
            assert_ne!(
                lagrange
                    .interpolate(&points(&a, s, e, 2), 1, 0)
                    .expect("2 shares"),
                *value,
                "{name}[{e}]"
            );
        }
    }
}

#[test]
fn key_files_round_trip_with_private_permissions() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let dir = std::env::temp_dir().join(format!("qvm-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ks = KeySet::generate(Role::Custodian, &mut rng);
    ks.write(&dir).expect("writes");
    let back = KeySet::read(&dir).expect("reads");
    assert_eq!(back.public(), ks.public());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("signing.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(ks.write(&dir).is_err(), "keys are never overwritten");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_shows_what_changed_and_no_secret() {
    let mut w = world(2, 3);
    let v1 = package(&mut w, 1, None);
    let source2 = SOURCE.replace(
        "output approve = score >= cutoff",
        "output approve = score >= cutoff\noutput high = score >= 100.0",
    );
    let policy = policy(&mut w);
    let req = BuildRequest {
        source: &source2,
        secrets_toml: SECRETS,
        policy,
        committee: &w.committee,
        owner: &w.owner.signing,
        version: 2,
        previous: Some(&v1.manifest),
    };
    let v2 = build(req, &mut w.rng).expect("builds");
    let d = qvm_package::diff::diff(&v1.manifest, &v2.manifest);
    assert!(d.contains("version 1 -> credit_score version 2"), "{d}");
    assert!(d.contains("+ output high"), "{d}");
    assert!(d.contains("+ output high = score >= 100.0"), "{d}");
    assert!(
        d.contains("~ identity bank") && d.contains("(new key)"),
        "{d}"
    );
    assert!(d.contains("names the old one as its previous"), "{d}");
    // No secret value appears: the example weight 1.25 is not printed anywhere.
    assert!(!d.contains("1.25") && !d.contains("81920"), "{d}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Random bytes after the magic never panic the package parser.
    #[test]
    fn random_package_bytes_are_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let mut bytes = qvm_package::manifest::MAGIC.to_vec();
        bytes.extend(body);
        proptest::prop_assert!(Package::from_bytes(&bytes).is_err());
    }
}

/// Mutations of a real package (truncation, byte flips, length fields set huge) are
/// refused quickly, without panicking or allocating beyond the input.
#[test]
fn hostile_package_files_are_refused() {
    let mut w = world(2, 3);
    let bytes = package(&mut w, 1, None).to_bytes().expect("encodes");
    for cut in (0..bytes.len()).step_by(97) {
        assert!(Package::from_bytes(&bytes[..cut]).is_err());
    }
    // ULEB128 lengths of 2^35 and 2^63 where the first string length stands.
    for forged in [
        vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        vec![0xff; 9].into_iter().chain([0x7f]).collect::<Vec<u8>>(),
    ] {
        let mut b = qvm_package::manifest::MAGIC.to_vec();
        b.extend(&forged);
        b.extend(&bytes[8..64]);
        let started = std::time::Instant::now();
        assert!(Package::from_bytes(&b).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    let mut big = qvm_package::manifest::MAGIC.to_vec();
    big.resize(qvm_package::manifest::MAX_PACKAGE_BYTES + 1, 0);
    assert!(Package::from_bytes(&big).is_err());
}
