//! The online protocols as state machines (Catrina and de Hoogh, SCN 2010, §3–§4; Beaver,
//! CRYPTO 1991 for multiplication).
//!
//! Each machine is advanced with the values the king opened for it in the previous round
//! (`None` on the first call) and answers with the shares to open next, or its result.
//!
//! - **Mul** (Beaver): open ε = x − a, δ = y − b; z = c + ε·b + δ·a + ε·δ.
//! - **TruncPr(k, m)** (C–dH Protocol 3.1): with m pooled bits r_i, r' = Σ 2^i r_i and a
//!   bounded PRSS integer r'' of k + κ − m bits, open c = 2^(k−1) + x + 2^m r'' + r'; then
//!   d = (x − (c mod 2^m) + r') · 2^(−m) = ⌊x / 2^m⌋ + u, u ∈ {0, 1}, with
//!   P(u = 1) = (x mod 2^m) / 2^m.
//! - **Mod2m(k, m)** (C–dH Protocol 3.2): open c as for TruncPr, c' = c mod 2^m; then
//!   x mod 2^m = c' − r' + 2^m·[c' < r'], the comparison by BitLT below.
//! - **BitLT** (public c', shared bits r): leaves (eq_i, lt_i) = (1 − (c'_i ⊕ r_i),
//!   (1 − c'_i)·r_i) are local; adjacent chunks merge as lt = lt_hi + eq_hi·lt_lo,
//!   eq = eq_hi·eq_lo, one round per tree level; the lowest chunk's eq is never needed.
//! - **LTZ(k)** (C–dH §4): [x < 0] = (Mod2m(x, k, k − 1) − x) · 2^(−(k−1)).
//! - **EQZ(k)**: open c = 2^k + x + 2^k r'' + r' with k pooled bits; x = 0 iff every bit of
//!   c mod 2^k equals r's, so [x = 0] = Π_i (1 − (c'_i ⊕ r_i)), a product tree.
//!
//! The opened c are statistically hidden: r'' spans κ = 40 bits more than x.

use qvm_core::Fp;

use super::{Op, Resources, mask_bits};
use crate::Result;
use crate::pool::Triple;

/// What a machine wants next.
pub(crate) enum Next {
    /// Open these shares.
    Open(Vec<Fp>),
    /// Finished with these result shares.
    Done(Vec<Fp>),
}

/// An online protocol in progress.
pub(crate) trait Protocol: Send {
    /// Advances with the values opened for it last round (`None` on the first call).
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next>;
}

/// Builds the machine for an op.
pub(crate) fn machine(op: Op) -> Box<dyn Protocol> {
    if op.is_empty() {
        return Box::new(Ready(Some(Vec::new())));
    }
    match op {
        Op::Mul { x, y } => Box::new(MulP::new(x.into_vec(), y.into_vec(), None)),
        Op::Select { c, x, y } => {
            let (x, y) = (x.into_vec(), y.into_vec());
            let diff = x.iter().zip(&y).map(|(a, b)| *a - *b).collect();
            Box::new(MulP::new(c.into_vec(), diff, Some(y)))
        }
        Op::TruncPr { x, k, m } => Box::new(TruncP {
            x: x.into_vec(),
            k,
            m,
            r_prime: Vec::new(),
        }),
        Op::Mod2m { x, k, m } => Box::new(Mod2mP::new(x.into_vec(), k, m)),
        Op::Ltz { x, k } => Box::new(LtzP {
            inner: Mod2mP::new(x.into_vec(), k, k - 1),
        }),
        Op::Eqz { x, k } => Box::new(EqzP::new(x.into_vec(), k)),
        Op::RandomBits { len } => Box::new(BitsP(len)),
    }
}

/// 2^e as a field element.
fn pow2(e: u32) -> Fp {
    Fp::from_u128_reduced(1u128 << e)
}

/// 2^(−e) as a field element.
fn inv_pow2(e: u32) -> Result<Fp> {
    Ok(pow2(e).inverse()?)
}

/// ⌈log2 m⌉: the levels of a tree that merges m leaves pairwise.
pub fn tree_rounds(m: u32) -> u32 {
    m.max(1).next_power_of_two().trailing_zeros()
}

/// Multiplications of the BitLT tree on m bits: per level, two per merged pair except the
/// pair holding the lowest chunk, which needs only its lt.
pub fn bitlt_mults(m: u32) -> u64 {
    let (mut nodes, mut mults) = (m as u64, 0);
    while nodes > 1 {
        let pairs = nodes / 2;
        mults += 2 * pairs - 1;
        nodes -= pairs;
    }
    mults
}

