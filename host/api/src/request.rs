//! What a client signs (DESIGN.md §8 step 1), and the receipt it gets back.
//!
//! Inputs mirror the guest ABI's `value` variant (`wit/program.wit`). Reals are carried as
//! IEEE-754 bit patterns in the canonical encoding (BCS has no floats, and a signature must
//! cover exact bits) and as JSON numbers in the client API.

use qvm_core::PartySet;
use qvm_core::encoding::{Digest, bytes_serde, hash};
use qvm_core::sign::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, RECEIPT, REQUEST, REQUEST_BODY};

/// The media type of a [`SignedRequest`] in its canonical encoding (BCS, reals as their
/// IEEE 754 bits): what `POST /v1/eval` takes besides JSON. A batch's inputs decode about
/// twenty times faster than from JSON numbers.
pub const CANONICAL_MEDIA_TYPE: &str = "application/x-qvm-canonical";

/// A real number, exact to the bit in every encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Real(pub f64);

impl Serialize for Real {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_u64(self.0.to_bits())
        }
    }
}

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Real, D::Error> {
        if d.is_human_readable() {
            f64::deserialize(d).map(Real)
        } else {
            u64::deserialize(d).map(|b| Real(f64::from_bits(b)))
        }
    }
}

/// Vectors of 8-byte numbers as one byte string in the canonical encoding (each element's
/// eight little-endian bytes; reals as their IEEE 754 bits), and as plain lists in JSON.
///
/// BCS would otherwise write them element by element, and serde's per-element calls were
/// most of what decoding and encoding a batch cost (a 100-input batch of 100 reals is
/// 10 000 of them, decoded by the coordinator and each custodian, and encoded again for
/// every signature and hash).
mod packed {
    use core::fmt;
    use core::marker::PhantomData;

    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    use super::Real;

    /// A number carried as eight little-endian bytes.
    pub trait Word: Copy {
        fn to_word(self) -> [u8; 8];
        fn from_word(bytes: [u8; 8]) -> Self;
    }

    impl Word for i64 {
        fn to_word(self) -> [u8; 8] {
            self.to_le_bytes()
        }
        fn from_word(bytes: [u8; 8]) -> i64 {
            i64::from_le_bytes(bytes)
        }
    }

    impl Word for Real {
        fn to_word(self) -> [u8; 8] {
            self.0.to_bits().to_le_bytes()
        }
        fn from_word(bytes: [u8; 8]) -> Real {
            Real(f64::from_bits(u64::from_le_bytes(bytes)))
        }
    }

    pub fn serialize<T: Word + Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return v.serialize(s);
        }
        // Sized up front and written word by word (a `flat_map` collect grows byte by byte).
        let mut bytes = vec![0u8; v.len() * 8];
        for (word, x) in bytes.as_chunks_mut::<8>().0.iter_mut().zip(v) {
            *word = x.to_word();
        }
        s.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: Word + Deserialize<'de>,
        D: Deserializer<'de>,
    {
        if d.is_human_readable() {
            return Vec::<T>::deserialize(d);
        }
        d.deserialize_bytes(Words(PhantomData))
    }

    struct Words<T>(PhantomData<T>);

    impl<T: Word> Visitor<'_> for Words<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string of 8-byte numbers")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<T>, E> {
            let (words, rest) = v.as_chunks::<8>();
            if !rest.is_empty() {
                return Err(E::custom("numbers are 8 bytes each"));
            }
            Ok(words.iter().map(|w| T::from_word(*w)).collect())
        }
    }
}

/// One input value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputValue {
    /// An integer.
    Int(i64),
    /// A real (fixed point in the program).
    Real(Real),
    /// A boolean.
    Boolean(bool),
    /// A vector of integers.
    Ints(#[serde(with = "packed")] Vec<i64>),
    /// A vector of reals.
    Reals(#[serde(with = "packed")] Vec<Real>),
    /// A vector of booleans.
    Booleans(Vec<bool>),
}

/// A named input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputField {
    /// The input's name in the program.
    pub name: String,
    /// Its value.
    pub value: InputValue,
}

