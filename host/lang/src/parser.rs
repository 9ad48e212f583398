//! A recursive-descent parser for `.qvm` programs.
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! program  := 'program' NAME ('(' 'scale' '=' INT ')')? item*
//! item     := ('input' | 'secret') NAME ':' type ('in' '[' expr ',' expr ']')?
//!           | 'fn' NAME '(' (NAME (',' NAME)*)? ')' '=' expr
//!           | ('let' | 'output') NAME '=' expr
//! type     := ('int' | 'fixed' | 'bool') ('[' INT ']')?
//! expr     := 'if' expr 'then' expr 'else' expr | 'for' NAME 'in' expr '..' expr '=>' expr | or
//! or       := and ('or' and)*          and := not ('and' not)*
//! not      := 'not' not | cmp          cmp := sum (('=='|'!='|'<'|'<='|'>'|'>=') sum)?
//! sum      := term (('+'|'-') term)*   term := unary (('*'|'/') unary)*
//! unary    := '-' unary | postfix      postfix := primary ('[' expr ']')*
//! primary  := INT | DECIMAL | 'true' | 'false' | NAME | NAME '(' args ')' | '(' expr ')'
//!           | '[' args ']'
//! ```
//!
//! After an error the parser skips to the next item keyword, so one run reports every
//! item's first error.

use crate::ast::*;
use crate::diag::{CompileError, Diagnostic, Span};
use crate::lexer::{Token, lex};

/// Parses a program.
pub fn parse(source: &str) -> Result<Program, CompileError> {
    let tokens = lex(source).map_err(|diagnostics| CompileError { diagnostics })?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: source.len(),
        errors: Vec::new(),
    };
    let program = p.program();
    match program {
        Some(prog) if p.errors.is_empty() => Ok(prog),
        _ => Err(CompileError {
            diagnostics: p.errors,
        }),
    }
}

/// Nesting deeper than this is refused (bounded recursion on hostile input).
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<(Token, Span)>,
    pos: usize,
    end: usize,
    errors: Vec<Diagnostic>,
}

type PResult<T> = Result<T, Diagnostic>;

