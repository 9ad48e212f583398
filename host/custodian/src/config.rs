//! `custodian.toml`: where the custodian listens, its keys, its committee and its data.
//!
//! ```toml
//! index = 1                       # this custodian's index in the committee
//! listen = "127.0.0.1:7101"
//! keys = "keys/custodian-1"       # from `qvm keygen --role custodian`
//! committee = "committee.json"    # from `qvm committee init`
//! data = "data/custodian-1"       # the database and the component cache
//!
//! [store]                         # optional
//! max_bytes = 10_000_000_000      # refuse new work (`storage`) past this database size
//!
//! [limits]                        # optional: per component instance
//! fuel = 1000000000
//! deadline_ms = 30000
//! memory_mib = 64
//! instances = 256
//!
//! [gossip]                        # optional: pool marks (DESIGN.md §4)
//! interval_ms = 1000              # how often it pulls each other custodian's; 0: never
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

/// Pool-mark gossip in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipConfig {
    /// How often it pulls each other custodian's admitted ranges, milliseconds; 0 turns
    /// the pull off (the committee must then keep N ≤ 2K − 1 for reuse to be stopped).
    pub interval_ms: u64,
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig { interval_ms: 1_000 }
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
    /// Database limits.
    #[serde(default)]
    pub store: qvm_node::config::StoreConfig,
    /// Pool-mark gossip.
    #[serde(default)]
    pub gossip: GossipConfig,
}

pub use qvm_node::config::ConfigError;

impl qvm_node::config::Paths for Config {
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.keys, &mut self.committee, &mut self.data]
    }
}

impl Config {
    /// Reads a config file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        qvm_node::config::load(path)
    }
}
