//! Key files: `qvm keygen --role ROLE --out DIR`.
//!
//! A directory holds `signing.key` (and, for custodians and clients, `agreement.key`) as
//! hex, readable by the owner only (mode 0600), and `public.json` with the public halves.

use std::path::Path;

use qvm_core::pairwise::{KeyAgreementPublic, KeyAgreementSecret};
use qvm_core::sign::{SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a key set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Builds and signs packages.
    Owner,
    /// Holds shares, approves versions, evaluates.
    Custodian,
    /// Signs evaluation requests; may receive sealed outputs.
    Client,
    /// Signs tickets and collects approvals.
    Coordinator,
}

impl Role {
    /// Whether this role needs a key-agreement key (custodians: bundles and pairwise keys;
    /// clients: outputs sealed to them).
    pub fn needs_agreement(self) -> bool {
        matches!(self, Role::Custodian | Role::Client)
    }
}

/// The public halves, as written to `public.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    /// The role.
    pub role: Role,
    /// The signing key's public half.
    pub signing: VerifyingKey,
    /// The key-agreement public key, for roles that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<KeyAgreementPublic>,
}

/// A role's private keys.
#[derive(Debug)]
pub struct KeySet {
    /// The role.
    pub role: Role,
    /// The signing key.
    pub signing: SigningKey,
    /// The key-agreement key, for roles that have one.
    pub agreement: Option<KeyAgreementSecret>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `contents` to a new file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))
}

fn read_hex32(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; 32]);
    hex_decode(text.trim(), &mut bytes).map_err(|detail| Error::Malformed {
        what: "key file",
        detail,
    })?;
    Ok(bytes)
}

fn hex_decode(s: &str, out: &mut [u8]) -> core::result::Result<(), String> {
    if s.len() != out.len() * 2 {
        return Err(format!("expected {} hex digits", out.len() * 2));
    }
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| {
            (c as char)
                .to_digit(16)
                .ok_or_else(|| "not hex".to_string())
        };
        out[i] = (digit(chunk[0])? * 16 + digit(chunk[1])?) as u8;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl KeySet {
    /// Fresh keys for a role.
    pub fn generate<R: RngCore + CryptoRng>(role: Role, rng: &mut R) -> KeySet {
        KeySet {
            role,
            signing: SigningKey::generate(rng),
            agreement: role
                .needs_agreement()
                .then(|| KeyAgreementSecret::generate(rng)),
        }
    }

    /// The public halves.
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            role: self.role,
            signing: self.signing.verifying_key(),
            agreement: self.agreement.as_ref().map(KeyAgreementSecret::public),
        }
    }

    /// Writes the key files into `dir` (created if missing); refuses to overwrite keys.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_private(
            &dir.join("signing.key"),
            &hex(self.signing.to_bytes().as_ref()),
        )?;
        if let Some(a) = &self.agreement {
            write_private(&dir.join("agreement.key"), &hex(a.to_bytes().as_ref()))?;
        }
        let public =
            serde_json::to_string_pretty(&self.public()).map_err(|e| Error::Malformed {
                what: "public.json",
                detail: e.to_string(),
            })?;
        let path = dir.join("public.json");
        std::fs::write(&path, public + "\n").map_err(io(&path))
    }

    /// Reads the key files from `dir`.
    pub fn read(dir: &Path) -> Result<KeySet> {
        let public = read_public(&dir.join("public.json"))?;
        let signing = SigningKey::from_bytes(&read_hex32(&dir.join("signing.key"))?)?;
        if signing.verifying_key() != public.signing {
            return Err(Error::Malformed {
                what: "key directory",
                detail: "signing.key does not match public.json".into(),
            });
        }
        let agreement = if public.role.needs_agreement() {
            Some(KeyAgreementSecret::from_bytes(&read_hex32(
                &dir.join("agreement.key"),
            )?)?)
        } else {
            None
        };
        Ok(KeySet {
            role: public.role,
            signing,
            agreement,
        })
    }
}

/// Reads a `public.json`.
pub fn read_public(path: &Path) -> Result<PublicKeys> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Malformed {
        what: "public.json",
        detail: e.to_string(),
    })
}
