use std::collections::BTreeMap;

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::setup::{SealedPrssKey, deal, deal_in_process, receive};
use super::*;
use crate::pairwise::{KeyAgreementSecret, PairwiseKey};
use crate::shamir::Lagrange;

fn ctx(committee: u8, session: u8) -> PrssContext {
    PrssContext {
        committee: Digest::from_bytes([committee; 32]),
        session: Digest::from_bytes([session; 32]),
    }
}

fn committees() -> impl Strategy<Value = PrssParams> {
    prop_oneof![
        Just((3usize, 1usize)),
        Just((5, 2)),
        Just((7, 3)),
        Just((4, 1)),
        Just((6, 2)),
        Just((2, 1)),
        Just((3, 0)),
    ]
    .prop_map(|(n, t)| PrssParams::new(n, t).expect("valid"))
}

fn sessions(params: &PrssParams, seed: u64, c: PrssContext) -> Vec<PrssSession> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    deal_in_process(params, &mut rng)
        .expect("setup")
        .iter()
        .map(|k| k.session(&c))
        .collect()
}

fn points(sessions: &[PrssSession], f: impl Fn(&PrssSession) -> Fp) -> Vec<(PartyIndex, Fp)> {
    sessions.iter().map(|s| (s.party(), f(s))).collect()
}

