//! Errors of `qvm-package`.

/// Building, reading or writing packages and their parts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cryptographic or encoding error.
    #[error(transparent)]
    Core(#[from] qvm_core::Error),
    /// The program does not compile.
    #[error("the program does not compile:\n{0}")]
    Compile(String),
    /// The component could not be emitted.
    #[error("cannot emit the component: {0}")]
    Emit(String),
    /// A file is malformed (JSON, TOML, the package container).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which file or part.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The secrets file does not fit the program.
    #[error("secrets: {0}")]
    Secrets(String),
    /// The policy does not fit the program.
    #[error("policy: {0}")]
    Policy(String),
    /// The committee cannot run the program, or is malformed.
    #[error("committee: {0}")]
    Committee(String),
    /// The version chain is broken.
    #[error("version: {0}")]
    Version(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        source: std::io::Error,
    },
}

/// Why a custodian refuses to approve: each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file is not a well-formed package.
    #[error("malformed package: {0}")]
    Malformed(String),
    /// The manifest is not signed by the owner key it names.
    #[error("the manifest's owner signature does not verify")]
    OwnerSignature,
    /// The manifest names another committee (or another K or N).
    #[error("the package is for committee {got}, not {expected}")]
    Committee {
        /// The committee the custodian belongs to.
        expected: String,
        /// The one the package names.
        got: String,
    },
    /// The committee cannot run this class of program.
    #[error("the committee cannot run this program: {0}")]
    CommitteeClass(String),
    /// The component's hash does not match the manifest.
    #[error("the component does not match the manifest's component hash")]
    ComponentHash,
    /// Recompiling the source did not give the same component, schema or cost.
    #[error("recompiling the source does not give the packaged component: {0}")]
    Recompile(String),
    /// The version is not greater than the previous one, or the previous hash differs.
    #[error("version chain: {0}")]
    VersionChain(String),
    /// There is no sealed bundle for this custodian.
    #[error("no bundle for custodian {0}")]
    NoBundle(u8),
    /// This custodian's bundle does not open (sealed to another key, or tampered).
    #[error("custodian {0}'s bundle does not open with its key")]
    BundleSeal(u8),
    /// The opened bundle does not match its commitment in the manifest.
    #[error("custodian {0}'s bundle does not match its commitment")]
    BundleCommitment(u8),
    /// The opened bundle does not hold the program's secrets.
    #[error("custodian {0}'s bundle does not hold the program's secrets: {1}")]
    BundleContents(u8, String),
    /// The policy names outputs the program does not have.
    #[error("policy: {0}")]
    Policy(String),
}