fn is_item_start(t: &Token) -> bool {
    matches!(
        t,
        Token::Input | Token::Secret | Token::Fn | Token::Let | Token::Output
    )
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn span(&self) -> Span {
        self.tokens
            .get(self.pos)
            .map_or(self.end..self.end, |(_, s)| s.clone())
    }

    fn prev_end(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |(_, s)| s.end)
    }

    fn bump(&mut self) -> Option<(Token, Span)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &str) -> Diagnostic {
        match self.peek() {
            Some(t) => Diagnostic::new(
                format!("expected {expected}, found {}", t.describe()),
                self.span(),
                format!("expected {expected}"),
            ),
            None => Diagnostic::new(
                format!("expected {expected}, found the end of the program"),
                self.span(),
                format!("expected {expected}"),
            ),
        }
    }

    fn expect(&mut self, t: Token, expected: &str) -> PResult<Span> {
        if self.peek() == Some(&t) {
            Ok(self.bump().map_or(0..0, |(_, s)| s))
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek() {
            Some(Token::Ident(_)) => match self.bump() {
                Some((Token::Ident(name), span)) => Ok(Ident { name, span }),
                _ => Err(self.unexpected(what)),
            },
            _ => Err(self.unexpected(what)),
        }
    }

    fn program(&mut self) -> Option<Program> {
        let header = (|| -> PResult<(Ident, Option<(u32, Span)>)> {
            self.expect(Token::Program, "`program NAME` at the start")?;
            let name = self.ident("the program's name")?;
            let mut scale = None;
            if self.eat(&Token::LParen) {
                let kw = self.ident("`scale`")?;
                if kw.name != "scale" {
                    return Err(Diagnostic::new(
                        format!("unknown program option `{}`", kw.name),
                        kw.span,
                        "expected `scale`",
                    ));
                }
                self.expect(Token::Eq, "`=`")?;
                let span = self.span();
                let value = match self.bump() {
                    Some((Token::Int(v), _)) if (0..=32).contains(&v) => v as u32,
                    _ => {
                        return Err(Diagnostic::new(
                            "the scale must be an integer from 0 to 32",
                            span,
                            "here",
                        ));
                    }
                };
                self.expect(Token::RParen, "`)`")?;
                scale = Some((value, span));
            }
            Ok((name, scale))
        })();
        let (name, scale) = match header {
            Ok(h) => h,
            Err(e) => {
                self.errors.push(e);
                return None;
            }
        };
        let mut items = Vec::new();
        while self.peek().is_some() {
            let start = self.pos;
            match self.item() {
                Ok(item) => items.push(item),
                Err(e) => {
                    self.errors.push(e);
                    // Skip to the next item, keeping an item keyword the error stopped at.
                    if self.pos == start || !self.peek().is_some_and(is_item_start) {
                        self.pos = self.pos.max(start + 1);
                    }
                    while self.peek().is_some_and(|t| !is_item_start(t)) {
                        self.pos += 1;
                    }
                }
            }
        }
        Some(Program { name, scale, items })
    }

    fn item(&mut self) -> PResult<Item> {
        let start = self.span().start;
        match self.peek() {
            Some(Token::Input) | Some(Token::Secret) => {
                let secret = matches!(self.bump(), Some((Token::Secret, _)));
                let decl = self.decl(start)?;
                Ok(if secret {
                    Item::Secret(decl)
                } else {
                    Item::Input(decl)
                })
            }
            Some(Token::Fn) => {
                self.bump();
                let name = self.ident("a function name")?;
                self.expect(Token::LParen, "`(`")?;
                let mut params = Vec::new();
                if !self.eat(&Token::RParen) {
                    loop {
                        params.push(self.ident("a parameter name")?);
                        if self.eat(&Token::RParen) {
                            break;
                        }
                        self.expect(Token::Comma, "`,` or `)`")?;
                    }
                }
                self.expect(Token::Eq, "`=`")?;
                let body = self.expr(0)?;
                Ok(Item::Fn(FnDef { name, params, body }))
            }
            Some(Token::Let) | Some(Token::Output) => {
                let output = matches!(self.bump(), Some((Token::Output, _)));
                let name = self.ident("a name")?;
                self.expect(Token::Eq, "`=`")?;
                let value = self.expr(0)?;
                let b = Binding { name, value };
                Ok(if output {
                    Item::Output(b)
                } else {
                    Item::Let(b)
                })
            }
            _ => Err(self.unexpected("`input`, `secret`, `fn`, `let` or `output`")),
        }
    }

    fn decl(&mut self, start: usize) -> PResult<Decl> {
        let name = self.ident("a name")?;
        self.expect(Token::Colon, "`:` and a type")?;
        let ty_start = self.span().start;
        let scalar = match self.bump() {
            Some((Token::IntType, _)) => Scalar::Int,
            Some((Token::FixedType, _)) => Scalar::Fixed,
            Some((Token::BoolType, _)) => Scalar::Bool,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("a type (`int`, `fixed` or `bool`)"));
            }
        };
        let mut len = None;
        if self.eat(&Token::LBracket) {
            let span = self.span();
            match self.bump() {
                Some((Token::Int(n), _)) if (1..=1_000_000).contains(&n) => len = Some(n as u32),
                _ => {
                    return Err(Diagnostic::new(
                        "a vector length must be an integer from 1 to 1000000",
                        span,
                        "here",
                    ));
                }
            }
            self.expect(Token::RBracket, "`]`")?;
        }
        let ty = TypeExpr {
            scalar,
            len,
            span: ty_start..self.prev_end(),
        };
        let mut bounds = None;
        if self.eat(&Token::In) {
            let b_start = self.span().start;
            self.expect(Token::LBracket, "`[` and the bounds")?;
            let lo = self.expr(0)?;
            self.expect(Token::Comma, "`,`")?;
            let hi = self.expr(0)?;
            self.expect(Token::RBracket, "`]`")?;
            bounds = Some((lo, hi, b_start..self.prev_end()));
        }
        Ok(Decl {
            name,
            ty,
            bounds,
            span: start..self.prev_end(),
        })
    }

    fn expr(&mut self, depth: usize) -> PResult<Expr> {
        if depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                "expression nested too deeply",
                self.span(),
                "here",
            ));
        }
        let start = self.span().start;
        match self.peek() {
            Some(Token::If) => {
                self.bump();
                let c = self.expr(depth + 1)?;
                self.expect(Token::Then, "`then`")?;
                let a = self.expr(depth + 1)?;
                self.expect(
                    Token::Else,
                    "`else` (both branches are required: both are computed)",
                )?;
                let b = self.expr(depth + 1)?;
                Ok(self.node(ExprKind::If(Box::new(c), Box::new(a), Box::new(b)), start))
            }
            Some(Token::For) => {
                self.bump();
                let var = self.ident("a loop variable")?;
                self.expect(Token::In, "`in`")?;
                let from = self.binary(depth + 1, 0)?;
                self.expect(Token::DotDot, "`..`")?;
                let to = self.binary(depth + 1, 0)?;
                self.expect(Token::FatArrow, "`=>`")?;
                let body = self.expr(depth + 1)?;
                Ok(self.node(
                    ExprKind::For(var, Box::new(from), Box::new(to), Box::new(body)),
                    start,
                ))
            }
            _ => self.binary(depth, 0),
        }
    }

    fn node(&self, kind: ExprKind, start: usize) -> Expr {
        Expr {
            kind,
            span: start..self.prev_end(),
        }
    }

    /// Precedence climbing over the binary operators (level 0 is `or`).
    fn binary(&mut self, depth: usize, level: u8) -> PResult<Expr> {
        if depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                "expression nested too deeply",
                self.span(),
                "here",
            ));
        }
        if level == 2 && self.peek() == Some(&Token::Not) {
            let start = self.span().start;
            self.bump();
            let e = self.binary(depth + 1, 2)?;
            return Ok(self.node(ExprKind::Unary(UnOp::Not, Box::new(e)), start));
        }
        if level == 6 {
            return self.unary(depth);
        }
        let start = self.span().start;
        // The levels are a fixed, small recursion: only nesting (parentheses, `not`, unary
        // minus, brackets, if/for) counts toward the depth limit.
        let mut lhs = self.binary(depth, level + 1)?;
        loop {
            let op = match (level, self.peek()) {
                (0, Some(Token::Or)) => BinOp::Or,
                (1, Some(Token::And)) => BinOp::And,
                (3, Some(Token::EqEq)) => BinOp::Eq,
                (3, Some(Token::NotEq)) => BinOp::Ne,
                (3, Some(Token::Lt)) => BinOp::Lt,
                (3, Some(Token::Le)) => BinOp::Le,
                (3, Some(Token::Gt)) => BinOp::Gt,
                (3, Some(Token::Ge)) => BinOp::Ge,
                (4, Some(Token::Plus)) => BinOp::Add,
                (4, Some(Token::Minus)) => BinOp::Sub,
                (5, Some(Token::Star)) => BinOp::Mul,
                (5, Some(Token::Slash)) => BinOp::Div,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.binary(depth, level + 1)?;
            lhs = self.node(ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), start);
            if level == 3 {
                // Comparisons do not chain: `a < b < c` is an error below, not a surprise.
                if matches!(
                    self.peek(),
                    Some(
                        Token::EqEq | Token::NotEq | Token::Lt | Token::Le | Token::Gt | Token::Ge
                    )
                ) {
                    return Err(Diagnostic::new(
                        "comparisons do not chain",
                        self.span(),
                        "second comparison here",
                    )
                    .with_hint("write `a < b and b < c`"));
                }
                return Ok(lhs);
            }
        }
    }

    fn unary(&mut self, depth: usize) -> PResult<Expr> {
        if depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                "expression nested too deeply",
                self.span(),
                "here",
            ));
        }
        if self.peek() == Some(&Token::Minus) {
            let start = self.span().start;
            self.bump();
            let e = self.unary(depth + 1)?;
            return Ok(self.node(ExprKind::Unary(UnOp::Neg, Box::new(e)), start));
        }
        let start = self.span().start;
        let mut e = self.primary(depth)?;
        while self.eat(&Token::LBracket) {
            let index = self.expr(depth + 1)?;
            self.expect(Token::RBracket, "`]`")?;
            e = self.node(ExprKind::Index(Box::new(e), Box::new(index)), start);
        }
        Ok(e)
    }

    fn list(&mut self, depth: usize, close: Token, what: &str) -> PResult<Vec<Expr>> {
        let mut items = Vec::new();
        if self.eat(&close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr(depth + 1)?);
            if self.eat(&close) {
                return Ok(items);
            }
            self.expect(Token::Comma, what)?;
        }
    }

    fn primary(&mut self, depth: usize) -> PResult<Expr> {
        let start = self.span().start;
        let Some((tok, span)) = self.bump() else {
            self.pos -= 1;
            return Err(self.unexpected("an expression"));
        };
        let kind = match tok {
            Token::Int(v) => ExprKind::Int(v),
            Token::Decimal(d) => ExprKind::Decimal(d),
            Token::True => ExprKind::Bool(true),
            Token::False => ExprKind::Bool(false),
            Token::Ident(name) => {
                if self.eat(&Token::LParen) {
                    let args = self.list(depth, Token::RParen, "`,` or `)`")?;
                    ExprKind::Call(Ident { name, span }, args)
                } else {
                    ExprKind::Name(name)
                }
            }
            Token::LParen => {
                let e = self.expr(depth + 1)?;
                self.expect(Token::RParen, "`)`")?;
                return Ok(Expr {
                    kind: e.kind,
                    span: start..self.prev_end(),
                });
            }
            Token::LBracket => ExprKind::Vector(self.list(depth, Token::RBracket, "`,` or `]`")?),
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("an expression"));
            }
        };
        Ok(self.node(kind, start))
    }
}