/// One evaluation's inputs.
pub type Input = Vec<InputField>;

/// What a client asks: evaluate `program` at `version` on each of `inputs` (one input, or a
/// batch that runs as vectors in the same rounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRequest {
    /// The program's name.
    pub program: String,
    /// The version the client expects (the active one).
    pub version: u64,
    /// The identity in the program's policy the client speaks for.
    pub identity: String,
    /// The inputs: one per evaluation.
    pub inputs: Vec<Input>,
    /// A fresh random nonce (replay protection).
    #[serde(with = "bytes_serde")]
    pub nonce: Vec<u8>,
    /// When the client signed, Unix seconds.
    pub issued_at: u64,
    /// The client's key-agreement key, for identities whose outputs are sealed to the
    /// client (`reveal_to_client`): the custodians seal their masked output shares to it
    /// and the coordinator never sees an output.
    #[serde(default)]
    pub reveal_to: Option<qvm_core::pairwise::KeyAgreementPublic>,
}

/// A request with the client's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The request.
    pub request: EvalRequest,
    /// The client's signature under [`REQUEST`].
    pub signature: Signature,
}

impl EvalRequest {
    /// The digest of the request's body, which its signature and its hash cover. A node
    /// computes it once: a batch's body is most of what a node would otherwise encode and
    /// hash twice (once for the signature, once for the request's name), at every node.
    pub fn digest(&self) -> Result<Digest, Error> {
        Ok(hash(REQUEST_BODY, self)?)
    }

    /// Signs the request.
    pub fn sign(self, key: &SigningKey) -> Result<SignedRequest, Error> {
        let signature = key.sign(REQUEST, &self.digest()?)?;
        Ok(SignedRequest {
            request: self,
            signature,
        })
    }
}

impl SignedRequest {
    /// The request with its body's digest computed, for checking and naming it.
    pub fn digested(&self) -> Result<DigestedRequest, Error> {
        Ok(DigestedRequest {
            body: self.request.digest()?,
            signature: self.signature,
        })
    }

    /// Checks the client's signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Error> {
        self.digested()?.verify(key)
    }

    /// The request's hash (what tickets and audit entries name): its body's digest. Not
    /// the signature's: a body signed twice is one request, served once.
    pub fn hash(&self) -> Result<Digest, Error> {
        Ok(self.digested()?.hash())
    }
}

/// A signed request's body digest ([`EvalRequest::digest`]) and signature: all its
/// signature check and its hash need, small enough to hand to another thread.
#[derive(Debug, Clone, Copy)]
pub struct DigestedRequest {
    body: Digest,
    signature: Signature,
}

impl DigestedRequest {
    /// Checks the client's signature: over the body's digest under [`REQUEST`].
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Error> {
        key.verify(REQUEST, &self.body, &self.signature)
            .map_err(|_| Error::Signature("request"))
    }

    /// The request's hash: its body's digest.
    pub fn hash(&self) -> Digest {
        self.body
    }
}

/// One revealed output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedOutput {
    /// Its name.
    pub name: String,
    /// Fixed-point scale f: the value is `raw / 2^f`.
    pub scale: u32,
    /// The values, as centered integers.
    pub raw: Vec<i128>,
}

impl RevealedOutput {
    /// Splits an item's reconstructed values (the granted outputs, concatenated) by the
    /// layout the custodians delivered, with each output's scale; `None` if the lengths
    /// disagree.
    pub fn split(
        layout: &[(String, u32)],
        values: &[qvm_core::Fp],
        scale: impl Fn(&str) -> u32,
    ) -> Option<Vec<RevealedOutput>> {
        let mut rest = values;
        let mut out = Vec::with_capacity(layout.len());
        for (name, len) in layout {
            let (head, tail) = (rest.get(..*len as usize)?, rest.get(*len as usize..)?);
            out.push(RevealedOutput {
                name: name.clone(),
                scale: scale(name),
                raw: head.iter().map(|x| x.to_i128()).collect(),
            });
            rest = tail;
        }
        rest.is_empty().then_some(out)
    }

