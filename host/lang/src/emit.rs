//! Emits a program's IR as a WebAssembly component for the `quorumvm:program` world,
//! directly with `wasm-encoder` (a core module) and `wit-component` (the component
//! wrapper): no toolchain, milliseconds, and the same IR always gives the same bytes.
//!
//! The core module's `run`:
//!
//! 1. decodes each declared input from the canonical-ABI `list<field>` by name, converting
//!    reals to fixed point and checking the declared bounds (a bad input is the program's
//!    `invalid-input` error, never a trap);
//! 2. fetches each secret's handle and checks its length;
//! 3. walks the IR in order: public nodes are computed in the guest as i64 arrays at fixed
//!    addresses (the range analysis proved no overflow), secret nodes are host calls on
//!    handles (local ops as `shared` methods, interactive ops as `mul`/`ltz`/`eqz`/`trunc`/
//!    `select`); a host `share-error` becomes the program's `share` error;
//! 4. returns one fresh handle per output.
//!
//! Memory layout (all static: every length is known when compiling): a return area for
//! host calls at 16, the result at 32, then strings, the output list, public arrays, and a
//! bump heap for `cabi_realloc` (used only by the host, to pass the input).

use std::collections::HashMap;

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, InstructionSink, MemArg,
    MemorySection, MemoryType, Module, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

use crate::ast::Scalar;
use crate::ir::{Ir, NodeId, Op, Param, Vis};

/// The guest ABI, compiled in: a component always embeds exactly this world.
const WIT: &str = include_str!("../../../wit/program.wit");

const SHARES: &str = "quorumvm:program/shares@0.1.0";

/// Why emission failed (the checker's guarantees make this an internal error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot emit the component: {0}")]
pub struct EmitError(pub String);

// Addresses.
const RET: u64 = 16;
const RESULT: u64 = 32;
const STRINGS: u32 = 64;
/// Size of a `field` record in a `list<field>` (string + 8-aligned variant).
const FIELD_SIZE: i32 = 24;

// Function indices: imports first, in this order.
const F_SECRET: u32 = 0;
const F_LEN: u32 = 1;
const F_SLICE: u32 = 2;
const F_CONCAT: u32 = 3;
const F_BROADCAST: u32 = 4;
const F_ADD: u32 = 5;
const F_SUB: u32 = 6;
const F_NEG: u32 = 7;
const F_ADD_PUBLIC: u32 = 8;
const F_MUL_PUBLIC: u32 = 9;
const F_SCALE: u32 = 10;
const F_SUM: u32 = 11;
const F_MUL: u32 = 12;
const F_LTZ: u32 = 13;
const F_EQZ: u32 = 14;
const F_TRUNC: u32 = 15;
const F_SELECT: u32 = 16;
const F_RANDOM: u32 = 17;
const F_DOT_PUBLIC: u32 = 18;
const F_REALLOC: u32 = 19;
const F_MEMEQ: u32 = 20;
const F_FAIL_SHARE: u32 = 21;
const F_FAIL_INPUT: u32 = 22;
const F_RUN: u32 = 23;

/// (name, params, results) of the imports, in index order.
const IMPORTS: [(&str, &[ValType], &[ValType]); 19] = {
    use ValType::{I32, I64};
    [
        ("secret", &[I32, I32, I32], &[]),
        ("[method]shared.len", &[I32], &[I32]),
        ("[method]shared.slice", &[I32, I32, I32, I32], &[]),
        ("[method]shared.concat", &[I32, I32, I32], &[]),
        ("[method]shared.broadcast", &[I32, I32, I32], &[]),
        ("[method]shared.add", &[I32, I32, I32], &[]),
        ("[method]shared.sub", &[I32, I32, I32], &[]),
        ("[method]shared.neg", &[I32], &[I32]),
        ("[method]shared.add-public", &[I32, I32, I32, I32], &[]),
        ("[method]shared.mul-public", &[I32, I32, I32, I32], &[]),
        ("[method]shared.scale", &[I32, I64], &[I32]),
        ("[method]shared.sum", &[I32], &[I32]),
        ("mul", &[I32, I32, I32], &[]),
        ("ltz", &[I32, I32, I32], &[]),
        ("eqz", &[I32, I32, I32], &[]),
        ("trunc", &[I32, I32, I32, I32], &[]),
        ("select", &[I32, I32, I32, I32], &[]),
        ("random", &[I32, I32], &[]),
        ("[method]shared.dot-public", &[I32, I32, I32, I32], &[]),
    ]
};

// Locals of `run` (0 and 1 are the input list's pointer and length).
const L_IN_PTR: u32 = 0;
const L_IN_LEN: u32 = 1;
const L_I: u32 = 2;
const L_J: u32 = 3;
const L_REC: u32 = 4;
const L_FOUND: u32 = 5;
const L_V: u32 = 6;
const L_LP: u32 = 7;
const L_T: u32 = 8;
const L_ACC: u32 = 9; // i64
const L_X: u32 = 10; // f64
const L_HANDLES: u32 = 11; // one i32 per node from here

fn mem(offset: u64, align: u32) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index: 0,
    }
}

/// The static data and where each piece lives.
struct Layout {
    data: Vec<u8>,
    /// Strings by content.
    strings: HashMap<String, (u32, u32)>,
    /// Public arrays by node.
    arrays: HashMap<NodeId, u32>,
    /// Scratch arrays (negated publics) by node.
    scratch: HashMap<NodeId, u32>,
    outputs: u32,
    heap: u32,
}

impl Layout {
    fn string(&mut self, s: &str) -> (u32, u32) {
        if let Some(v) = self.strings.get(s) {
            return *v;
        }
        let at = STRINGS + self.data.len() as u32;
        self.data.extend_from_slice(s.as_bytes());
        self.strings.insert(s.to_string(), (at, s.len() as u32));
        (at, s.len() as u32)
    }

    fn align(&mut self, a: usize) {
        while !(STRINGS as usize + self.data.len()).is_multiple_of(a) {
            self.data.push(0);
        }
    }

