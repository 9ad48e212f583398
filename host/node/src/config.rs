//! Reading a daemon's TOML configuration: the file, then every path in it made relative
//! to the file's directory (so a config and the keys beside it move together).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// `[store]`: limits on the node's database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The most the database may hold, bytes (unset: what the disk holds). At the quota a
    /// node refuses new work with `storage`, exactly as on a full disk, and keeps serving
    /// what needs no new record (health, status, reads).
    pub max_bytes: Option<u64>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub detail: String,
}

/// A configuration with paths to resolve.
pub trait Paths {
    /// The paths in it.
    fn paths(&mut self) -> Vec<&mut PathBuf>;
}

/// Reads `path`, resolving the config's relative paths against its directory.
pub fn load<T: DeserializeOwned + Paths>(path: &Path) -> Result<T, ConfigError> {
    let err = |detail: String| ConfigError {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut c: T = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in c.paths() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(c)
}