/// A result known without interaction.
struct Ready(Option<Vec<Fp>>);

impl Protocol for Ready {
    fn advance(&mut self, _: Option<&[Fp]>, _: &mut Resources) -> Result<Next> {
        Ok(Next::Done(self.0.take().unwrap_or_default()))
    }
}

/// Pooled random bits, handed out.
struct BitsP(usize);

impl Protocol for BitsP {
    fn advance(&mut self, _: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        Ok(Next::Done(res.take_bits(self.0)?))
    }
}

/// One round of Beaver multiplications of x by y.
struct Beaver {
    triples: Vec<Triple>,
}

impl Beaver {
    /// Takes the triples and returns the shares of ε = x − a followed by δ = y − b.
    fn open(x: &[Fp], y: &[Fp], res: &mut Resources) -> Result<(Beaver, Vec<Fp>)> {
        let triples = res.take_triples(x.len())?;
        let mut out = Vec::with_capacity(2 * x.len());
        out.extend(x.iter().zip(&triples).map(|(x, t)| *x - t.a));
        out.extend(y.iter().zip(&triples).map(|(y, t)| *y - t.b));
        Ok((Beaver { triples }, out))
    }

    /// z = c + ε·b + δ·a + ε·δ from the opened ε ‖ δ.
    fn finish(self, opened: &[Fp]) -> Vec<Fp> {
        let n = self.triples.len();
        let (eps, delta) = opened.split_at(n);
        self.triples
            .iter()
            .zip(eps.iter().zip(delta))
            .map(|(t, (e, d))| t.c + *e * t.b + *d * t.a + *e * *d)
            .collect()
    }
}

/// x·y (+ post for select).
struct MulP {
    x: Vec<Fp>,
    y: Vec<Fp>,
    post: Option<Vec<Fp>>,
    beaver: Option<Beaver>,
}

impl MulP {
    fn new(x: Vec<Fp>, y: Vec<Fp>, post: Option<Vec<Fp>>) -> MulP {
        MulP {
            x,
            y,
            post,
            beaver: None,
        }
    }
}

impl Protocol for MulP {
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        match (opened, self.beaver.take()) {
            (Some(v), Some(b)) => {
                let mut z = b.finish(v);
                if let Some(post) = &self.post {
                    z.iter_mut().zip(post).for_each(|(z, p)| *z += *p);
                }
                Ok(Next::Done(z))
            }
            _ => {
                let (b, out) = Beaver::open(&self.x, &self.y, res)?;
                self.beaver = Some(b);
                Ok(Next::Open(out))
            }
        }
    }
}

/// A mask for reducing m of k bits: the bits r_i (element-major) and r' = Σ 2^i r_i.
struct Mask {
    bits: Vec<Fp>,
    r_prime: Vec<Fp>,
}

/// Shares of c = offset + x + 2^m r'' + r' (to open), with the mask kept.
fn open_masked(
    x: &[Fp],
    k: u32,
    m: u32,
    offset: Fp,
    res: &mut Resources,
) -> Result<(Mask, Vec<Fp>)> {
    let bits = res.take_bits(x.len() * m as usize)?;
    let r2 = res.bounded(x.len(), mask_bits(k, m))?;
    let scale = pow2(m);
    let r_prime: Vec<Fp> = bits
        .chunks(m as usize)
        .map(|chunk| chunk.iter().rev().fold(Fp::ZERO, |acc, b| acc + acc + *b))
        .collect();
    let c = x
        .iter()
        .zip(&r_prime)
        .zip(&r2)
        .map(|((x, r1), r2)| offset + *x + scale * *r2 + *r1)
        .collect();
    Ok((Mask { bits, r_prime }, c))
}

/// The low m bits of an opened c (its canonical integer value).
fn low_bits(c: Fp, m: u32) -> u128 {
    c.to_u128() & ((1u128 << m) - 1)
}

struct TruncP {
    x: Vec<Fp>,
    k: u32,
    m: u32,
    r_prime: Vec<Fp>,
}

