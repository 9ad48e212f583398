//! The policy a package carries (TOML): who may evaluate, how much, how fast, and which
//! outputs each identity receives.
//!
//! ```toml
//! [[identity]]
//! name = "bank-a"
//! key = "02…"                 # the client's verifying key (hex, compressed)
//! budget = 10000              # cost units per period
//! period_secs = 86400
//! rate_per_minute = 60        # token bucket: refill
//! burst = 10                  # token bucket: capacity
//! outputs = ["band", "approve"]
//! reveal_to_client = false    # true: outputs are sealed to the client, the coordinator never sees them
//!
//! [degrade]
//! restrict_outputs = ["approve"]   # what a restricted identity still receives
//! restrict_rate_per_minute = 6
//! ```

use qvm_core::sign::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One identity allowed to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Its name.
    pub name: String,
    /// Its verifying key.
    pub key: VerifyingKey,
    /// Cost units per period.
    pub budget: u64,
    /// The budget period.
    pub period_secs: u64,
    /// Token-bucket refill, evaluations per minute.
    pub rate_per_minute: u32,
    /// Token-bucket capacity.
    pub burst: u32,
    /// The named outputs it receives.
    pub outputs: Vec<String>,
    /// Whether outputs are sealed to the client instead of revealed to the coordinator.
    #[serde(default)]
    pub reveal_to_client: bool,
}

/// What a degraded (restricted) identity keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degrade {
    /// The outputs a restricted identity still receives.
    #[serde(default)]
    pub restrict_outputs: Vec<String>,
    /// Its rate while restricted.
    #[serde(default)]
    pub restrict_rate_per_minute: u32,
}

/// A package's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The identities.
    #[serde(default, rename = "identity")]
    pub identities: Vec<Identity>,
    /// Degrade rules.
    #[serde(default)]
    pub degrade: Degrade,
}

impl Policy {
    /// Parses a policy file.
    pub fn from_toml(text: &str) -> Result<Policy> {
        toml::from_str(text).map_err(|e| Error::Malformed {
            what: "policy",
            detail: e.to_string(),
        })
    }

    /// Checks the policy against the program's outputs.
    pub fn check(&self, outputs: &[String]) -> core::result::Result<(), String> {
        for (i, id) in self.identities.iter().enumerate() {
            if self.identities[..i].iter().any(|o| o.name == id.name) {
                return Err(format!("identity `{}` appears twice", id.name));
            }
            if id.period_secs == 0 || id.burst == 0 {
                return Err(format!(
                    "identity `{}`: period and burst must be positive",
                    id.name
                ));
            }
            if let Some(bad) = id.outputs.iter().find(|o| !outputs.contains(o)) {
                return Err(format!(
                    "identity `{}` is granted `{bad}`, which the program does not output",
                    id.name
                ));
            }
        }
        if let Some(bad) = self
            .degrade
            .restrict_outputs
            .iter()
            .find(|o| !outputs.contains(o))
        {
            return Err(format!(
                "degrade rule names `{bad}`, which the program does not output"
            ));
        }
        Ok(())
    }
}