#[test]
fn subsets_are_all_of_size_n_minus_t() -> Result<()> {
    let p = PrssParams::new(5, 2)?;
    let subsets = p.subsets();
    assert_eq!(subsets.len(), 10);
    assert!(subsets.iter().all(|a| a.len() == 3));
    assert!(subsets.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(p.subsets_of(PartyIndex::new(1)?).len(), 6);
    assert_eq!(PrssParams::new(64, 1)?.subsets().len(), 64);
    assert_eq!(PrssParams::new(9, 4)?.subsets().len(), 126);
    assert!(matches!(
        PrssParams::new(20, 9),
        Err(Error::PrssTooManySubsets {
            subsets: 167_960,
            ..
        })
    ));
    assert!(PrssParams::new(3, 3).is_err());
    Ok(())
}

#[test]
fn f_a_vanishes_outside_a() -> Result<()> {
    let p = PrssParams::new(7, 3)?;
    for a in p.subsets() {
        assert_eq!(p.f_a(a, Fp::ZERO), Fp::ONE);
        for j in PartyIndex::range(7) {
            assert_eq!(p.f_a(a, j.point()) == Fp::ZERO, !a.contains(j));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Shares of one context lie on one polynomial of degree t; the secret is Σ_A PRF(k_A).
    #[test]
    fn random_sharings_have_degree_t(p in committees(), seed in any::<u64>(), counter in any::<u64>(), index in any::<u32>()) {
        let s = sessions(&p, seed, ctx(1, 2));
        let pts = points(&s, |x| x.random(counter, index));
        let lagrange = Lagrange::new();
        prop_assert!(lagrange.is_consistent(&pts, p.degree())?);
        if p.degree() > 0 && pts.len() > p.degree() + 1 {
            // Not of any lower degree (with overwhelming probability).
            prop_assert!(!lagrange.is_consistent(&pts, p.degree() - 1)?);
        }
        let secret = lagrange.interpolate(&pts, p.degree(), 0)?;
        let vec = s[0].random_vec(counter, 70);
        for (j, v) in vec.iter().enumerate() {
            prop_assert_eq!(*v, s[0].random(counter, j as u32));
        }
        prop_assert_ne!(secret, Fp::ZERO);
    }

    /// Zero sharings lie on a polynomial of degree 2t (and, for t > 0, not of lower degree)
    /// and open to 0.
    #[test]
    fn zero_sharings_have_degree_2t_and_value_0(p in committees(), seed in any::<u64>(), counter in any::<u64>()) {
        let s = sessions(&p, seed, ctx(3, 4));
        let pts = points(&s, |x| x.zero(counter, 7));
        let lagrange = Lagrange::new();
        let d = 2 * p.degree();
        prop_assume!(pts.len() > d);
        prop_assert!(lagrange.is_consistent(&pts, d)?);
        prop_assert_eq!(lagrange.interpolate(&pts, d, 0)?, Fp::ZERO);
        let vec = s[0].zero_vec(counter, 70);
        for (j, v) in vec.iter().enumerate() {
            prop_assert_eq!(*v, s[0].zero(counter, j as u32));
        }
        if p.degree() > 0 && pts.len() > d + 1 {
            prop_assert!(!lagrange.is_consistent(&pts, d - 1)?);
        }
    }

    /// A double sharing: the degree-t and degree-2t sharings open to the same value.
    #[test]
    fn double_sharings_agree(p in committees(), seed in any::<u64>(), counter in any::<u64>()) {
        let s = sessions(&p, seed, ctx(5, 6));
        prop_assume!(p.parties() > 2 * p.degree());
        let doubles: Vec<(Fp, Fp)> = s.iter().map(|x| x.double(counter, 0)).collect();
        let t_pts: Vec<_> = s.iter().zip(&doubles).map(|(x, d)| (x.party(), d.0)).collect();
        let t2_pts: Vec<_> = s.iter().zip(&doubles).map(|(x, d)| (x.party(), d.1)).collect();
        let lagrange = Lagrange::new();
        prop_assert_eq!(
            lagrange.interpolate(&t_pts, p.degree(), 0)?,
            lagrange.interpolate(&t2_pts, 2 * p.degree(), 0)?
        );
    }

    /// Bounded integers open to a value in [0, C(N, t) · 2^bits).
    #[test]
    fn bounded_sharings_are_bounded(p in committees(), seed in any::<u64>(), bits in 1u32..100) {
        let s = sessions(&p, seed, ctx(7, 8));
        let pts: Vec<_> = s.iter().map(|x| Ok((x.party(), x.bounded(9, 0, bits)?))).collect::<Result<_>>()?;
        let v = Lagrange::new().interpolate(&pts, p.degree(), 0)?.to_i128();
        let subsets = p.subsets().len() as i128;
        prop_assert!(v >= 0 && v < subsets << bits, "{v} out of range");
    }
}

/// Different contexts (committee, session, counter, index) give different, unrelated
/// secrets; the same context gives the same secret.
#[test]
fn contexts_are_independent() -> Result<()> {
    let p = PrssParams::new(5, 2)?;
    let lagrange = Lagrange::new();
    let open = |c: PrssContext, counter: u64, index: u32| -> Result<Fp> {
        let s = sessions(&p, 11, c);
        lagrange.interpolate(&points(&s, |x| x.random(counter, index)), 2, 0)
    };
    let base = open(ctx(1, 1), 0, 0)?;
    assert_eq!(base, open(ctx(1, 1), 0, 0)?);
    let variants = [
        open(ctx(2, 1), 0, 0)?,
        open(ctx(1, 2), 0, 0)?,
        open(ctx(1, 1), 1, 0)?,
        open(ctx(1, 1), 0, 1)?,
    ];
    for v in variants {
        assert_ne!(v, base);
    }
    // Over many counters the opened values look uniform: every one of the 127 bits is set
    // in 512 ± 160 of 1024 values (a > 10σ band, so a real bias shows, chance does not).
    let s = sessions(&p, 12, ctx(9, 9));
    let mut ones = [0usize; 127];
    for counter in 0..1024 {
        let v = lagrange.interpolate(&points(&s, |x| x.random(counter, 0)), 2, 0)?;
        for (bit, n) in ones.iter_mut().enumerate() {
            *n += (v.to_u128() >> bit & 1) as usize;
        }
    }
    assert!(ones.iter().all(|n| (352..=672).contains(n)), "{ones:?}");
    // Random and zero sharings of the same (counter, index) are independent streams.
    let r: Vec<Fp> = s.iter().map(|x| x.random(5, 5)).collect();
    let z: Vec<Fp> = s.iter().map(|x| x.zero(5, 5)).collect();
    assert!(r.iter().zip(&z).all(|(a, b)| a != b));
    Ok(())
}

/// t custodians' shares of a PRSS random element are consistent with every secret: for the
/// keys they hold, the missing subsets' PRF outputs are uniform, so the t shares plus any
/// candidate at 0 always fit a degree-t polynomial. Concretely: the coalition's shares do
/// not change when an honest-only key changes, while the secret does.
#[test]
fn coalition_misses_a_key() -> Result<()> {
    let p = PrssParams::new(5, 2)?;
    let coalition: PartySet = [1u32, 2]
        .into_iter()
        .map(PartyIndex::new)
        .collect::<Result<_>>()?;
    let honest_only: Vec<PartySet> = p
        .subsets()
        .into_iter()
        .filter(|a| a.difference(coalition) == *a)
        .collect();
    assert_eq!(
        honest_only.len(),
        1,
        "exactly the set of the other N - t = 3"
    );
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let keyrings = deal_in_process(&p, &mut rng)?;
    let fresh = PrssKey::generate(&mut rng);
    let mut swapped = keyrings.clone();
    for kr in swapped.iter_mut() {
        for (a, k) in kr.keys.iter_mut() {
            if *a == honest_only[0] {
                *k = fresh.clone();
            }
        }
    }
    let c = ctx(1, 1);
    let open = |rings: &[PrssKeyring]| -> Result<(Vec<Fp>, Fp)> {
        let s: Vec<_> = rings.iter().map(|k| k.session(&c)).collect();
        let seen = s
            .iter()
            .filter(|x| coalition.contains(x.party()))
            .map(|x| x.random(0, 0))
            .collect();
        Ok((
            seen,
            Lagrange::new().interpolate(&points(&s, |x| x.random(0, 0)), 2, 0)?,
        ))
    };
    let (seen_a, secret_a) = open(&keyrings)?;
    let (seen_b, secret_b) = open(&swapped)?;
    assert_eq!(seen_a, seen_b);
    assert_ne!(secret_a, secret_b);
    Ok(())
}

#[test]
fn bound_is_checked() -> Result<()> {
    let p = PrssParams::new(5, 2)?;
    assert_eq!(p.max_bounded_bits(), 122);
    let s = sessions(&p, 1, ctx(1, 1));
    assert!(matches!(
        s[0].bounded(0, 0, 123),
        Err(Error::PrssBoundTooLarge {
            bits: 123,
            max: 122
        })
    ));
    Ok(())
}

#[test]
fn keyring_checks() -> Result<()> {
    let p = PrssParams::new(5, 2)?;
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let rings = deal_in_process(&p, &mut rng)?;
    let me = PartyIndex::new(1)?;
    let mut keys: Vec<_> = rings[0].keys().map(|(a, k)| (a, k.clone())).collect();
    keys.pop();
    assert!(matches!(
        PrssKeyring::new(me, p, keys.clone()),
        Err(Error::PrssKeyring { .. })
    ));
    keys.push(keys[0].clone());
    assert!(matches!(
        PrssKeyring::new(me, p, keys),
        Err(Error::PrssKeyring { .. })
    ));
    assert!(matches!(
        PrssKeyring::new(PartyIndex::new(6)?, p, Vec::new()),
        Err(Error::PrssKeyring { .. })
    ));
    let printed = format!("{:?}", rings[0]);
    assert!(printed.contains("<redacted>"));
    assert!(!printed.contains(&hex::encode(rings[0].keys[0].1.as_bytes())));
    Ok(())
}

/// The distributed setup: every dealer seals its keys to the other members under pairwise
/// keys; every member opens its shipments; the result is a working PRSS.
#[test]
fn distributed_setup_gives_a_working_prss() -> Result<()> {
    let p = PrssParams::new(5, 2)?;
    let committee = Digest::from_bytes([42; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let ka: Vec<KeyAgreementSecret> = (0..5)
        .map(|_| KeyAgreementSecret::generate(&mut rng))
        .collect();
    let parties: Vec<PartyIndex> = PartyIndex::range(5).collect();
    let pairwise = |i: usize| -> BTreeMap<PartyIndex, PairwiseKey> {
        parties
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, pj)| (*pj, ka[i].pairwise(&ka[j].public(), &committee)))
            .collect()
    };
    let dealings: Vec<_> = (0..5)
        .map(|i| deal(&p, parties[i], &committee, &pairwise(i), &mut rng))
        .collect::<Result<_>>()?;
    let all_shipments: Vec<SealedPrssKey> = dealings
        .iter()
        .flat_map(|d| d.shipments.iter().cloned())
        .collect();
    let mut rings = Vec::new();
    for (i, d) in dealings.into_iter().enumerate() {
        let mine: Vec<_> = all_shipments
            .iter()
            .filter(|s| s.to == parties[i])
            .cloned()
            .collect();
        // A tampered or misdirected shipment is refused, naming the dealer.
        if let Some(first) = mine.first() {
            let mut bad = first.clone();
            bad.ciphertext[30] ^= 1;
            let err = receive(&p, parties[i], &committee, &pairwise(i), Vec::new(), &[bad]);
            assert_eq!(err.err(), Some(Error::PrssShipment { from: first.from }));
            let other_committee = Digest::from_bytes([43; 32]);
            let err = receive(
                &p,
                parties[i],
                &other_committee,
                &pairwise(i),
                Vec::new(),
                std::slice::from_ref(first),
            );
            assert_eq!(err.err(), Some(Error::PrssShipment { from: first.from }));
        }
        rings.push(receive(
            &p,
            parties[i],
            &committee,
            &pairwise(i),
            d.own,
            &mine,
        )?);
    }
    let c = ctx(42, 1);
    let s: Vec<_> = rings.iter().map(|k| k.session(&c)).collect();
    let lagrange = Lagrange::new();
    assert!(lagrange.is_consistent(&points(&s, |x| x.random(0, 0)), 2)?);
    assert_eq!(
        lagrange.interpolate(&points(&s, |x| x.zero(0, 0)), 4, 0)?,
        Fp::ZERO
    );
    // A shipment addressed to someone else is refused.
    let stray = all_shipments.iter().find(|x| x.to != parties[4]).cloned();
    if let Some(stray) = stray {
        let from = stray.from;
        assert_eq!(
            receive(
                &p,
                parties[4],
                &committee,
                &pairwise(4),
                Vec::new(),
                &[stray]
            )
            .err(),
            Some(Error::PrssShipment { from })
        );
    }
    Ok(())
}