    /// The values as reals.
    pub fn reals(&self) -> Vec<f64> {
        let div = (1u128 << self.scale.min(64)) as f64;
        self.raw.iter().map(|v| *v as f64 / div).collect()
    }
}

/// The coordinator's signed account of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The request's hash.
    pub request: Digest,
    /// The ticket that ran it (the last attempt's).
    pub ticket: Digest,
    /// The package (program version) that ran.
    pub package: Digest,
    /// The session id of the ticket that ran it (item sessions and sealed deliveries
    /// derive from it).
    pub session: Digest,
    /// The custodians that served it.
    pub members: PartySet,
    /// Hash of the revealed outputs (all items), so the client can hold the coordinator to
    /// them.
    pub outputs: Digest,
    /// Cost units charged.
    pub cost: u64,
    /// Rounds the session took.
    pub rounds: u32,
    /// When, Unix seconds.
    pub issued_at: u64,
}

/// A receipt with the coordinator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// The coordinator's signature under [`RECEIPT`].
    pub signature: Signature,
}

impl Receipt {
    /// Hash of what was delivered (revealed outputs, or deliveries sealed to the client),
    /// as a receipt names it.
    pub fn outputs_hash<T: Serialize + ?Sized>(outputs: &T) -> Result<Digest, Error> {
        Ok(hash(RECEIPT, outputs)?)
    }

    /// Signs it.
    pub fn sign(self, key: &SigningKey) -> Result<SignedReceipt, Error> {
        let signature = key.sign(RECEIPT, &self)?;
        Ok(SignedReceipt {
            receipt: self,
            signature,
        })
    }
}

impl SignedReceipt {
    /// Checks the coordinator's signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Error> {
        key.verify(RECEIPT, &self.receipt, &self.signature)
            .map_err(|_| Error::Signature("receipt"))
    }
}

/// Checks one input against the program's declared inputs exactly as the compiled
/// component decodes it (types, lengths, bounds, rounding), so that a bad input is refused
/// before any budget is spent: every declared input present once, nothing undeclared.
pub fn check_input(schema: &qvm_package::manifest::Schema, input: &Input) -> Result<(), String> {
    for (i, field) in input.iter().enumerate() {
        if input[..i].iter().any(|f| f.name == field.name) {
            return Err(format!("input `{}` is given twice", field.name));
        }
        if !schema.inputs.iter().any(|d| d.name == field.name) {
            return Err(format!("the program has no input `{}`", field.name));
        }
    }
    for d in &schema.inputs {
        let field = input
            .iter()
            .find(|f| f.name == d.name)
            .ok_or_else(|| format!("input `{}` is missing", d.name))?;
        check_field(d, &field.value).map_err(|why| format!("input `{}`: {why}", d.name))?;
    }
    Ok(())
}

