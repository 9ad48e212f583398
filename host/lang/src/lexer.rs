//! Tokens of the QuorumVM language.

use logos::Logos;

use crate::diag::{Diagnostic, Span};

/// A token.
#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
pub enum Token {
    /// `program`
    #[token("program")]
    Program,
    /// `input`
    #[token("input")]
    Input,
    /// `secret`
    #[token("secret")]
    Secret,
    /// `fn`
    #[token("fn")]
    Fn,
    /// `let`
    #[token("let")]
    Let,
    /// `output`
    #[token("output")]
    Output,
    /// `if`
    #[token("if")]
    If,
    /// `then`
    #[token("then")]
    Then,
    /// `else`
    #[token("else")]
    Else,
    /// `for`
    #[token("for")]
    For,
    /// `in`
    #[token("in")]
    In,
    /// `and`
    #[token("and")]
    And,
    /// `or`
    #[token("or")]
    Or,
    /// `not`
    #[token("not")]
    Not,
    /// `true`
    #[token("true")]
    True,
    /// `false`
    #[token("false")]
    False,
    /// `int`
    #[token("int")]
    IntType,
    /// `fixed`
    #[token("fixed")]
    FixedType,
    /// `bool`
    #[token("bool")]
    BoolType,
    /// `(`
    #[token("(")]
    LParen,
    /// `)`
    #[token(")")]
    RParen,
    /// `[`
    #[token("[")]
    LBracket,
    /// `]`
    #[token("]")]
    RBracket,
    /// `,`
    #[token(",")]
    Comma,
    /// `:`
    #[token(":")]
    Colon,
    /// `==`
    #[token("==")]
    EqEq,
    /// `!=`
    #[token("!=")]
    NotEq,
    /// `<=`
    #[token("<=")]
    Le,
    /// `>=`
    #[token(">=")]
    Ge,
    /// `<`
    #[token("<")]
    Lt,
    /// `>`
    #[token(">")]
    Gt,
    /// `=>`
    #[token("=>")]
    FatArrow,
    /// `=`
    #[token("=")]
    Eq,
    /// `+`
    #[token("+")]
    Plus,
    /// `-`
    #[token("-")]
    Minus,
    /// `*`
    #[token("*")]
    Star,
    /// `/`
    #[token("/")]
    Slash,
    /// `..`
    #[token("..")]
    DotDot,
    /// A decimal number with a fractional part, kept as text (converted at the program's
    /// scale later).
    #[regex(r"[0-9]+\.[0-9]+", |lex| lex.slice().to_string())]
    Decimal(String),
    /// An integer.
    #[regex(r"[0-9]+", |lex| lex.slice().parse::<i64>().ok())]
    Int(i64),
    /// A name.
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
}

impl Token {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Token::Decimal(d) => format!("number `{d}`"),
            Token::Int(i) => format!("number `{i}`"),
            Token::Ident(n) => format!("name `{n}`"),
            other => format!("`{}`", symbol(other)),
        }
    }
}

fn symbol(t: &Token) -> &'static str {
    use Token::*;
    match t {
        Program => "program",
        Input => "input",
        Secret => "secret",
        Fn => "fn",
        Let => "let",
        Output => "output",
        If => "if",
        Then => "then",
        Else => "else",
        For => "for",
        In => "in",
        And => "and",
        Or => "or",
        Not => "not",
        True => "true",
        False => "false",
        IntType => "int",
        FixedType => "fixed",
        BoolType => "bool",
        LParen => "(",
        RParen => ")",
        LBracket => "[",
        RBracket => "]",
        Comma => ",",
        Colon => ":",
        EqEq => "==",
        NotEq => "!=",
        Le => "<=",
        Ge => ">=",
        Lt => "<",
        Gt => ">",
        FatArrow => "=>",
        Eq => "=",
        Plus => "+",
        Minus => "-",
        Star => "*",
        Slash => "/",
        DotDot => "..",
        Decimal(_) | Int(_) | Ident(_) => "",
    }
}

/// Bidirectional-override characters, which can make source read differently from how it
/// compiles ("Trojan Source", CVE-2021-42574).
const BIDI: [char; 9] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}',
];

/// Splits the source into tokens with their spans; every unknown character is an error.
pub fn lex(source: &str) -> Result<Vec<(Token, Span)>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    for (i, c) in source.char_indices() {
        if BIDI.contains(&c) {
            errors.push(
                Diagnostic::new(
                    "bidirectional override character in source",
                    i..i + c.len_utf8(),
                    "here",
                )
                .with_hint("remove it: it can make the program read differently from how it runs"),
            );
        }
    }
    let mut tokens = Vec::new();
    for (tok, span) in Token::lexer(source).spanned() {
        match tok {
            Ok(t) => tokens.push((t, span)),
            Err(()) => {
                let text = &source[span.clone()];
                let msg = if text.chars().all(|c| c.is_ascii_digit()) {
                    "integer literal too large".to_string()
                } else {
                    format!("unexpected character `{}`", text.escape_debug())
                };
                if !errors.iter().any(|e: &Diagnostic| e.primary.0 == span) {
                    errors.push(Diagnostic::new(msg, span, "not part of the language"));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(tokens)
    } else {
        Err(errors)
    }
}
