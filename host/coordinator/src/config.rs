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
//! batch = 8192                    # items per batch (up to 4x while far below target)
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
    /// Items per batch (up to four times as many while a pool is that far below its
    /// target, never more than [`qvm_api::MAX_OFFLINE_BATCH`]).
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
        let config: Config = qvm_node::config::load(path)?;
        let batch = config.offline.batch;
        if batch == 0 || batch > qvm_api::MAX_OFFLINE_BATCH {
            return Err(ConfigError {
                path: path.display().to_string(),
                detail: format!(
                    "[offline] batch = {batch}: custodians take batches of 1..={} items",
                    qvm_api::MAX_OFFLINE_BATCH
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(extra: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("coordinator.toml");
        let text = format!(
            "listen = \"127.0.0.1:0\"\nkeys = \"keys\"\ncommittee = \"committee.json\"\ndata = \"data\"\n{extra}"
        );
        std::fs::write(&path, text).expect("writes");
        Config::load(&path)
    }

    #[test]
    fn offline_batches_custodians_would_refuse_are_a_config_error() {
        assert_eq!(load_with("").expect("defaults").offline.batch, 8_192);
        assert_eq!(
            load_with("[offline]\nbatch = 65536\n")
                .expect("the largest")
                .offline
                .batch,
            65_536
        );
        for batch in [0, 65_537, 1_000_000] {
            let err = load_with(&format!("[offline]\nbatch = {batch}\n")).expect_err("refused");
            assert!(err.detail.contains("1..=65536"), "{err}");
        }
    }
}
