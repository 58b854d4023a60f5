//! Positioned configuration errors: one [`Diagnostic`] per problem, gathered into [`Diagnostics`].

use std::fmt;

/// One configuration problem, positioned at `file:line:column`.
///
/// `line` and `column` are 1-based; both are 0 when the problem has no position in a
/// file's contents (an unreadable file, say), and [`Display`](fmt::Display) then omits them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// The source path as given to [`build`](crate::build).
    pub file: String,
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column, 0 if unknown.
    pub column: usize,
    /// The object the problem is in, as "Kind namespace/name" (e.g. "HTTPRoute shop/cart").
    pub object: Option<String>,
    /// The field path inside the object (e.g. `spec.rules[1].backendRefs[0].name`); may be empty.
    pub field: String,
    /// What is wrong, and where possible what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        match (&self.object, self.field.is_empty()) {
            (Some(object), false) => write!(f, "{object} {}: ", self.field)?,
            (Some(object), true) => write!(f, "{object}: ")?,
            (None, false) => write!(f, "{}: ", self.field)?,
            (None, true) => {}
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one [`build`](crate::build), sorted by file, line and column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates the problems in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
