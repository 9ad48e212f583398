//! `qvm package build`: compile, share, seal, commit, sign.

use qvm_core::Fp;
use qvm_core::ecies;
use qvm_core::encoding::{Digest, hash, to_canonical};
use qvm_core::shamir::{ShamirParams, share};
use qvm_core::sign::SigningKey;
use qvm_lang::ir::Ir;
use rand_core::{CryptoRng, RngCore};

use crate::committee::Committee;
use crate::manifest::{
    Bundle, COMPONENT, CostSummary, MANIFEST, Manifest, Package, SEALED, Schema, SealedContents,
    bundle_aad,
};
use crate::policy::Policy;
use crate::{Error, Result};

/// What a build needs.
#[derive(Debug)]
pub struct BuildRequest<'a> {
    /// The program source.
    pub source: &'a str,
    /// The secrets (TOML), plaintext: read, shared, and dropped.
    pub secrets_toml: &'a str,
    /// The policy.
    pub policy: Policy,
    /// The committee.
    pub committee: &'a Committee,
    /// The owner's signing key.
    pub owner: &'a SigningKey,
    /// The version.
    pub version: u64,
    /// The previous version's manifest, if any.
    pub previous: Option<&'a Manifest>,
}

/// Reads secrets (TOML: `name = number` or `name = [numbers]`, reals for fixed) as the
/// program's scaled field elements, checking names, lengths and bounds.
pub fn read_secrets(ir: &Ir, text: &str) -> Result<Vec<(String, Vec<Fp>)>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Secrets(e.to_string()))?;
    let number = |v: &toml::Value| {
        v.as_float()
            .or(v.as_integer().map(|i| i as f64))
            .or(v.as_bool().map(|b| b as u8 as f64))
    };
    let mut out = Vec::new();
    for p in &ir.secrets {
        let v = table
            .get(&p.name)
            .ok_or_else(|| Error::Secrets(format!("no value for `{}`", p.name)))?;
        let reals: Vec<f64> = match v {
            toml::Value::Array(a) => a.iter().map(number).collect::<Option<_>>(),
            other => number(other).map(|x| vec![x]),
        }
        .ok_or_else(|| {
            Error::Secrets(format!(
                "`{}` must be a number or a list of numbers",
                p.name
            ))
        })?;
        if reals.len() != p.len as usize {
            return Err(Error::Secrets(format!(
                "`{}` needs {} value(s), got {}",
                p.name,
                p.len,
                reals.len()
            )));
        }
        let scaled = qvm_lang::eval::scale_values(ir, p, &reals).ok_or_else(|| {
            Error::Secrets(format!(
                "`{}` has a value that is not a valid {:?}",
                p.name, p.ty
            ))
        })?;
        if scaled.iter().any(|v| *v < p.range.lo || *v > p.range.hi) {
            return Err(Error::Secrets(format!(
                "`{}` has a value outside its declared bounds",
                p.name
            )));
        }
        out.push((
            p.name.clone(),
            scaled
                .iter()
                .map(|v| Fp::from_i128(*v))
                .collect::<qvm_core::Result<_>>()?,
        ));
    }
    if let Some(extra) = table
        .keys()
        .find(|k| !ir.secrets.iter().any(|p| &p.name == *k))
    {
        return Err(Error::Secrets(format!(
            "`{extra}` is not a secret of the program"
        )));
    }
    Ok(out)
}

/// Compiles a source to its IR and component.
pub fn compile(source: &str) -> Result<(Ir, Vec<u8>)> {
    let ir = qvm_lang::compile_ir(source)
        .map_err(|e| Error::Compile(e.render("program.qvm", source)))?;
    let component = qvm_lang::emit::emit(&ir).map_err(|e| Error::Emit(e.to_string()))?;
    Ok((ir, component))
}

/// Builds a package. The plaintext secrets exist only in memory here, and are zeroized
/// with the bundles.
pub fn build<R: RngCore + CryptoRng>(req: BuildRequest<'_>, rng: &mut R) -> Result<Package> {
    let (ir, component) = compile(req.source)?;
    let cost = qvm_lang::cost::cost(&ir);
    req.committee
        .check_class(cost.class)
        .map_err(Error::Committee)?;
    let schema = Schema::of(&ir);
    let outputs: Vec<String> = schema.outputs.iter().map(|o| o.name.clone()).collect();
    req.policy.check(&outputs).map_err(Error::Policy)?;
    let previous = match req.previous {
        Some(prev) if prev.version >= req.version => {
            return Err(Error::Version(format!(
                "version {} is not greater than the previous {}",
                req.version, prev.version
            )));
        }
        Some(prev) => Some(prev.id()?),
        None => None,
    };

    // Share every secret element among the N custodians.
    let n = req.committee.n() as usize;
    let params = ShamirParams::for_threshold(req.committee.k as usize, n)?;
    let secrets = read_secrets(&ir, req.secrets_toml)?;
    let mut bundles: Vec<Bundle> = (1..=n as u8)
        .map(|i| {
            let mut blinding = [0u8; 32];
            rng.fill_bytes(&mut blinding);
            Bundle {
                custodian: i,
                secrets: Vec::new(),
                blinding,
            }
        })
        .collect();
    for (name, values) in &secrets {
        let mut per_party: Vec<Vec<Fp>> = vec![Vec::with_capacity(values.len()); n];
        for v in values {
            for (i, s) in share(*v, params, rng).iter().enumerate() {
                per_party[i].push(s.value());
            }
        }
        for (b, shares) in bundles.iter_mut().zip(per_party) {
            b.secrets.push((name.clone(), shares));
        }
    }
    drop(secrets);

    let manifest = Manifest {
        program: ir.name.clone(),
        version: req.version,
        previous,
        committee: req.committee.id()?,
        k: req.committee.k,
        n: req.committee.n(),
        schema,
        cost: CostSummary::from(cost),
        policy: req.policy,
        component: component_hash(&component)?,
        source: req.source.to_string(),
        bundles: bundles
            .iter()
            .map(Bundle::commitment)
            .collect::<qvm_core::Result<_>>()?,
        owner: req.owner.verifying_key(),
    };
    let signature = req.owner.sign(MANIFEST, &manifest)?;
    let id = manifest.id()?;
    let sealed = bundles
        .iter()
        .map(|b| {
            let custodian = req
                .committee
                .custodian(b.custodian)
                .ok_or_else(|| Error::Committee(format!("no custodian {}", b.custodian)))?;
            let plaintext = zeroize::Zeroizing::new(to_canonical(b)?);
            Ok(ecies::seal(
                &custodian.agreement,
                &bundle_aad(&id, b.custodian)?,
                &plaintext,
                rng,
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    let seal_signature = req.owner.sign(SEALED, &SealedContents::of(id, &sealed)?)?;
    Ok(Package {
        manifest,
        signature,
        component,
        bundles: sealed,
        seal_signature,
    })
}

/// The component hash recorded in the manifest.
pub fn component_hash(component: &[u8]) -> qvm_core::Result<Digest> {
    hash(COMPONENT, component)
}