    /// Reserves `bytes` (zeroed, or filled with `init`), 8-aligned.
    fn reserve(&mut self, bytes: usize, init: Option<&[u8]>) -> u32 {
        self.align(8);
        let at = STRINGS + self.data.len() as u32;
        match init {
            Some(b) => self.data.extend_from_slice(b),
            None => self.data.resize(self.data.len() + bytes, 0),
        }
        at
    }
}

fn missing_msg(p: &Param) -> String {
    format!("missing input `{}`", p.name)
}

fn bad_msg(p: &Param) -> String {
    format!(
        "input `{}` has the wrong type or length, or is outside its declared bounds",
        p.name
    )
}

fn secret_msg(p: &Param) -> String {
    format!(
        "secret `{}` does not have the declared length {}",
        p.name, p.len
    )
}

fn layout(ir: &Ir) -> Result<Layout, EmitError> {
    let mut l = Layout {
        data: Vec::new(),
        strings: HashMap::new(),
        arrays: HashMap::new(),
        scratch: HashMap::new(),
        outputs: 0,
        heap: 0,
    };
    for p in ir.inputs.iter().chain(&ir.secrets) {
        l.string(&p.name);
    }
    for p in &ir.inputs {
        l.string(&missing_msg(p));
        l.string(&bad_msg(p));
    }
    for p in &ir.secrets {
        l.string(&secret_msg(p));
    }
    for (name, _) in &ir.outputs {
        l.string(name);
    }
    l.align(4);
    l.outputs = l.reserve(12 * ir.outputs.len(), None);
    for (id, node) in ir.nodes.iter().enumerate() {
        if node.vis != Vis::Public {
            // A secret minus a public needs the negated public values.
            if let Op::Sub(_, b) | Op::Select(_, _, b) = node.op
                && ir.nodes[b].vis == Vis::Public
            {
                let at = l.reserve(8 * ir.nodes[b].len as usize, None);
                l.scratch.insert(id, at);
            }
            continue;
        }
        let init: Option<Vec<u8>> = match &node.op {
            Op::Const(values) => Some(
                values
                    .iter()
                    .map(|v| {
                        i64::try_from(*v)
                            .map(i64::to_le_bytes)
                            .map_err(|_| EmitError(format!("constant {v} does not fit 64 bits")))
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .concat(),
            ),
            _ => None,
        };
        let at = l.reserve(8 * node.len as usize, init.as_deref());
        l.arrays.insert(id, at);
    }
    l.align(8);
    l.heap = STRINGS + l.data.len() as u32;
    Ok(l)
}

/// Emits `ir` as a component.
pub fn emit(ir: &Ir) -> Result<Vec<u8>, EmitError> {
    let core = emit_core(ir)?;
    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str("program.wit", WIT)
        .map_err(|e| EmitError(format!("{e:#}")))?;
    let world = resolve
        .select_world(&[pkg], Some("program"))
        .map_err(|e| EmitError(format!("{e:#}")))?;
    let mut module = core;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .map_err(|e| EmitError(format!("{e:#}")))?;
    ComponentEncoder::default()
        .module(&module)
        .map_err(|e| EmitError(format!("{e:#}")))?
        .validate(true)
        .encode()
        .map_err(|e| EmitError(format!("{e:#}")))
}

/// The core module.
pub fn emit_core(ir: &Ir) -> Result<Vec<u8>, EmitError> {
    let l = layout(ir)?;
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    let mut type_index: Vec<(Vec<ValType>, Vec<ValType>)> = Vec::new();
    let mut ty = |params: &[ValType], results: &[ValType], types: &mut TypeSection| -> u32 {
        if let Some(i) = type_index
            .iter()
            .position(|(p, r)| p == params && r == results)
        {
            return i as u32;
        }
        types
            .ty()
            .function(params.iter().copied(), results.iter().copied());
        type_index.push((params.to_vec(), results.to_vec()));
        (type_index.len() - 1) as u32
    };
    for (name, params, results) in IMPORTS {
        let t = ty(params, results, &mut types);
        imports.import(SHARES, name, wasm_encoder::EntityType::Function(t));
    }
    use ValType::I32;
    let defined = [
        ty(&[I32, I32, I32, I32], &[I32], &mut types), // cabi_realloc
        ty(&[I32, I32, I32], &[I32], &mut types),      // memeq
        ty(&[], &[I32], &mut types),                   // fail_share
        ty(&[I32, I32], &[I32], &mut types),           // fail_input
        ty(&[I32, I32], &[I32], &mut types),           // run
    ];
    let mut functions = FunctionSection::new();
    for t in defined {
        functions.function(t);
    }
    let pages = (l.heap as u64).div_ceil(65536).max(1) + 1;
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(l.heap as i32),
    );
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("cabi_realloc", ExportKind::Func, F_REALLOC);
    exports.export("run", ExportKind::Func, F_RUN);
    let mut code = CodeSection::new();
    code.function(&realloc());
    code.function(&memeq());
    code.function(&fail_share());
    code.function(&fail_input());
    code.function(&run(ir, &l)?);
    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::i32_const(STRINGS as i32),
        l.data.iter().copied(),
    );

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&functions)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code)
        .section(&data);
    Ok(module.finish())
}

