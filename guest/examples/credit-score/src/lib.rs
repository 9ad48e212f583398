//! The credit-score example program.
//!
//! Secrets: `weights` (one per feature, fixed point at scale 16), `bias` and `cutoff`
//! (scale 16). Public input: `features` (reals) and `boundaries` (reals, ascending).
//! Outputs, all computed under MPC:
//!
//! - `score` = Σ weights_i · features_i + bias (scale 16);
//! - `band` = how many boundaries are at or below the score (0 ..= boundaries);
//! - `approve` = 1 if score ≥ cutoff, else 0.
#![no_std]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use quorumvm_guest::{Input, Output, Program, ProgramError, SCALE, output, secret};

/// Bit bound of scores at scale 16 (|score| < 2^47).
const SCORE_BITS: u8 = 48;
/// Bit bound of the raw dot product at scale 32 (|raw| < 2^63).
const RAW_BITS: u8 = 64;

struct CreditScore;

impl Program for CreditScore {
    fn run(input: &Input) -> Result<Vec<Output>, ProgramError> {
        let features = input.fixed_vec("features", SCALE)?;
        let boundaries = input.fixed_vec("boundaries", SCALE)?;
        let (weights, bias, cutoff) = (secret("weights")?, secret("bias")?, secret("cutoff")?);

        // Scale 16 · scale 16 = scale 32; the bias joins at scale 32, then one rescale.
        let raw = &weights.dot_public(&features)? + &bias.scale(1 << SCALE);
        let score = raw.trunc(RAW_BITS, SCALE as u8)?;

        let decline = (&score - &cutoff).ltz(SCORE_BITS)?;
        let approve = (-&decline).add_public(&[1])?;

        let n = boundaries.len() as u32;
        let negated: Vec<i64> = boundaries.iter().map(|b| -b).collect();
        let below = score.broadcast(n)?.add_public(&negated)?.ltz(SCORE_BITS)?;
        let band = (-&below.sum()).add_public(&[n as i64])?;

        Ok(vec![
            output("score", score),
            output("band", band),
            output("approve", approve),
        ])
    }
}

quorumvm_guest::export_program!(CreditScore);
