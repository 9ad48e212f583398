//! Write QuorumVM programs in Rust.
//!
//! A program is a component for the `quorumvm:program` world (`wit/program.wit`). It never
//! holds a secret: [`Shared`] is an opaque handle to a vector of secret-shared values, and
//! every operation on it is a call to the host, which runs it on the custodian's shares
//! (interactive ones through the MPC engine). The program does what is public: read and
//! transform its input, choose the operations, work on whole vectors at once (each
//! interactive call is one batch, however long the vector).
//!
//! ```ignore
//! struct Score;
//! impl quorumvm_guest::Program for Score {
//!     fn run(input: &Input) -> Result<Vec<Output>, ProgramError> {
//!         let x = input.fixed_vec("features", 16)?;
//!         let score = secret("weights")?.dot_public(&x)?;
//!         Ok(vec![output("score", score)])
//!     }
//! }
//! quorumvm_guest::export_program!(Score);
//! ```
//!
//! The crate is `no_std` (with `alloc`) so a program imports only the world, never WASI.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::{Add, Neg, Sub};

#[doc(hidden)]
pub mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "program",
        pub_export_macro: true,
        export_macro_name: "__export_world_program",
        default_bindings_module: "quorumvm_guest::bindings",
        generate_all,
    });
}

use bindings::quorumvm::program::shares;
pub use bindings::quorumvm::program::shares::ShareError;
use bindings::quorumvm::program::types::Output as RawOutput;
pub use bindings::quorumvm::program::types::{Field, ProgramError, Value};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The canonical ABI's allocator export: the host calls it to place lists and strings
/// (the input) in the guest's memory. std-based guests get one from wasi-libc; a `no_std`
/// guest must provide its own.
///
/// # Safety
/// Called by the host per the component model's canonical ABI: `old` was returned by an
/// earlier call with `old_len` and `align`, `align` is a power of two.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        // A zero-sized allocation needs no memory, only an aligned non-null pointer.
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI guarantees a power-of-two `align` and, when `old_len` is
    // non-zero, that `old` came from this allocator with that layout.
    let ptr = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable()
    }
    ptr
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A panic is a trap: the host ends the instance and reports it.
    core::arch::wasm32::unreachable()
}

impl From<ShareError> for ProgramError {
    fn from(e: ShareError) -> ProgramError {
        ProgramError::Share(e)
    }
}

/// Default fixed-point scale f: reals are carried as x · 2^16.
pub const SCALE: u32 = 16;

/// A real as a fixed-point integer round(x · 2^scale), saturating at the i64 range.
pub fn fixed(x: f64, scale: u32) -> i64 {
    let scaled = x * (1u64 << scale) as f64;
    // Round half away from zero without std's `round`.
    let r = if scaled >= 0.0 {
        scaled + 0.5
    } else {
        scaled - 0.5
    };
    r as i64
}

/// An opaque handle to a vector of secret-shared values.
///
/// Operators (`+`, `-`, unary `-`) are for vectors of equal length; a length mismatch
/// there is a programming error and traps. The methods return errors instead.
pub struct Shared(shares::Shared);

/// The result of a share operation.
pub type Result<T, E = ShareError> = core::result::Result<T, E>;

/// The secret parameter `name` (a scalar is a vector of length 1).
pub fn secret(name: &str) -> Result<Shared> {
    shares::secret(name).map(Shared)
}

/// `len` uniformly random field elements known to nobody.
pub fn random(len: u32) -> Result<Shared> {
    shares::random(len).map(Shared)
}

/// `len` uniformly random bits known to nobody.
pub fn random_bits(len: u32) -> Result<Shared> {
    shares::random_bits(len).map(Shared)
}

/// Where `c` is 1, `x`; where 0, `y` (one round).
pub fn select(c: &Shared, x: &Shared, y: &Shared) -> Result<Shared> {
    shares::select(&c.0, &x.0, &y.0).map(Shared)
}