impl Protocol for TruncP {
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        let Some(c) = opened else {
            let (mask, c) = open_masked(&self.x, self.k, self.m, pow2(self.k - 1), res)?;
            self.r_prime = mask.r_prime.clone();
            return Ok(Next::Open(c));
        };
        let inv = inv_pow2(self.m)?;
        Ok(Next::Done(
            self.x
                .iter()
                .zip(&self.r_prime)
                .zip(c)
                .map(|((x, r1), c)| (*x - Fp::from_u128_reduced(low_bits(*c, self.m)) + *r1) * inv)
                .collect(),
        ))
    }
}

/// The BitLT merge tree over `len` elements: nodes from the lowest chunk up, each with eq
/// and lt share vectors.
struct BitLtTree {
    eq: Vec<Vec<Fp>>,
    lt: Vec<Vec<Fp>>,
    beaver: Option<Beaver>,
}

impl BitLtTree {
    /// Leaves for public c' (per element) and shared bits r (element-major, m per element).
    fn new(c: &[u128], bits: &[Fp], m: u32) -> BitLtTree {
        let m = m as usize;
        let (mut eq, mut lt) = (Vec::with_capacity(m), Vec::with_capacity(m));
        for i in 0..m {
            let (mut eq_i, mut lt_i) = (Vec::with_capacity(c.len()), Vec::with_capacity(c.len()));
            for (e, ce) in c.iter().enumerate() {
                let r = bits[e * m + i];
                if (ce >> i) & 1 == 1 {
                    eq_i.push(r);
                    lt_i.push(Fp::ZERO);
                } else {
                    eq_i.push(Fp::ONE - r);
                    lt_i.push(r);
                }
            }
            eq.push(eq_i);
            lt.push(lt_i);
        }
        BitLtTree {
            eq,
            lt,
            beaver: None,
        }
    }

    /// Merges pairs with the products from the last round, then opens the next level.
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        if let (Some(v), Some(b)) = (opened, self.beaver.take()) {
            self.merge(&b.finish(v));
        }
        if self.lt.len() == 1 {
            return Ok(Next::Done(core::mem::take(&mut self.lt[0])));
        }
        // Level sizes are known: one allocation each (comparisons of small vectors spent
        // most of their time growing these).
        let pairs = self.lt.len() / 2;
        let cap = (2 * pairs).saturating_sub(1) * self.lt[0].len();
        let (mut xs, mut ys) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        for j in 0..pairs {
            let (lo, hi) = (2 * j, 2 * j + 1);
            xs.extend_from_slice(&self.eq[hi]);
            ys.extend_from_slice(&self.lt[lo]);
            if j > 0 {
                xs.extend_from_slice(&self.eq[hi]);
                ys.extend_from_slice(&self.eq[lo]);
            }
        }
        let (b, out) = Beaver::open(&xs, &ys, res)?;
        self.beaver = Some(b);
        Ok(Next::Open(out))
    }

    fn merge(&mut self, products: &[Fp]) {
        let len = self.lt[0].len();
        let mut chunks = products.chunks(len);
        let pairs = self.lt.len() / 2;
        let (mut eq, mut lt) = (Vec::with_capacity(pairs + 1), Vec::with_capacity(pairs + 1));
        for j in 0..pairs {
            let hi = 2 * j + 1;
            let lt_prod = chunks.next().unwrap_or_default();
            let mut merged = core::mem::take(&mut self.lt[hi]);
            merged.iter_mut().zip(lt_prod).for_each(|(a, b)| *a += *b);
            lt.push(merged);
            eq.push(if j > 0 {
                chunks.next().unwrap_or_default().to_vec()
            } else {
                Vec::new()
            });
        }
        if self.lt.len() % 2 == 1 {
            lt.push(core::mem::take(&mut self.lt[2 * pairs]));
            eq.push(core::mem::take(&mut self.eq[2 * pairs]));
        }
        self.eq = eq;
        self.lt = lt;
    }
}

struct Mod2mP {
    x: Vec<Fp>,
    k: u32,
    m: u32,
    mask: Option<Mask>,
    c_low: Vec<u128>,
    tree: Option<BitLtTree>,
}

impl Mod2mP {
    fn new(x: Vec<Fp>, k: u32, m: u32) -> Mod2mP {
        Mod2mP {
            x,
            k,
            m,
            mask: None,
            c_low: Vec::new(),
            tree: None,
        }
    }

    fn finish(&self, u: &[Fp]) -> Vec<Fp> {
        let scale = pow2(self.m);
        let r_prime = self
            .mask
            .as_ref()
            .map(|m| m.r_prime.as_slice())
            .unwrap_or_default();
        self.c_low
            .iter()
            .zip(r_prime)
            .zip(u)
            .map(|((c, r1), u)| Fp::from_u128_reduced(*c) - *r1 + scale * *u)
            .collect()
    }
}

