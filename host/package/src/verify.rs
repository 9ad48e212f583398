//! `qvm package verify`: every check a custodian makes before approving (DESIGN.md §7).

use qvm_core::ecies;
use qvm_core::encoding::from_canonical;
use qvm_core::pairwise::KeyAgreementSecret;
use qvm_lang::cost::Class;

use crate::VerifyError;
use crate::build::{compile, component_hash};
use crate::committee::Committee;
use crate::manifest::{
    Bundle, CostSummary, MANIFEST, Manifest, Package, SEALED, Schema, SealedContents, bundle_aad,
};

/// What a verified package gives its custodian.
#[derive(Debug)]
pub struct Verified {
    /// The package id.
    pub id: qvm_core::encoding::Digest,
    /// This custodian's opened bundle, when verifying as a custodian.
    pub bundle: Option<Bundle>,
}

/// Who is verifying, when it is a custodian.
#[derive(Debug)]
pub struct AsCustodian<'a> {
    /// Its index.
    pub index: u8,
    /// Its key-agreement key.
    pub agreement: &'a KeyAgreementSecret,
}

/// Checks a package file. `previous` is the manifest of the version it claims to follow
/// (the custodian's active version of the program), if any.
pub fn verify(
    bytes: &[u8],
    committee: &Committee,
    previous: Option<&Manifest>,
    custodian: Option<AsCustodian<'_>>,
) -> Result<Verified, VerifyError> {
    let pkg = Package::from_bytes(bytes).map_err(VerifyError::Malformed)?;
    let m = &pkg.manifest;
    // 1. The owner signed this manifest.
    m.owner
        .verify(MANIFEST, m, &pkg.signature)
        .map_err(|_| VerifyError::OwnerSignature)?;
    let id = m.id().map_err(|e| VerifyError::Malformed(e.to_string()))?;
    // ... and every sealed bundle, including those only other custodians can open.
    let sealed =
        SealedContents::of(id, &pkg.bundles).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    m.owner
        .verify(SEALED, &sealed, &pkg.seal_signature)
        .map_err(|_| VerifyError::OwnerSignature)?;
    // 2. For this committee, which can run it.
    let cid = committee
        .id()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if m.committee != cid
        || m.k != committee.k
        || m.n != committee.n()
        || m.bundles.len() != committee.n() as usize
        || pkg.bundles.len() != committee.n() as usize
    {
        return Err(VerifyError::Committee {
            expected: cid.to_hex(),
            got: m.committee.to_hex(),
        });
    }
    let class = if m.cost.interactive {
        Class::Interactive
    } else {
        Class::LocalOnly
    };
    committee
        .check_class(class)
        .map_err(VerifyError::CommitteeClass)?;
    // 3. The component is the one the manifest names, and the source compiles to it.
    if component_hash(&pkg.component).map_err(|e| VerifyError::Malformed(e.to_string()))?
        != m.component
    {
        return Err(VerifyError::ComponentHash);
    }
    let (ir, component) = compile(&m.source).map_err(|e| VerifyError::Recompile(e.to_string()))?;
    if component != pkg.component {
        return Err(VerifyError::Recompile("the component differs".into()));
    }
    if Schema::of(&ir) != m.schema
        || CostSummary::from(qvm_lang::cost::cost(&ir)) != m.cost
        || ir.name != m.program
    {
        return Err(VerifyError::Recompile(
            "the schema, cost or name differs".into(),
        ));
    }
    let outputs: Vec<String> = m.schema.outputs.iter().map(|o| o.name.clone()).collect();
    m.policy.check(&outputs).map_err(VerifyError::Policy)?;
    // 4. The version chain.
    match (previous, &m.previous) {
        (None, None) => {}
        (Some(prev), Some(claimed)) => {
            let prev_id = prev
                .id()
                .map_err(|e| VerifyError::Malformed(e.to_string()))?;
            if *claimed != prev_id {
                return Err(VerifyError::VersionChain(
                    "the previous-version hash does not match the active version".into(),
                ));
            }
            if m.version <= prev.version || m.program != prev.program {
                return Err(VerifyError::VersionChain(format!(
                    "version {} does not follow {} {}",
                    m.version, prev.program, prev.version
                )));
            }
        }
        (Some(_), None) => {
            return Err(VerifyError::VersionChain(
                "the package does not name the active version as its previous".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(VerifyError::VersionChain(
                "the package names a previous version this custodian does not have".into(),
            ));
        }
    }
    // 5. This custodian's bundle opens, matches its commitment, and holds the secrets.
    let bundle = match custodian {
        None => None,
        Some(c) => Some(open_bundle(&pkg, &id, m, c)?),
    };
    Ok(Verified { id, bundle })
}

fn open_bundle(
    pkg: &Package,
    id: &qvm_core::encoding::Digest,
    m: &Manifest,
    c: AsCustodian<'_>,
) -> Result<Bundle, VerifyError> {
    let i = c.index;
    let sealed = pkg
        .bundles
        .get(i as usize - 1)
        .filter(|_| i >= 1)
        .ok_or(VerifyError::NoBundle(i))?;
    let aad = bundle_aad(id, i).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let plaintext =
        ecies::open(c.agreement, &aad, sealed).map_err(|_| VerifyError::BundleSeal(i))?;
    let bundle: Bundle = from_canonical(&plaintext)
        .map_err(|_| VerifyError::BundleContents(i, "undecodable".into()))?;
    let commitment = bundle
        .commitment()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if bundle.custodian != i || m.bundles.get(i as usize - 1) != Some(&commitment) {
        return Err(VerifyError::BundleCommitment(i));
    }
    let shapes_match = bundle.secrets.len() == m.schema.secrets.len()
        && bundle
            .secrets
            .iter()
            .zip(&m.schema.secrets)
            .all(|((name, v), f)| *name == f.name && v.len() == f.len as usize);
    if !shapes_match {
        return Err(VerifyError::BundleContents(
            i,
            "secret names or lengths differ from the schema".into(),
        ));
    }
    Ok(bundle)
}
