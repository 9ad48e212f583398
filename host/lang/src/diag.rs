//! Diagnostics: what went wrong, where, and what to do about it.
//!
//! Rendered like a good compiler's errors (file:line:col, the source line, a caret, a
//! hint) by `codespan-reporting`, without colour so the text is stable for golden tests.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;

/// A byte range in the source.
pub type Span = core::ops::Range<usize>;

/// One error about the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one line.
    pub message: String,
    /// Where, with a short label.
    pub primary: (Span, String),
    /// Related places ("first defined here").
    pub secondary: Vec<(Span, String)>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn new(message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            primary: (span, label.into()),
            secondary: Vec::new(),
            hint: None,
        }
    }

    /// Adds a related place.
    #[must_use]
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// Compilation failed: every error found, in source order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in the program", .diagnostics.len())]
pub struct CompileError {
    /// The errors.
    pub diagnostics: Vec<Diagnostic>,
}

impl CompileError {
    /// One error.
    pub fn one(d: Diagnostic) -> CompileError {
        CompileError {
            diagnostics: vec![d],
        }
    }

    /// Renders every error against the source, as a compiler prints them.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let file = SimpleFile::new(file_name, source);
        let config = term::Config::default();
        let mut out = String::new();
        for d in &self.diagnostics {
            let mut labels =
                vec![Label::primary((), clamp(&d.primary.0, source)).with_message(&d.primary.1)];
            labels.extend(
                d.secondary
                    .iter()
                    .map(|(s, m)| Label::secondary((), clamp(s, source)).with_message(m)),
            );
            let mut cs = CsDiagnostic::error()
                .with_message(&d.message)
                .with_labels(labels);
            if let Some(h) = &d.hint {
                cs = cs.with_notes(vec![format!("hint: {h}")]);
            }
            match term::emit_into_string(&config, &file, &cs) {
                Ok(s) => out.push_str(&s),
                Err(_) => out.push_str(&format!("error: {}\n", d.message)),
            }
        }
        out
    }
}

/// A span inside the source (an empty span at the end for "unexpected end of input").
fn clamp(span: &Span, source: &str) -> Span {
    let end = span.end.min(source.len());
    span.start.min(end)..end
}