/// `cabi_realloc(old, old_len, align, new_len)`: a bump allocator that grows memory.
fn realloc() -> Function {
    let mut f = Function::new([(1, ValType::I32)]);
    let p = 4;
    let mut i = f.instructions();
    // p = (heap + align − 1) & −align
    i.global_get(0)
        .local_get(2)
        .i32_add()
        .i32_const(1)
        .i32_sub()
        .i32_const(0)
        .local_get(2)
        .i32_sub()
        .i32_and()
        .local_set(p);
    // heap = p + new_len; grow if past the end
    i.local_get(p).local_get(3).i32_add().global_set(0);
    i.global_get(0)
        .memory_size(0)
        .i32_const(16)
        .i32_shl()
        .i32_gt_u()
        .if_(BlockType::Empty);
    i.global_get(0)
        .memory_size(0)
        .i32_const(16)
        .i32_shl()
        .i32_sub()
        .i32_const(16)
        .i32_shr_u()
        .i32_const(1)
        .i32_add()
        .memory_grow(0);
    i.i32_const(-1)
        .i32_eq()
        .if_(BlockType::Empty)
        .unreachable()
        .end();
    i.end();
    // copy the old contents (reallocation)
    i.local_get(1)
        .if_(BlockType::Empty)
        .local_get(p)
        .local_get(0)
        .local_get(1)
        .memory_copy(0, 0)
        .end();
    i.local_get(p).end();
    f
}

/// `memeq(a, b, n) -> i32`.
fn memeq() -> Function {
    let mut f = Function::new([(1, ValType::I32)]);
    let k = 3;
    let mut i = f.instructions();
    i.i32_const(0).local_set(k);
    i.block(BlockType::Empty).loop_(BlockType::Empty);
    i.local_get(k).local_get(2).i32_ge_u().br_if(1);
    i.local_get(0).local_get(k).i32_add().i32_load8_u(mem(0, 0));
    i.local_get(1).local_get(k).i32_add().i32_load8_u(mem(0, 0));
    i.i32_ne()
        .if_(BlockType::Empty)
        .i32_const(0)
        .return_()
        .end();
    i.local_get(k).i32_const(1).i32_add().local_set(k).br(0);
    i.end().end();
    i.i32_const(1).end();
    f
}

/// Writes the head of `err(program-error)` in the result area: the result's `err` tag
/// and the program-error variant (0 invalid-input, 1 share).
fn error_header(i: &mut InstructionSink<'_>, variant: i32) {
    i.i32_const(RESULT as i32)
        .i32_const(1)
        .i32_store8(mem(0, 0));
    i.i32_const(RESULT as i32)
        .i32_const(variant)
        .i32_store8(mem(4, 0));
}

/// Returns the host's share-error (in the return area) as the program's error.
fn fail_share() -> Function {
    let mut f = Function::new([]);
    let mut i = f.instructions();
    error_header(&mut i, 1);
    i.i32_const(RESULT as i32 + 8)
        .i32_const(RET as i32 + 4)
        .i32_const(12)
        .memory_copy(0, 0);
    i.i32_const(RESULT as i32).end();
    f
}

/// Returns `invalid-input(message)`.
fn fail_input() -> Function {
    let mut f = Function::new([]);
    let mut i = f.instructions();
    error_header(&mut i, 0);
    i.i32_const(RESULT as i32).local_get(0).i32_store(mem(8, 2));
    i.i32_const(RESULT as i32)
        .local_get(1)
        .i32_store(mem(12, 2));
    i.i32_const(RESULT as i32).end();
    f
}

/// Emits `for I in 0..n { body }`.
fn for_each(i: &mut InstructionSink, n: u32, body: impl FnOnce(&mut InstructionSink)) {
    i.i32_const(0).local_set(L_I);
    i.block(BlockType::Empty).loop_(BlockType::Empty);
    i.local_get(L_I).i32_const(n as i32).i32_ge_u().br_if(1);
    body(i);
    i.local_get(L_I).i32_const(1).i32_add().local_set(L_I).br(0);
    i.end().end();
}

/// Pushes I·8 (the byte offset of element I of an i64 array).
fn elem(i: &mut InstructionSink) {
    i.local_get(L_I).i32_const(3).i32_shl();
}

/// After a host call that wrote `result<shared, share-error>` at RET: return the error, or
/// keep the handle in `local`.
fn take_handle(i: &mut InstructionSink, local: u32) {
    i.i32_const(RET as i32)
        .i32_load8_u(mem(0, 0))
        .if_(BlockType::Empty)
        .call(F_FAIL_SHARE)
        .return_()
        .end();
    i.i32_const(RET as i32).i32_load(mem(4, 2)).local_set(local);
}

fn fail_with(i: &mut InstructionSink, msg: (u32, u32)) {
    i.i32_const(msg.0 as i32)
        .i32_const(msg.1 as i32)
        .call(F_FAIL_INPUT)
        .return_();
}

struct Run<'a> {
    ir: &'a Ir,
    l: &'a Layout,
    /// A handle local for each node that has one.
    next_temp: u32,
    /// How many nodes read each node, plus how many outputs name it.
    uses: Vec<u32>,
    /// The products emitted inside their one reader, a sum, as a dot product.
    fused: Vec<bool>,
}

/// How many nodes read each node, plus how many outputs name it.
fn uses(ir: &Ir) -> Vec<u32> {
    let mut uses = vec![0u32; ir.nodes.len()];
    for node in &ir.nodes {
        for d in node.op.deps() {
            uses[d] += 1;
        }
    }
    for (_, id) in &ir.outputs {
        uses[*id] += 1;
    }
    uses
}

