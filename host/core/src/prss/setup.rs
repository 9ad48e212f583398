//! PRSS key distribution (DESIGN.md §3, committee setup once per epoch).
//!
//! For every subset A, the lowest-indexed member draws k_A ([`deal`]) and sends it to each
//! other member sealed under their pairwise key ([`SealedPrssKey`]); the coordinator only
//! relays the ciphertexts. Each member opens what it receives ([`receive`]) and checks it
//! got exactly one key for every subset it belongs to. The AAD binds committee, subset,
//! sender and recipient, so a relayed shipment cannot be redirected or replayed across
//! committees.

use std::collections::BTreeMap;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::{PrssKey, PrssKeyring, PrssParams};
use crate::encoding::{Digest, bytes_serde, to_canonical};
use crate::pairwise::PairwiseKey;
use crate::party::{PartyIndex, PartySet};
use crate::{Error, Result};

/// Domain tag in the AAD of a shipment.
const SHIPMENT_TAG: &str = "qvm/prss-key/v1";

/// k_A sealed from the dealer (lowest index of A) to one other member of A.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPrssKey {
    /// The subset A whose key this is.
    pub subset: PartySet,
    /// The dealer, min(A).
    pub from: PartyIndex,
    /// The recipient, a member of A.
    pub to: PartyIndex,
    /// XChaCha20-Poly1305 under the pairwise key k_{from,to}.
    #[serde(with = "bytes_serde")]
    pub ciphertext: Vec<u8>,
}

fn aad(committee: &Digest, subset: PartySet, from: PartyIndex, to: PartyIndex) -> Result<Vec<u8>> {
    to_canonical(&(SHIPMENT_TAG, committee, subset, from, to))
}

/// What a dealer produces: the keys it keeps, and the shipments to relay.
#[derive(Debug)]
pub struct Dealing {
    /// Keys of the subsets this party dealt, which it also holds.
    pub own: Vec<(PartySet, PrssKey)>,
    /// One sealed key per (subset, other member).
    pub shipments: Vec<SealedPrssKey>,
}

/// The subsets whose key `party` draws: those whose lowest member it is.
pub fn dealt_by(params: &PrssParams, party: PartyIndex) -> Vec<PartySet> {
    params
        .subsets()
        .into_iter()
        .filter(|a| a.lowest() == Some(party))
        .collect()
}

/// Draws a key for every subset `me` deals and seals it to the other members. `pairwise`
/// holds this party's pairwise key with every other custodian.
pub fn deal<R: RngCore + CryptoRng>(
    params: &PrssParams,
    me: PartyIndex,
    committee: &Digest,
    pairwise: &BTreeMap<PartyIndex, PairwiseKey>,
    rng: &mut R,
) -> Result<Dealing> {
    let mut own = Vec::new();
    let mut shipments = Vec::new();
    for subset in dealt_by(params, me) {
        let key = PrssKey::generate(rng);
        for to in subset.without(me).iter() {
            let pk = pairwise.get(&to).ok_or(Error::PrssKeyring {
                party: me,
                reason: "no pairwise key for a member of a dealt subset",
            })?;
            shipments.push(SealedPrssKey {
                subset,
                from: me,
                to,
                ciphertext: pk.seal(&aad(committee, subset, me, to)?, key.as_bytes(), rng)?,
            });
        }
        own.push((subset, key));
    }
    Ok(Dealing { own, shipments })
}

/// Opens the shipments addressed to `me` and assembles its keyring with the keys it dealt.
/// Fails if a shipment is misaddressed, from the wrong dealer, does not open, or if any
/// subset's key is missing or duplicated.
pub fn receive(
    params: &PrssParams,
    me: PartyIndex,
    committee: &Digest,
    pairwise: &BTreeMap<PartyIndex, PairwiseKey>,
    own: Vec<(PartySet, PrssKey)>,
    shipments: &[SealedPrssKey],
) -> Result<PrssKeyring> {
    let mut keys = own;
    for s in shipments {
        let well_formed = s.to == me && s.subset.contains(me) && s.subset.lowest() == Some(s.from);
        let pk = pairwise.get(&s.from).filter(|_| well_formed);
        let pk = pk.ok_or(Error::PrssShipment { from: s.from })?;
        let bytes = pk
            .open(&aad(committee, s.subset, s.from, me)?, &s.ciphertext)
            .map_err(|_| Error::PrssShipment { from: s.from })?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::PrssShipment { from: s.from })?;
        keys.push((s.subset, PrssKey::from_bytes(key)));
    }
    PrssKeyring::new(me, *params, keys)
}

/// Runs every party's dealing in one process and hands each its keyring. For simulations
/// and benchmarks that run all custodians in one place; daemons use [`deal`] and
/// [`receive`] so that no process ever holds another's keys.
pub fn deal_in_process<R: RngCore + CryptoRng>(
    params: &PrssParams,
    rng: &mut R,
) -> Result<Vec<PrssKeyring>> {
    let subsets = params.subsets();
    let keys: Vec<PrssKey> = subsets.iter().map(|_| PrssKey::generate(rng)).collect();
    PartyIndex::range(params.parties() as u8)
        .map(|i| {
            let mine = subsets
                .iter()
                .zip(&keys)
                .filter(|(a, _)| a.contains(i))
                .map(|(a, k)| (*a, k.clone()));
            PrssKeyring::new(i, *params, mine)
        })
        .collect()
}
