//! The syntax tree of a `.qvm` program.

use crate::diag::Span;

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A whole program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// `program NAME`.
    pub name: Ident,
    /// `(scale = N)`, if given.
    pub scale: Option<(u32, Span)>,
    /// Declarations and definitions, in order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `input NAME: TYPE in [LO, HI]`.
    Input(Decl),
    /// `secret NAME: TYPE in [LO, HI]`.
    Secret(Decl),
    /// `fn NAME(PARAMS) = EXPR`.
    Fn(FnDef),
    /// `let NAME = EXPR`.
    Let(Binding),
    /// `output NAME = EXPR`.
    Output(Binding),
}

/// A scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Scalar {
    /// An integer.
    Int,
    /// A fixed-point real at the program's scale.
    Fixed,
    /// A boolean.
    Bool,
}

/// A declared type: a scalar or a fixed-size vector of one.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    /// The element type.
    pub scalar: Scalar,
    /// `Some(n)` for a vector of n elements.
    pub len: Option<u32>,
    /// Where.
    pub span: Span,
}

/// An input or secret declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Decl {
    /// Its name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeExpr,
    /// `in [lo, hi]`: required for numbers.
    pub bounds: Option<(Expr, Expr, Span)>,
    /// The whole declaration.
    pub span: Span,
}

/// A function, inlined at every call.
#[derive(Debug, Clone, PartialEq)]
pub struct FnDef {
    /// Its name.
    pub name: Ident,
    /// Parameter names.
    pub params: Vec<Ident>,
    /// The body.
    pub body: Expr,
}

/// `let` or `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The bound name.
    pub name: Ident,
    /// The value.
    pub value: Expr,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `not x`
    Not,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (by a public constant)
    Div,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
}

/// Expression forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// An integer literal.
    Int(i64),
    /// A decimal literal, as written.
    Decimal(String),
    /// `true` / `false`.
    Bool(bool),
    /// A name.
    Name(String),
    /// A unary operation.
    Unary(UnOp, Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `if c then a else b` (both sides are computed: an oblivious select).
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// A call of a built-in or a defined function.
    Call(Ident, Vec<Expr>),
    /// `v[i]` with a constant index.
    Index(Box<Expr>, Box<Expr>),
    /// `[a, b, c]`.
    Vector(Vec<Expr>),
    /// `for i in a..b => e`: a vector, unrolled.
    For(Ident, Box<Expr>, Box<Expr>, Box<Expr>),
}