impl Protocol for Mod2mP {
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        let step = if let Some(tree) = &mut self.tree {
            tree.advance(opened, res)?
        } else if let (Some(c), Some(mask)) = (opened, &self.mask) {
            self.c_low = c.iter().map(|c| low_bits(*c, self.m)).collect();
            let mut tree = BitLtTree::new(&self.c_low, &mask.bits, self.m);
            let step = tree.advance(None, res)?;
            self.tree = Some(tree);
            step
        } else {
            let (mask, c) = open_masked(&self.x, self.k, self.m, pow2(self.k - 1), res)?;
            self.mask = Some(mask);
            return Ok(Next::Open(c));
        };
        Ok(match step {
            Next::Done(u) => Next::Done(self.finish(&u)),
            open => open,
        })
    }
}

struct LtzP {
    inner: Mod2mP,
}

impl Protocol for LtzP {
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        Ok(match self.inner.advance(opened, res)? {
            Next::Done(low) => {
                let inv = inv_pow2(self.inner.k - 1)?;
                Next::Done(
                    low.iter()
                        .zip(&self.inner.x)
                        .map(|(l, x)| (*l - *x) * inv)
                        .collect(),
                )
            }
            open => open,
        })
    }
}

/// Pairwise products up to a single vector, one round per level.
struct ProductTree {
    nodes: Vec<Vec<Fp>>,
    beaver: Option<Beaver>,
}

impl ProductTree {
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        if let (Some(v), Some(b)) = (opened, self.beaver.take()) {
            let products = b.finish(v);
            let len = self.nodes[0].len();
            let mut next: Vec<Vec<Fp>> = products.chunks(len).map(<[Fp]>::to_vec).collect();
            if self.nodes.len() % 2 == 1 {
                next.extend(self.nodes.pop());
            }
            self.nodes = next;
        }
        if self.nodes.len() == 1 {
            return Ok(Next::Done(core::mem::take(&mut self.nodes[0])));
        }
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for pair in self.nodes.chunks_exact(2) {
            xs.extend_from_slice(&pair[0]);
            ys.extend_from_slice(&pair[1]);
        }
        let (b, out) = Beaver::open(&xs, &ys, res)?;
        self.beaver = Some(b);
        Ok(Next::Open(out))
    }
}

struct EqzP {
    x: Vec<Fp>,
    k: u32,
    mask: Option<Mask>,
    tree: Option<ProductTree>,
}

impl EqzP {
    fn new(x: Vec<Fp>, k: u32) -> EqzP {
        EqzP {
            x,
            k,
            mask: None,
            tree: None,
        }
    }

    /// Leaves 1 − (c'_i ⊕ r_i), node-major.
    fn leaves(&self, c: &[Fp], bits: &[Fp]) -> Vec<Vec<Fp>> {
        let k = self.k as usize;
        (0..k)
            .map(|i| {
                c.iter()
                    .enumerate()
                    .map(|(e, c)| {
                        let r = bits[e * k + i];
                        if (low_bits(*c, self.k) >> i) & 1 == 1 {
                            r
                        } else {
                            Fp::ONE - r
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

impl Protocol for EqzP {
    fn advance(&mut self, opened: Option<&[Fp]>, res: &mut Resources) -> Result<Next> {
        if let Some(tree) = &mut self.tree {
            return tree.advance(opened, res);
        }
        if let (Some(c), Some(mask)) = (opened, &self.mask) {
            let nodes = self.leaves(c, &mask.bits);
            return self
                .tree
                .insert(ProductTree {
                    nodes,
                    beaver: None,
                })
                .advance(None, res);
        }
        let (mask, c) = open_masked(&self.x, self.k, self.k, pow2(self.k), res)?;
        self.mask = Some(mask);
        Ok(Next::Open(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_counts() {
        assert_eq!(tree_rounds(1), 0);
        assert_eq!(tree_rounds(2), 1);
        assert_eq!(tree_rounds(63), 6);
        assert_eq!(tree_rounds(64), 6);
        assert_eq!(tree_rounds(65), 7);
        assert_eq!(bitlt_mults(1), 0);
        assert_eq!(bitlt_mults(2), 1);
        assert_eq!(bitlt_mults(3), 2);
        assert_eq!(bitlt_mults(63), 118);
    }
}