impl Shared {
    /// Number of elements.
    pub fn len(&self) -> u32 {
        self.0.len()
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `start .. end`.
    pub fn slice(&self, start: u32, end: u32) -> Result<Shared> {
        self.0.slice(start, end).map(Shared)
    }

    /// This vector followed by `other`.
    pub fn concat(&self, other: &Shared) -> Result<Shared> {
        self.0.concat(&other.0).map(Shared)
    }

    /// A length-1 vector repeated `n` times.
    pub fn broadcast(&self, n: u32) -> Result<Shared> {
        self.0.broadcast(n).map(Shared)
    }

    /// Element-wise sum.
    pub fn try_add(&self, other: &Shared) -> Result<Shared> {
        self.0.add(&other.0).map(Shared)
    }

    /// Element-wise difference.
    pub fn try_sub(&self, other: &Shared) -> Result<Shared> {
        self.0.sub(&other.0).map(Shared)
    }

    /// Adds public values element-wise.
    pub fn add_public(&self, values: &[i64]) -> Result<Shared> {
        self.0.add_public(values).map(Shared)
    }

    /// Multiplies by public values element-wise.
    pub fn mul_public(&self, values: &[i64]) -> Result<Shared> {
        self.0.mul_public(values).map(Shared)
    }

    /// Multiplies every element by a public value.
    pub fn scale(&self, factor: i64) -> Shared {
        Shared(self.0.scale(factor))
    }

    /// Dot product with a public vector (length 1).
    pub fn dot_public(&self, values: &[i64]) -> Result<Shared> {
        self.0.dot_public(values).map(Shared)
    }

    /// Sum of the elements (length 1).
    pub fn sum(&self) -> Shared {
        Shared(self.0.sum())
    }

    /// Element-wise product with another shared vector (one round).
    pub fn mul(&self, other: &Shared) -> Result<Shared> {
        shares::mul(&self.0, &other.0).map(Shared)
    }

    /// 1 where the element is below zero (elements within ±2^(bits−1)).
    pub fn ltz(&self, bits: u8) -> Result<Shared> {
        shares::ltz(&self.0, bits).map(Shared)
    }

    /// 1 where the element is zero (elements within ±2^(bits−1)).
    pub fn eqz(&self, bits: u8) -> Result<Shared> {
        shares::eqz(&self.0, bits).map(Shared)
    }

    /// Divides by 2^shift, rounding down or (by the remainder's odds) up: the rescale after
    /// a fixed-point product.
    pub fn trunc(&self, bits: u8, shift: u8) -> Result<Shared> {
        shares::trunc(&self.0, bits, shift).map(Shared)
    }
}

fn must(r: Result<Shared>) -> Shared {
    match r {
        Ok(s) => s,
        Err(e) => panic!("share operation failed: {e:?}"),
    }
}

impl Add for &Shared {
    type Output = Shared;
    fn add(self, rhs: &Shared) -> Shared {
        must(self.try_add(rhs))
    }
}

impl Sub for &Shared {
    type Output = Shared;
    fn sub(self, rhs: &Shared) -> Shared {
        must(self.try_sub(rhs))
    }
}

impl Neg for &Shared {
    type Output = Shared;
    fn neg(self) -> Shared {
        Shared(self.0.neg())
    }
}

/// A named output.
pub struct Output {
    name: String,
    value: Shared,
}

/// Names an output.
pub fn output(name: &str, value: Shared) -> Output {
    Output {
        name: name.to_string(),
        value,
    }
}

/// The program's public input, by field name.
pub struct Input(Vec<Field>);

fn invalid(msg: &str, name: &str) -> ProgramError {
    let mut m = String::from(msg);
    m.push_str(": ");
    m.push_str(name);
    ProgramError::InvalidInput(m)
}

impl Input {
    /// The value of field `name`.
    pub fn get(&self, name: &str) -> core::result::Result<&Value, ProgramError> {
        self.0
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.value)
            .ok_or_else(|| invalid("missing input", name))
    }

    /// A real vector field (or an int vector) as fixed-point integers at `scale`.
    pub fn fixed_vec(
        &self,
        name: &str,
        scale: u32,
    ) -> core::result::Result<Vec<i64>, ProgramError> {
        match self.get(name)? {
            Value::Reals(v) => v.iter().map(|x| checked_fixed(*x, scale, name)).collect(),
            Value::Ints(v) => Ok(v.iter().map(|x| x << scale).collect()),
            _ => Err(invalid("expected a vector of numbers", name)),
        }
    }

    /// A real (or int) field as a fixed-point integer at `scale`.
    pub fn fixed(&self, name: &str, scale: u32) -> core::result::Result<i64, ProgramError> {
        match self.get(name)? {
            Value::Real(x) => checked_fixed(*x, scale, name),
            Value::Int(x) => Ok(x << scale),
            _ => Err(invalid("expected a number", name)),
        }
    }
}

/// Rejects NaN, infinities and values whose fixed-point form would not fit 48 bits.
fn checked_fixed(x: f64, scale: u32, name: &str) -> core::result::Result<i64, ProgramError> {
    let limit = (1u64 << 47) as f64 / (1u64 << scale) as f64;
    if x.is_nan() || x >= limit || x <= -limit {
        return Err(invalid("number out of range", name));
    }
    Ok(fixed(x, scale))
}

/// A QuorumVM program.
pub trait Program {
    /// Evaluates the program on one input.
    fn run(input: &Input) -> core::result::Result<Vec<Output>, ProgramError>;
}

#[doc(hidden)]
pub fn __run<P: Program>(input: Vec<Field>) -> core::result::Result<Vec<RawOutput>, ProgramError> {
    let outputs = P::run(&Input(input))?;
    Ok(outputs
        .into_iter()
        .map(|o| RawOutput {
            name: o.name,
            value: o.value.0,
        })
        .collect())
}

/// Exports a [`Program`] as the component's `run`.
#[macro_export]
macro_rules! export_program {
    ($ty:ident) => {
        #[doc(hidden)]
        pub struct __QvmExport;
        impl $crate::bindings::Guest for __QvmExport {
            fn run(
                input: $crate::__Vec<$crate::Field>,
            ) -> ::core::result::Result<$crate::__Vec<$crate::bindings::quorumvm::program::types::Output>, $crate::ProgramError> {
                $crate::__run::<$ty>(input)
            }
        }
        $crate::bindings::__export_world_program!(__QvmExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub use alloc::vec::Vec as __Vec;