impl Run<'_> {
    fn handle(&self, id: NodeId) -> u32 {
        L_HANDLES + id as u32
    }

    fn temp(&mut self) -> u32 {
        let t = self.next_temp;
        self.next_temp += 1;
        t
    }

    fn arr(&self, id: NodeId) -> Result<u64, EmitError> {
        self.l
            .arrays
            .get(&id)
            .map(|a| *a as u64)
            .ok_or_else(|| EmitError(format!("node {id} has no array")))
    }

    /// A handle holding public node `id`'s values: zero (random·0, broadcast) plus them.
    fn lift(&mut self, i: &mut InstructionSink, id: NodeId) -> Result<u32, EmitError> {
        let len = self.ir.nodes[id].len;
        let t = self.temp();
        i.i32_const(1).i32_const(RET as i32).call(F_RANDOM);
        take_handle(i, t);
        i.local_get(t).i64_const(0).call(F_SCALE).local_set(t);
        if len != 1 {
            i.local_get(t)
                .i32_const(len as i32)
                .i32_const(RET as i32)
                .call(F_BROADCAST);
            take_handle(i, t);
        }
        i.local_get(t)
            .i32_const(self.arr(id)? as i32)
            .i32_const(len as i32)
            .i32_const(RET as i32)
            .call(F_ADD_PUBLIC);
        take_handle(i, t);
        Ok(t)
    }

    /// The handle of a node, lifting a public one.
    fn secret_handle(&mut self, i: &mut InstructionSink, id: NodeId) -> Result<u32, EmitError> {
        if self.ir.nodes[id].vis == Vis::Secret {
            Ok(self.handle(id))
        } else {
            self.lift(i, id)
        }
    }

    fn is_public(&self, id: NodeId) -> bool {
        self.ir.nodes[id].vis == Vis::Public
    }

    /// The (secret, public) operands of a secret-by-public product read only by one sum
    /// (as `dot` compiles): the sum is emitted as one `dot-public` call and the product
    /// not at all, which saves a host call and a vector of shares per evaluation.
    fn dot_operands(&self, product: NodeId) -> Option<(NodeId, NodeId)> {
        let node = &self.ir.nodes[product];
        let Op::Mul(a, b) = node.op else {
            return None;
        };
        if node.vis != Vis::Secret || self.uses[product] != 1 {
            return None;
        }
        match (self.is_public(a), self.is_public(b)) {
            (false, true) => Some((a, b)),
            (true, false) => Some((b, a)),
            _ => None,
        }
    }

    /// Marks the products that their sums compute as dot products.
    fn fuse(&mut self) {
        let mut fused = vec![false; self.ir.nodes.len()];
        for node in &self.ir.nodes {
            if let Op::Sum(a) = node.op
                && self.dot_operands(a).is_some()
            {
                fused[a] = true;
            }
        }
        self.fused = fused;
    }

    /// Fills the scratch array of `node` with −(public node b).
    fn negate_into_scratch(
        &self,
        i: &mut InstructionSink,
        node: NodeId,
        b: NodeId,
    ) -> Result<u32, EmitError> {
        let at = *self
            .l
            .scratch
            .get(&node)
            .ok_or_else(|| EmitError("missing scratch array".into()))?;
        let src = self.arr(b)?;
        for_each(i, self.ir.nodes[b].len, |i| {
            elem(i);
            i.i64_const(0);
            elem(i);
            i.i64_load(mem(src, 3))
                .i64_sub()
                .i64_store(mem(at as u64, 3));
        });
        Ok(at)
    }

    /// h = h + public b, or h + (−b) when `negate`.
    fn add_public(
        &self,
        i: &mut InstructionSink,
        node: NodeId,
        h: u32,
        b: NodeId,
        negate: bool,
        out: u32,
    ) -> Result<(), EmitError> {
        let at = if negate {
            self.negate_into_scratch(i, node, b)?
        } else {
            self.arr(b)? as u32
        };
        i.local_get(h)
            .i32_const(at as i32)
            .i32_const(self.ir.nodes[b].len as i32)
            .i32_const(RET as i32)
            .call(F_ADD_PUBLIC);
        take_handle(i, out);
        Ok(())
    }

    fn public_node(&self, i: &mut InstructionSink, id: NodeId) -> Result<(), EmitError> {
        let node = &self.ir.nodes[id];
        let dst = self.arr(id)?;
        let bin = |i: &mut InstructionSink,
                   a: NodeId,
                   b: NodeId,
                   op: &dyn Fn(&mut InstructionSink)|
         -> Result<(), EmitError> {
            let (pa, pb) = (self.arr(a)?, self.arr(b)?);
            for_each(i, node.len, |i| {
                elem(i);
                elem(i);
                i.i64_load(mem(pa, 3));
                elem(i);
                i.i64_load(mem(pb, 3));
                op(i);
                i.i64_store(mem(dst, 3));
            });
            Ok(())
        };
        let un = |i: &mut InstructionSink,
                  a: NodeId,
                  op: &dyn Fn(&mut InstructionSink)|
         -> Result<(), EmitError> {
            let pa = self.arr(a)?;
            for_each(i, node.len, |i| {
                elem(i);
                elem(i);
                i.i64_load(mem(pa, 3));
                op(i);
                i.i64_store(mem(dst, 3));
            });
            Ok(())
        };
        match &node.op {
            Op::Input(_) | Op::Const(_) => {}
            Op::Add(a, b) => bin(i, *a, *b, &|i| {
                i.i64_add();
            })?,
            Op::Sub(a, b) => bin(i, *a, *b, &|i| {
                i.i64_sub();
            })?,
            Op::Mul(a, b) => bin(i, *a, *b, &|i| {
                i.i64_mul();
            })?,
            Op::Neg(a) => un(i, *a, &|i| {
                i.local_set(L_ACC).i64_const(0).local_get(L_ACC).i64_sub();
            })?,
            Op::MulConst(a, c) => {
                let c = i64::try_from(*c)
                    .map_err(|_| EmitError("constant does not fit 64 bits".into()))?;
                un(i, *a, &|i| {
                    i.i64_const(c).i64_mul();
                })?
            }
            Op::Trunc(a, m) => un(i, *a, &|i| {
                i.i64_const(*m as i64).i64_shr_s();
            })?,
            Op::Ltz(a, _) => un(i, *a, &|i| {
                i.i64_const(0).i64_lt_s().i64_extend_i32_u();
            })?,
            Op::Eqz(a, _) => un(i, *a, &|i| {
                i.i64_eqz().i64_extend_i32_u();
            })?,
            Op::Select(c, a, b) => {
                let (pc, pa, pb) = (self.arr(*c)?, self.arr(*a)?, self.arr(*b)?);
                for_each(i, node.len, |i| {
                    elem(i);
                    elem(i);
                    i.i64_load(mem(pc, 3));
                    elem(i);
                    i.i64_load(mem(pa, 3));
                    elem(i);
                    i.i64_load(mem(pb, 3));
                    i.i64_sub().i64_mul();
                    elem(i);
                    i.i64_load(mem(pb, 3)).i64_add().i64_store(mem(dst, 3));
                });
            }
            Op::Sum(a) => {
                let pa = self.arr(*a)?;
                i.i64_const(0).local_set(L_ACC);
                for_each(i, self.ir.nodes[*a].len, |i| {
                    elem(i);
                    i.i64_load(mem(pa, 3))
                        .local_get(L_ACC)
                        .i64_add()
                        .local_set(L_ACC);
                });
                i.i32_const(0).local_get(L_ACC).i64_store(mem(dst, 3));
            }
            Op::Slice(a, s, e) => {
                i.i32_const(dst as i32)
                    .i32_const((self.arr(*a)? + 8 * *s as u64) as i32)
                    .i32_const(8 * (e - s) as i32)
                    .memory_copy(0, 0);
            }
            Op::Concat(parts) => {
                let mut off = dst;
                for p in parts {
                    let bytes = 8 * self.ir.nodes[*p].len as u64;
                    i.i32_const(off as i32)
                        .i32_const(self.arr(*p)? as i32)
                        .i32_const(bytes as i32)
                        .memory_copy(0, 0);
                    off += bytes;
                }
            }
            Op::Broadcast(a, n) => {
                let pa = self.arr(*a)?;
                for_each(i, *n, |i| {
                    elem(i);
                    i.i32_const(0).i64_load(mem(pa, 3)).i64_store(mem(dst, 3));
                });
            }
            Op::Secret(_) => return Err(EmitError("a secret node marked public".into())),
        }
        Ok(())
    }

    fn secret_node(&mut self, i: &mut InstructionSink, id: NodeId) -> Result<(), EmitError> {
        let node = self.ir.nodes[id].clone();
        let out = self.handle(id);
        let ret = RET as i32;
        match &node.op {
            Op::Secret(name) => {
                let p = self
                    .ir
                    .secrets
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| EmitError("unknown secret".into()))?;
                let (at, len) = self.l.strings[name];
                i.i32_const(at as i32)
                    .i32_const(len as i32)
                    .i32_const(ret)
                    .call(F_SECRET);
                take_handle(i, out);
                let msg = self.l.strings[&secret_msg(p)];
                i.local_get(out)
                    .call(F_LEN)
                    .i32_const(p.len as i32)
                    .i32_ne()
                    .if_(BlockType::Empty);
                fail_with(i, msg);
                i.end();
            }
            Op::Add(a, b) | Op::Sub(a, b) => {
                let sub = matches!(node.op, Op::Sub(..));
                match (self.is_public(*a), self.is_public(*b)) {
                    (false, false) => {
                        i.local_get(self.handle(*a))
                            .local_get(self.handle(*b))
                            .i32_const(ret)
                            .call(if sub { F_SUB } else { F_ADD });
                        take_handle(i, out);
                    }
                    (false, true) => self.add_public(i, id, self.handle(*a), *b, sub, out)?,
                    (true, false) => {
                        let h = if sub {
                            let t = self.temp();
                            i.local_get(self.handle(*b)).call(F_NEG).local_set(t);
                            t
                        } else {
                            self.handle(*b)
                        };
                        self.add_public(i, id, h, *a, false, out)?;
                    }
                    (true, true) => {
                        return Err(EmitError("public operands in a secret node".into()));
                    }
                }
            }
            Op::Neg(a) => {
                i.local_get(self.handle(*a)).call(F_NEG).local_set(out);
            }
            Op::MulConst(a, c) => {
                let c = i64::try_from(*c)
                    .map_err(|_| EmitError("constant does not fit 64 bits".into()))?;
                i.local_get(self.handle(*a))
                    .i64_const(c)
                    .call(F_SCALE)
                    .local_set(out);
            }
            Op::Mul(a, b) => match (self.is_public(*a), self.is_public(*b)) {
                (false, false) => {
                    i.local_get(self.handle(*a))
                        .local_get(self.handle(*b))
                        .i32_const(ret)
                        .call(F_MUL);
                    take_handle(i, out);
                }
                (pa, _) => {
                    let (s, p) = if pa { (*b, *a) } else { (*a, *b) };
                    i.local_get(self.handle(s))
                        .i32_const(self.arr(p)? as i32)
                        .i32_const(node.len as i32)
                        .i32_const(ret)
                        .call(F_MUL_PUBLIC);
                    take_handle(i, out);
                }
            },
            Op::Trunc(a, m) => {
                let k = self.ir.nodes[*a].range.bits().max(*m + 1);
                i.local_get(self.handle(*a))
                    .i32_const(k as i32)
                    .i32_const(*m as i32)
                    .i32_const(ret)
                    .call(F_TRUNC);
                take_handle(i, out);
            }
            Op::Ltz(a, k) | Op::Eqz(a, k) => {
                let f = if matches!(node.op, Op::Ltz(..)) {
                    F_LTZ
                } else {
                    F_EQZ
                };
                i.local_get(self.handle(*a))
                    .i32_const(*k as i32)
                    .i32_const(ret)
                    .call(f);
                take_handle(i, out);
            }
            Op::Select(c, a, b) => self.select(i, id, *c, *a, *b)?,
            Op::Sum(a) => match self.dot_operands(*a) {
                Some((x, c)) => {
                    i.local_get(self.handle(x))
                        .i32_const(self.arr(c)? as i32)
                        .i32_const(self.ir.nodes[*a].len as i32)
                        .i32_const(ret)
                        .call(F_DOT_PUBLIC);
                    take_handle(i, out);
                }
                None => {
                    i.local_get(self.handle(*a)).call(F_SUM).local_set(out);
                }
            },
            Op::Slice(a, s, e) => {
                i.local_get(self.handle(*a))
                    .i32_const(*s as i32)
                    .i32_const(*e as i32)
                    .i32_const(ret)
                    .call(F_SLICE);
                take_handle(i, out);
            }
            Op::Broadcast(a, n) => {
                i.local_get(self.handle(*a))
                    .i32_const(*n as i32)
                    .i32_const(ret)
                    .call(F_BROADCAST);
                take_handle(i, out);
            }
            Op::Concat(parts) => {
                let first = self.secret_handle(i, parts[0])?;
                i.local_get(first).local_set(out);
                for p in &parts[1..] {
                    let h = self.secret_handle(i, *p)?;
                    i.local_get(out).local_get(h).i32_const(ret).call(F_CONCAT);
                    take_handle(i, out);
                }
            }
            Op::Input(_) | Op::Const(_) => {
                return Err(EmitError("a public node marked secret".into()));
            }
        }
        Ok(())
    }

    /// Emits one layer's interactive ops: ops of one kind (and, for truncation, one shift)
    /// run as a single host call on the concatenation of their operands, then the result is
    /// sliced back, so the layer costs the rounds of its slowest kind, not their sum.
    fn batch(
        &mut self,
        i: &mut InstructionSink,
        batch: &crate::cost::Batch,
    ) -> Result<(), EmitError> {
        if batch.members.len() == 1 {
            return self.secret_node(i, batch.members[0]);
        }
        self.batch_group(i, batch)
    }

    /// The concatenation of the given nodes' handles, public ones lifted to trivial
    /// sharings (a select's public branch), each distinct one once (a ReLU layer's sixteen
    /// selects share one constant 0).
    fn concat_handles(
        &mut self,
        i: &mut InstructionSink,
        ids: &[NodeId],
    ) -> Result<u32, EmitError> {
        let mut lifted: Vec<(NodeId, u32)> = Vec::new();
        let mut handle = |r: &mut Self, i: &mut InstructionSink, id: NodeId| {
            if let Some((_, h)) = lifted.iter().find(|(n, _)| *n == id) {
                return Ok(*h);
            }
            let h = r.secret_handle(i, id)?;
            if r.is_public(id) {
                lifted.push((id, h));
            }
            Ok::<u32, EmitError>(h)
        };
        let out = self.temp();
        let first = handle(self, i, ids[0])?;
        i.local_get(first).local_set(out);
        for id in &ids[1..] {
            let h = handle(self, i, *id)?;
            i.local_get(out)
                .local_get(h)
                .i32_const(RET as i32)
                .call(F_CONCAT);
            take_handle(i, out);
        }
        Ok(out)
    }

    fn batch_group(
        &mut self,
        i: &mut InstructionSink,
        batch: &crate::cost::Batch,
    ) -> Result<(), EmitError> {
        let ret = RET as i32;
        let members = &batch.members[..];
        let k = crate::cost::batch_bits(self.ir, batch);
        let operands = |r: &Self, pos: usize| -> Vec<NodeId> {
            members
                .iter()
                .map(|id| match &r.ir.nodes[*id].op {
                    Op::Mul(a, b) => [*a, *b, 0][pos],
                    Op::Select(c, a, b) => [*c, *a, *b][pos],
                    Op::Ltz(a, _) | Op::Eqz(a, _) | Op::Trunc(a, _) => *a,
                    _ => *id,
                })
                .collect()
        };
        let result = self.temp();
        match &self.ir.nodes[members[0]].op {
            Op::Mul(..) => {
                let (x, y) = (operands(self, 0), operands(self, 1));
                let (hx, hy) = (self.concat_handles(i, &x)?, self.concat_handles(i, &y)?);
                i.local_get(hx).local_get(hy).i32_const(ret).call(F_MUL);
            }
            Op::Select(..) => {
                let (c, a, b) = (operands(self, 0), operands(self, 1), operands(self, 2));
                let (hc, ha, hb) = (
                    self.concat_handles(i, &c)?,
                    self.concat_handles(i, &a)?,
                    self.concat_handles(i, &b)?,
                );
                i.local_get(hc)
                    .local_get(ha)
                    .local_get(hb)
                    .i32_const(ret)
                    .call(F_SELECT);
            }
            Op::Ltz(..) | Op::Eqz(..) => {
                let f = if matches!(self.ir.nodes[members[0]].op, Op::Ltz(..)) {
                    F_LTZ
                } else {
                    F_EQZ
                };
                let h = self.concat_handles(i, &operands(self, 0))?;
                i.local_get(h).i32_const(k as i32).i32_const(ret).call(f);
            }
            Op::Trunc(_, m) => {
                let m = *m;
                let h = self.concat_handles(i, &operands(self, 0))?;
                i.local_get(h)
                    .i32_const(k as i32)
                    .i32_const(m as i32)
                    .i32_const(ret)
                    .call(F_TRUNC);
            }
            _ => return Err(EmitError("not a batchable op".into())),
        }
        take_handle(i, result);
        let mut offset = 0u32;
        for id in members {
            let len = self.ir.nodes[*id].len;
            i.local_get(result)
                .i32_const(offset as i32)
                .i32_const((offset + len) as i32)
                .i32_const(ret)
                .call(F_SLICE);
            take_handle(i, self.handle(*id));
            offset += len;
        }
        Ok(())
    }

    /// c·(a − b) + b, choosing local or interactive forms by who is secret.
    fn select(
        &mut self,
        i: &mut InstructionSink,
        id: NodeId,
        c: NodeId,
        a: NodeId,
        b: NodeId,
    ) -> Result<(), EmitError> {
        let ret = RET as i32;
        let out = self.handle(id);
        let len = self.ir.nodes[id].len as i32;
        if !self.is_public(c) && !self.is_public(a) && !self.is_public(b) {
            i.local_get(self.handle(c))
                .local_get(self.handle(a))
                .local_get(self.handle(b))
                .i32_const(ret)
                .call(F_SELECT);
            take_handle(i, out);
            return Ok(());
        }
        // d = a − b, public (in scratch) or secret (a handle).
        let d = self.temp();
        let d_public = self.is_public(a) && self.is_public(b);
        let scratch = if d_public {
            let at = *self
                .l
                .scratch
                .get(&id)
                .ok_or_else(|| EmitError("missing scratch".into()))?;
            let (pa, pb) = (self.arr(a)?, self.arr(b)?);
            for_each(i, len as u32, |i| {
                elem(i);
                elem(i);
                i.i64_load(mem(pa, 3));
                elem(i);
                i.i64_load(mem(pb, 3));
                i.i64_sub().i64_store(mem(at as u64, 3));
            });
            at
        } else {
            match (self.is_public(a), self.is_public(b)) {
                (false, false) => {
                    i.local_get(self.handle(a))
                        .local_get(self.handle(b))
                        .i32_const(ret)
                        .call(F_SUB);
                    take_handle(i, d);
                }
                (false, true) => self.add_public(i, id, self.handle(a), b, true, d)?,
                _ => {
                    let nb = self.temp();
                    i.local_get(self.handle(b)).call(F_NEG).local_set(nb);
                    self.add_public(i, id, nb, a, false, d)?;
                }
            }
            0
        };
        // prod = c · d
        let prod = self.temp();
        match (self.is_public(c), d_public) {
            (false, false) => {
                i.local_get(self.handle(c))
                    .local_get(d)
                    .i32_const(ret)
                    .call(F_MUL);
                take_handle(i, prod);
            }
            (true, false) => {
                i.local_get(d)
                    .i32_const(self.arr(c)? as i32)
                    .i32_const(len)
                    .i32_const(ret)
                    .call(F_MUL_PUBLIC);
                take_handle(i, prod);
            }
            (false, true) => {
                i.local_get(self.handle(c))
                    .i32_const(scratch as i32)
                    .i32_const(len)
                    .i32_const(ret)
                    .call(F_MUL_PUBLIC);
                take_handle(i, prod);
            }
            (true, true) => return Err(EmitError("a public select marked secret".into())),
        }
        // out = prod + b
        if self.is_public(b) {
            i.local_get(prod)
                .i32_const(self.arr(b)? as i32)
                .i32_const(len)
                .i32_const(ret)
                .call(F_ADD_PUBLIC);
        } else {
            i.local_get(prod)
                .local_get(self.handle(b))
                .i32_const(ret)
                .call(F_ADD);
        }
        take_handle(i, out);
        Ok(())
    }

    /// Decodes input `p` into its array, or returns an input error.
    fn decode_input(
        &self,
        i: &mut InstructionSink,
        p: &Param,
        node: NodeId,
    ) -> Result<(), EmitError> {
        let dst = self.arr(node)?;
        let name = self.l.strings[&p.name];
        let bad = self.l.strings[&bad_msg(p)];
        let missing = self.l.strings[&missing_msg(p)];
        let f = self.ir.scale;
        i.i32_const(0)
            .local_set(L_FOUND)
            .i32_const(0)
            .local_set(L_J);
        i.block(BlockType::Empty).loop_(BlockType::Empty);
        i.local_get(L_J).local_get(L_IN_LEN).i32_ge_u().br_if(1);
        // rec = in_ptr + j·24
        i.local_get(L_IN_PTR)
            .local_get(L_J)
            .i32_const(FIELD_SIZE)
            .i32_mul()
            .i32_add()
            .local_set(L_REC);
        i.local_get(L_REC)
            .i32_load(mem(4, 2))
            .i32_const(name.1 as i32)
            .i32_eq();
        i.if_(BlockType::Empty);
        i.local_get(L_REC)
            .i32_load(mem(0, 2))
            .i32_const(name.0 as i32)
            .i32_const(name.1 as i32)
            .call(F_MEMEQ);
        i.if_(BlockType::Empty);
        i.i32_const(1).local_set(L_FOUND);
        i.local_get(L_REC).i32_const(8).i32_add().local_set(L_V);
        self.decode_value(i, p, dst, f, bad);
        i.end().end();
        i.local_get(L_J).i32_const(1).i32_add().local_set(L_J).br(0);
        i.end().end();
        i.local_get(L_FOUND).i32_eqz().if_(BlockType::Empty);
        fail_with(i, missing);
        i.end();
        Ok(())
    }

    /// The value at L_V into `dst`, per the declared type; kinds: 0 int, 1 real,
    /// 2 boolean, 3 ints, 4 reals, 5 booleans.
    fn decode_value(&self, i: &mut InstructionSink, p: &Param, dst: u64, f: u32, bad: (u32, u32)) {
        let (scalar_kinds, vector_kinds): (&[u32], &[u32]) = match p.ty {
            Scalar::Int => (&[0], &[3]),
            Scalar::Fixed => (&[0, 1], &[3, 4]),
            Scalar::Bool => (&[2], &[5]),
        };
        let kinds = if p.vector { vector_kinds } else { scalar_kinds };
        // Not one of the accepted kinds: bad input.
        i.i32_const(1).local_set(L_T);
        for k in kinds {
            i.local_get(L_V)
                .i32_load8_u(mem(0, 0))
                .i32_const(*k as i32)
                .i32_eq()
                .if_(BlockType::Empty)
                .i32_const(0)
                .local_set(L_T)
                .end();
        }
        i.local_get(L_T).if_(BlockType::Empty);
        fail_with(i, bad);
        i.end();
        if p.vector {
            // lp = list pointer; length must match.
            i.local_get(L_V).i32_load(mem(8, 2)).local_set(L_LP);
            i.local_get(L_V)
                .i32_load(mem(12, 2))
                .i32_const(p.len as i32)
                .i32_ne()
                .if_(BlockType::Empty);
            fail_with(i, bad);
            i.end();
        }
        for k in kinds {
            i.local_get(L_V)
                .i32_load8_u(mem(0, 0))
                .i32_const(*k as i32)
                .i32_eq()
                .if_(BlockType::Empty);
            let n = if p.vector { p.len } else { 1 };
            for_each(i, n, |i| {
                // Push the element as i64 (scaled), or fail.
                let elem_size: i32 = if *k == 2 || *k == 5 { 1 } else { 8 };
                let addr = |i: &mut InstructionSink| {
                    if p.vector {
                        i.local_get(L_LP)
                            .local_get(L_I)
                            .i32_const(elem_size)
                            .i32_mul()
                            .i32_add();
                    } else {
                        i.local_get(L_V).i32_const(8).i32_add();
                    }
                };
                match k {
                    0 | 3 => {
                        // An integer: check bounds (in units), then scale.
                        let (lo, hi) = if p.ty == Scalar::Fixed {
                            (div_ceil(p.range.lo, 1 << f), p.range.hi >> f)
                        } else {
                            (p.range.lo, p.range.hi)
                        };
                        addr(i);
                        i.i64_load(mem(0, 3)).local_set(L_ACC);
                        i.local_get(L_ACC)
                            .i64_const(lo as i64)
                            .i64_lt_s()
                            .local_get(L_ACC)
                            .i64_const(hi as i64)
                            .i64_gt_s()
                            .i32_or();
                        i.if_(BlockType::Empty);
                        fail_with(i, bad);
                        i.end();
                        if p.ty == Scalar::Fixed {
                            i.local_get(L_ACC)
                                .i64_const(f as i64)
                                .i64_shl()
                                .local_set(L_ACC);
                        }
                    }
                    1 | 4 => {
                        // A real: x·2^f rounded, checked against the bounds (NaN fails).
                        let scale: f64 = (1u64 << f) as f64;
                        addr(i);
                        i.f64_load(mem(0, 3))
                            .f64_const(scale.into())
                            .f64_mul()
                            .f64_nearest()
                            .local_set(L_X);
                        i.local_get(L_X)
                            .f64_const((p.range.lo as f64).into())
                            .f64_ge();
                        i.local_get(L_X)
                            .f64_const((p.range.hi as f64).into())
                            .f64_le();
                        i.i32_and().i32_eqz().if_(BlockType::Empty);
                        fail_with(i, bad);
                        i.end();
                        i.local_get(L_X).i64_trunc_f64_s().local_set(L_ACC);
                    }
                    _ => {
                        addr(i);
                        i.i32_load8_u(mem(0, 0)).i64_extend_i32_u().local_set(L_ACC);
                    }
                }
                elem(i);
                i.local_get(L_ACC).i64_store(mem(dst, 3));
            });
            i.end();
        }
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    -((-a).div_euclid(b))
}

