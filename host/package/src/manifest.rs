//! The manifest, the share bundles, and the package file (DESIGN.md §7).

use core::fmt;

use qvm_core::Fp;
use qvm_core::encoding::{Digest, Domain, from_canonical, hash, to_canonical};
use qvm_core::sign::{Signature, VerifyingKey};
use qvm_lang::ir::Ir;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::policy::Policy;

/// Domain of the package id (hash of the manifest) and of the owner's signature.
pub const MANIFEST: Domain = Domain::new("qvm/manifest/v1");
/// Domain of the component hash.
pub const COMPONENT: Domain = Domain::new("qvm/component/v1");
/// Domain of a bundle commitment.
pub const BUNDLE: Domain = Domain::new("qvm/bundle/v1");
/// Domain of a sealed bundle's associated data.
pub const BUNDLE_AAD: Domain = Domain::new("qvm/bundle-seal/v1");

/// Domain of the owner's signature over the sealed bundles.
pub const SEALED: Domain = Domain::new("qvm/package-seal/v1");

/// What the owner's second signature covers: the package id and a hash of every sealed
/// bundle, so that no byte of the file can change unnoticed, even in a bundle only
/// another custodian can open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedContents {
    /// The package id.
    pub package: Digest,
    /// SHA-256 (domain "qvm/package-seal/v1") of each sealed bundle, by index.
    pub bundles: Vec<Digest>,
}

impl SealedContents {
    /// The contents of a package's sealed bundles.
    pub fn of(package: Digest, sealed: &[Vec<u8>]) -> qvm_core::Result<SealedContents> {
        Ok(SealedContents {
            package,
            bundles: sealed
                .iter()
                .map(|b| hash(SEALED, b))
                .collect::<qvm_core::Result<_>>()?,
        })
    }
}

/// The package file's first bytes.
pub const MAGIC: &[u8; 8] = b"QVMPKG\x00\x01";
/// The largest package file accepted.
pub const MAX_PACKAGE_BYTES: usize = 256 << 20;

/// A declared input, secret or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// `int`, `fixed` or `bool`.
    pub ty: String,
    /// Elements.
    pub len: u32,
    /// Fixed-point scale of its values.
    pub scale: u32,
    /// Declared bounds, scaled (inputs and secrets).
    pub bounds: Option<(i128, i128)>,
    /// Whether it is declared as a vector (a vector of one element is not a scalar).
    pub vector: bool,
}

/// What goes in and out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Public inputs.
    pub inputs: Vec<Field>,
    /// Secret parameters (names and shapes only).
    pub secrets: Vec<Field>,
    /// Named outputs.
    pub outputs: Vec<Field>,
}

fn ty_name(t: qvm_lang::ast::Scalar) -> String {
    match t {
        qvm_lang::ast::Scalar::Int => "int",
        qvm_lang::ast::Scalar::Fixed => "fixed",
        qvm_lang::ast::Scalar::Bool => "bool",
    }
    .to_string()
}

impl Schema {
    /// The schema of a compiled program.
    pub fn of(ir: &Ir) -> Schema {
        let param = |p: &qvm_lang::ir::Param| Field {
            name: p.name.clone(),
            ty: ty_name(p.ty),
            len: p.len,
            scale: if p.ty == qvm_lang::ast::Scalar::Fixed {
                ir.scale
            } else {
                0
            },
            bounds: Some((p.range.lo, p.range.hi)),
            vector: p.vector,
        };
        Schema {
            inputs: ir.inputs.iter().map(param).collect(),
            secrets: ir.secrets.iter().map(param).collect(),
            outputs: ir
                .outputs
                .iter()
                .map(|(name, id)| {
                    let n = &ir.nodes[*id];
                    Field {
                        name: name.clone(),
                        ty: ty_name(n.ty),
                        len: n.len,
                        scale: n.scale,
                        bounds: None,
                        vector: n.len != 1,
                    }
                })
                .collect(),
        }
    }
}