fn check_field(d: &qvm_package::manifest::Field, v: &InputValue) -> Result<(), String> {
    let (lo, hi) = d.bounds.unwrap_or((i128::MIN, i128::MAX));
    let f = d.scale;
    let fixed = d.ty == "fixed";
    let int_ok = |x: i64| {
        let (lo, hi) = if fixed {
            (-((-lo).div_euclid(1 << f)), hi >> f)
        } else {
            (lo, hi)
        };
        (lo..=hi).contains(&(x as i128))
    };
    let (lo_f, hi_f) = (lo as f64, hi as f64);
    let real_ok = |x: &Real| {
        let scaled = x.0 * (1u64 << f) as f64;
        // The bounds are whole numbers, so a value already within them rounds within
        // them: only a value outside needs rounding (which can bring it in). Why the
        // shortcut: without SSE4.1 in the build target, `round_ties_even` is a software
        // routine, and it was most of this check's cost (10 000 values per batch).
        (scaled >= lo_f && scaled <= hi_f) || {
            let rounded = scaled.round_ties_even();
            rounded >= lo_f && rounded <= hi_f
        }
    };
    let out_of_bounds = || format!("a value is outside the declared bounds (scaled {lo}..={hi})");
    let want_len = |n: usize| {
        if n == d.len as usize {
            Ok(())
        } else {
            Err(format!("{n} elements given, {} declared", d.len))
        }
    };
    match (d.ty.as_str(), d.vector, v) {
        ("int" | "fixed", false, InputValue::Int(x)) => {
            int_ok(*x).then_some(()).ok_or_else(out_of_bounds)
        }
        ("fixed", false, InputValue::Real(x)) => real_ok(x).then_some(()).ok_or_else(out_of_bounds),
        ("bool", false, InputValue::Boolean(_)) => Ok(()),
        ("int" | "fixed", true, InputValue::Ints(xs)) => {
            want_len(xs.len())?;
            xs.iter()
                .all(|x| int_ok(*x))
                .then_some(())
                .ok_or_else(out_of_bounds)
        }
        ("fixed", true, InputValue::Reals(xs)) => {
            want_len(xs.len())?;
            xs.iter()
                .all(real_ok)
                .then_some(())
                .ok_or_else(out_of_bounds)
        }
        ("bool", true, InputValue::Booleans(xs)) => want_len(xs.len()),
        _ => Err(format!(
            "wrong type: declared {}{}",
            d.ty,
            if d.vector { " vector" } else { "" }
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use qvm_core::encoding::{from_canonical, to_canonical};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A request of one input (also the fixture of other modules' tests).
    pub(crate) fn request() -> EvalRequest {
        EvalRequest {
            program: "credit-score".into(),
            version: 1,
            identity: "bank".into(),
            inputs: vec![vec![InputField {
                name: "features".into(),
                value: InputValue::Reals(vec![Real(1.5), Real(-0.1)]),
            }]],
            nonce: vec![7; 16],
            issued_at: 1_800_000_000,
            reveal_to: None,
        }
    }

    /// A fixed-point input of scale 16 bounded to [lo, hi] (scaled).
    fn bounded(lo: i128, hi: i128) -> qvm_package::manifest::Schema {
        let field = qvm_package::manifest::Field {
            name: "x".into(),
            ty: "fixed".into(),
            len: 1,
            scale: 16,
            bounds: Some((lo, hi)),
            vector: false,
        };
        qvm_package::manifest::Schema {
            inputs: vec![field],
            secrets: Vec::new(),
            outputs: Vec::new(),
        }
    }

    proptest::proptest! {
        /// A real is in bounds exactly when its rounded scaled value is (ties to even, as
        /// the component rounds), near the bounds, at them and half a unit off them.
        #[test]
        fn reals_are_bounded_after_rounding(
            lo in -70_000i128..0,
            width in 0i128..140_000,
            offset in -3i128..=3,
            halves in proptest::bool::ANY,
            at_hi in proptest::bool::ANY,
        ) {
            let hi = lo + width;
            let edge = if at_hi { hi } else { lo };
            let scaled = edge as f64 + offset as f64 * if halves { 0.5 } else { 0.25 };
            let x = scaled / 65_536.0;
            let expected = {
                let r = scaled.round_ties_even();
                r >= lo as f64 && r <= hi as f64
            };
            let input = vec![InputField { name: "x".into(), value: InputValue::Real(Real(x)) }];
            proptest::prop_assert_eq!(check_input(&bounded(lo, hi), &input).is_ok(), expected);
        }
    }

    #[test]
    fn reals_outside_the_bounds_by_rounding_or_not_at_all_are_refused() {
        let schema = bounded(-10, 10);
        let real = |x: f64| {
            vec![InputField {
                name: "x".into(),
                value: InputValue::Real(Real(x / 65_536.0)),
            }]
        };
        // 10.5 rounds to 10 (ties to even), 11.5 to 12; -10.5 to -10.
        for (x, ok) in [
            (10.5, true),
            (11.5, false),
            (-10.5, true),
            (-10.6, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
        ] {
            assert_eq!(check_input(&schema, &real(x)).is_ok(), ok, "{x}");
        }
    }

    #[test]
    fn reals_survive_both_encodings_bit_for_bit() -> Result<(), Box<dyn std::error::Error>> {
        let r = request();
        assert_eq!(from_canonical::<EvalRequest>(&to_canonical(&r)?)?, r);
        let json = serde_json::to_string(&r)?;
        assert!(json.contains("\"reals\":[1.5,-0.1]"), "{json}");
        assert_eq!(serde_json::from_str::<EvalRequest>(&json)?, r);
        Ok(())
    }

    #[test]
    fn vectors_are_packed_words_in_the_canonical_encoding() -> Result<(), Box<dyn std::error::Error>>
    {
        let ints = InputValue::Ints(vec![-1, 2]);
        let mut expected = vec![3, 16]; // variant 3 (ints), then 16 bytes
        expected.extend((-1i64).to_le_bytes());
        expected.extend(2i64.to_le_bytes());
        assert_eq!(to_canonical(&ints)?, expected);
        assert_eq!(from_canonical::<InputValue>(&expected)?, ints);
        let reals = InputValue::Reals(vec![Real(-0.0), Real(f64::NAN)]);
        let back = from_canonical::<InputValue>(&to_canonical(&reals)?)?;
        let InputValue::Reals(r) = back else {
            panic!("decoded {back:?}")
        };
        assert_eq!(r[0].0.to_bits(), (-0.0f64).to_bits());
        assert_eq!(r[1].0.to_bits(), f64::NAN.to_bits());
        // A byte string that is not whole numbers is refused, not truncated.
        assert!(from_canonical::<InputValue>(&[3, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert_eq!(serde_json::to_string(&ints)?, r#"{"ints":[-1,2]}"#);
        Ok(())
    }

    #[test]
    fn a_changed_input_breaks_the_signature() -> Result<(), Box<dyn std::error::Error>> {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let signed = request().sign(&key)?;
        signed.verify(&key.verifying_key())?;
        let mut forged = signed.clone();
        forged.request.inputs[0][0].value = InputValue::Reals(vec![Real(1.5), Real(-0.2)]);
        assert_eq!(
            forged.verify(&key.verifying_key()),
            Err(Error::Signature("request"))
        );
        assert_ne!(forged.hash()?, signed.hash()?);
        Ok(())
    }

    #[test]
    fn the_signature_and_the_hash_cover_the_body_digest() -> Result<(), Box<dyn std::error::Error>>
    {
        let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(2));
        let public = key.verifying_key();
        let signed = request().sign(&key)?;
        let digested = signed.digested()?;
        digested.verify(&public)?;
        assert_eq!(digested.hash(), signed.hash()?);
        // The hash names the body, not the signature: the same body signed again (another
        // nonce, another valid signature) is the same request, which replay checks refuse.
        let again = request().sign(&key)?;
        again.verify(&public)?;
        assert_ne!(again.signature, signed.signature);
        assert_eq!(again.hash()?, signed.hash()?);
        // The body's digest signed under another domain is not a request's signature.
        let body = signed.request.digest()?;
        let misused = SignedRequest {
            request: signed.request.clone(),
            signature: key.sign(RECEIPT, &body)?,
        };
        assert_eq!(misused.verify(&public), Err(Error::Signature("request")));
        Ok(())
    }
}