fn run(ir: &Ir, l: &Layout) -> Result<Function, EmitError> {
    // Locals: 7 i32 scratch, an i64, an f64, then one i32 handle per node and temporaries
    // (at most a few per node: lifts, negations, batch concatenations).
    let temps = 12 * ir.nodes.len() as u32 + 16;
    let mut f = Function::new([
        (7, ValType::I32),
        (1, ValType::I64),
        (1, ValType::F64),
        (ir.nodes.len() as u32 + temps, ValType::I32),
    ]);
    let mut r = Run {
        ir,
        l,
        next_temp: L_HANDLES + ir.nodes.len() as u32,
        uses: uses(ir),
        fused: Vec::new(),
    };
    r.fuse();
    let mut i = f.instructions();
    for (id, node) in ir.nodes.iter().enumerate() {
        if let Op::Input(name) = &node.op {
            let p = ir
                .inputs
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| EmitError("unknown input".into()))?;
            r.decode_input(&mut i, p, id)?;
        }
    }
    // Layer by layer: the interactive ops of a layer first, batched so they share rounds,
    // then the local nodes that depend on them.
    let layer = crate::cost::layers(ir);
    let batches = crate::cost::batches(ir);
    let top = layer.iter().copied().max().unwrap_or(0);
    for l in 0..=top {
        for b in batches.iter().filter(|b| b.layer == l) {
            r.batch(&mut i, b)?;
        }
        for (id, node) in ir.nodes.iter().enumerate() {
            if layer[id] != l || node.is_interactive(&ir.nodes) || r.fused[id] {
                continue;
            }
            match node.vis {
                Vis::Public => r.public_node(&mut i, id)?,
                Vis::Secret => r.secret_node(&mut i, id)?,
            }
        }
        if r.next_temp >= L_HANDLES + ir.nodes.len() as u32 + temps {
            return Err(EmitError("too many temporaries".into()));
        }
    }
    // Outputs: a handle each, moved to the host: the node's own when nothing else reads
    // it (and it is not another node's, as a one-part concatenation's is), else a copy.
    for (k, (name, id)) in ir.outputs.iter().enumerate() {
        let node = &ir.nodes[*id];
        let own = !matches!(&node.op, Op::Concat(parts) if parts.len() == 1);
        let h = match node.vis {
            Vis::Secret if r.uses[*id] == 1 && own => r.handle(*id),
            Vis::Secret => {
                let t = r.temp();
                i.local_get(r.handle(*id))
                    .i64_const(1)
                    .call(F_SCALE)
                    .local_set(t);
                t
            }
            Vis::Public => r.lift(&mut i, *id)?,
        };
        let (at, len) = l.strings[name];
        let rec = l.outputs as u64 + 12 * k as u64;
        i.i32_const(0).i32_const(at as i32).i32_store(mem(rec, 2));
        i.i32_const(0)
            .i32_const(len as i32)
            .i32_store(mem(rec + 4, 2));
        i.i32_const(0).local_get(h).i32_store(mem(rec + 8, 2));
    }
    i.i32_const(RESULT as i32)
        .i32_const(0)
        .i32_store8(mem(0, 0));
    i.i32_const(RESULT as i32)
        .i32_const(l.outputs as i32)
        .i32_store(mem(4, 2));
    i.i32_const(RESULT as i32)
        .i32_const(ir.outputs.len() as i32)
        .i32_store(mem(8, 2));
    i.i32_const(RESULT as i32).end();
    Ok(f)
}