/// The cost model's figures, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostSummary {
    /// `true` when the program needs interaction (N ≥ 2K − 1).
    pub interactive: bool,
    /// Rounds.
    pub rounds: u32,
    /// Beaver triples.
    pub multiplications: u64,
    /// Comparisons.
    pub comparisons: u64,
    /// Random bits.
    pub random_bits: u64,
    /// Bytes per custodian each way.
    pub bytes_per_custodian: u64,
    /// Budget units per evaluation.
    pub cost_units: u64,
}

impl From<qvm_lang::cost::Cost> for CostSummary {
    fn from(c: qvm_lang::cost::Cost) -> CostSummary {
        CostSummary {
            interactive: c.class == qvm_lang::cost::Class::Interactive,
            rounds: c.rounds,
            multiplications: c.multiplications,
            comparisons: c.comparisons,
            random_bits: c.random_bits,
            bytes_per_custodian: c.bytes_per_custodian,
            cost_units: c.cost_units,
        }
    }
}

/// The manifest: everything an approver checks, signed by the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The program's name.
    pub program: String,
    /// Its version; each version is greater than the previous.
    pub version: u64,
    /// The package id of the previous version, if any.
    pub previous: Option<Digest>,
    /// The committee id.
    pub committee: Digest,
    /// K.
    pub k: u8,
    /// N.
    pub n: u8,
    /// Inputs, secrets, outputs.
    pub schema: Schema,
    /// Cost per evaluation.
    pub cost: CostSummary,
    /// The policy.
    pub policy: Policy,
    /// Hash of the component.
    pub component: Digest,
    /// The program's source, so approvers can read and recompile it.
    pub source: String,
    /// Commitment to each custodian's plaintext bundle, by index 1..=N.
    pub bundles: Vec<Digest>,
    /// The owner's verifying key.
    pub owner: VerifyingKey,
}

impl Manifest {
    /// The package id: SHA-256 over the manifest's canonical encoding.
    pub fn id(&self) -> qvm_core::Result<Digest> {
        hash(MANIFEST, self)
    }
}

/// One custodian's plaintext bundle: its shares of every secret, and a random blinding so
/// the commitment reveals nothing. Zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Bundle {
    /// The custodian's index.
    #[zeroize(skip)]
    pub custodian: u8,
    /// Shares by secret name, in the schema's order.
    pub secrets: Vec<(String, Vec<Fp>)>,
    /// Commitment blinding.
    pub blinding: [u8; 32],
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bundle(custodian {}, {} secrets, <redacted>)",
            self.custodian,
            self.secrets.len()
        )
    }
}

impl Bundle {
    /// The commitment recorded in the manifest.
    pub fn commitment(&self) -> qvm_core::Result<Digest> {
        hash(BUNDLE, self)
    }
}

/// The associated data a bundle is sealed under: package id and custodian index.
pub fn bundle_aad(package: &Digest, custodian: u8) -> qvm_core::Result<Vec<u8>> {
    to_canonical(&(BUNDLE_AAD.as_str(), package, custodian))
}

/// A package file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The manifest.
    pub manifest: Manifest,
    /// The owner's signature over it.
    pub signature: Signature,
    /// The component.
    pub component: Vec<u8>,
    /// Sealed bundles, by custodian index 1..=N.
    pub bundles: Vec<Vec<u8>>,
    /// The owner's signature over [`SealedContents`].
    pub seal_signature: Signature,
}

impl Package {
    /// The package file's bytes: magic, then the canonical encoding.
    pub fn to_bytes(&self) -> qvm_core::Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        out.extend(to_canonical(self)?);
        Ok(out)
    }

    /// Reads a package file: checks the magic and the size, then decodes strictly. A forged
    /// length field cannot make the decoder allocate much: serde caps preallocation, and
    /// decoding fails as soon as the input runs out.
    pub fn from_bytes(bytes: &[u8]) -> core::result::Result<Package, String> {
        if bytes.len() > MAX_PACKAGE_BYTES {
            return Err(format!("larger than {MAX_PACKAGE_BYTES} bytes"));
        }
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a QuorumVM package (bad magic)")?;
        from_canonical(body).map_err(|e| e.to_string())
    }
}
