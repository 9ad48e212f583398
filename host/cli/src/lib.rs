//! The `qvm` command line's library: each verb's implementation, and what the cluster
//! tests and benchmarks drive directly (the coordinator client, the local cluster).

pub mod audit;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod compile;
pub mod daemons;
pub mod demo;
pub mod eval;
pub mod examples;
pub mod inputs;
pub mod package;
pub mod run;
