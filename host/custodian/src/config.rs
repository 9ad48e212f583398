//! `custodian.toml`: where the custodian listens, its keys, its committee and its data.
//!
//! ```toml
//! index = 1                       # this custodian's index in the committee
//! listen = "127.0.0.1:7101"
//! keys = "keys/custodian-1"       # from `qvm keygen --role custodian`
//! committee = "committee.json"    # from `qvm committee init`
//! data = "data/custodian-1"       # the database and the component cache
//!
//! [limits]                        # optional: per component instance
//! fuel = 1000000000
//! deadline_ms = 30000
//! memory_mib = 64
//! instances = 256
//! ```
//! Relative paths are relative to the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Instance limits in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Fuel per run.
    pub fuel: u64,
    /// Wall-clock budget per run, milliseconds (includes waiting for rounds).
    pub deadline_ms: u64,
    /// Linear memory per instance, MiB.
    pub memory_mib: usize,
    /// Concurrent instances (a batch of B inputs takes B).
    pub instances: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            fuel: 1_000_000_000,
            deadline_ms: 30_000,
            memory_mib: 64,
            instances: 256,
        }
    }
}

/// A custodian's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Its index in the committee.
    pub index: u8,
    /// Listen address.
    pub listen: SocketAddr,
    /// Key directory.
    pub keys: PathBuf,
    /// The committee file.
    pub committee: PathBuf,
    /// Data directory.
    pub data: PathBuf,
    /// Instance limits.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub detail: String,
}

impl Config {
    /// Reads a config file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |detail: String| ConfigError {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.keys, &mut c.committee, &mut c.data] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }
}
