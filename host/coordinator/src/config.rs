//! `coordinator.toml`.
//!
//! ```toml
//! listen = "127.0.0.1:7100"
//! keys = "keys/coordinator"       # from `qvm keygen --role coordinator`
//! committee = "committee.json"    # custodian URLs come from it
//! data = "data/coordinator"
//!
//! [sessions]                      # optional
//! round_timeout_ms = 2000         # a custodian silent this long is failed over
//! ticket_ttl_secs = 30
//!
//! [store]                         # optional
//! max_bytes = 10_000_000_000      # refuse new work (`storage`) past this database size
//!
//! [offline]                       # optional: pool levels kept by the offline phase
//! low_water = 20000               # refill below this many items
//! batch = 8192                    # items per batch
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// A custodian that does not answer a step within this is failed over.
    pub round_timeout_ms: u64,
    /// Tickets expire this long after issue.
    pub ticket_ttl_secs: u64,
}

impl Default for SessionsConfig {
    fn default() -> SessionsConfig {
        SessionsConfig {
            round_timeout_ms: 2_000,
            ticket_ttl_secs: 30,
        }
    }
}

/// Offline-phase settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Refill a pool when fewer items than this are available.
    pub low_water: u64,
    /// Items per batch.
    pub batch: u32,
}

impl Default for OfflineConfig {
    fn default() -> OfflineConfig {
        OfflineConfig {
            low_water: 20_000,
            batch: 8_192,
        }
    }
}

/// The coordinator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address (the client API).
    pub listen: SocketAddr,
    /// Key directory.
    pub keys: PathBuf,
    /// The committee file.
    pub committee: PathBuf,
    /// Data directory.
    pub data: PathBuf,
    /// Sessions.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// The offline phase.
    #[serde(default)]
    pub offline: OfflineConfig,
    /// Database limits.
    #[serde(default)]
    pub store: qvm_node::config::StoreConfig,
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
