//! Collects diagnostics during validation and compilation, positioning field paths lazily per document.

use std::collections::HashMap;
use std::fmt;

use crate::diag::{Diagnostic, Diagnostics};
use crate::raw::{DocRef, SourceText};
use crate::spans::{self, SpanIndex};
use crate::Scope;

/// Where a semantic error belongs: a document and the object it declares.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub at: DocRef,
    /// "HTTPRoute shop/cart".
    pub label: String,
}

/// The diagnostic collector shared by the validation and compile stages.
#[derive(Debug)]
pub(crate) struct Reporter<'s> {
    sources: &'s [SourceText<'s>],
    spans: HashMap<DocRef, SpanIndex>,
    diagnostics: Vec<Diagnostic>,
    /// A gateway's view tolerates references to objects left out of it.
    scope: Scope,
}

impl<'s> Reporter<'s> {
    pub(crate) fn new(
        sources: &'s [SourceText<'s>],
        parse_errors: Vec<Diagnostic>,
        scope: Scope,
    ) -> Self {
        Self {
            sources,
            spans: HashMap::new(),
            diagnostics: parse_errors,
            scope,
        }
    }

    /// True when validating a gateway's view rather than the whole set.
    pub(crate) fn is_view(&self) -> bool {
        self.scope == Scope::View
    }

    pub(crate) fn scope(&self) -> Scope {
        self.scope
    }

    /// Reports an error at `field` of the object at `site`.
    pub(crate) fn error(
        &mut self,
        site: &Site,
        field: impl fmt::Display,
        message: impl Into<String>,
    ) {
        let field = field.to_string();
        let (line, column) = self.position(site.at, &field);
        self.diagnostics.push(Diagnostic {
            file: self.file(site.at).to_string(),
            line,
            column,
            object: Some(site.label.clone()),
            field,
            message: message.into(),
        });
    }

    /// `file:line` of a field, for messages that point at another declaration.
    pub(crate) fn describe(&mut self, at: DocRef, field: &str) -> String {
        let (line, _) = self.position(at, field);
        format!("{}:{line}", self.file(at))
    }

    /// The line of a field.
    pub(crate) fn line(&mut self, at: DocRef, field: &str) -> usize {
        self.position(at, field).0
    }

    /// The source path of a document.
    pub(crate) fn file(&self, at: DocRef) -> &'s str {
        &self.sources[at.file].path
    }

    /// The line of each of `spec.rules`, from the cheap block-style scan when it finds exactly
    /// `count` rules, else from the span index.
    pub(crate) fn rule_lines(&mut self, at: DocRef, count: usize) -> Vec<usize> {
        let chunk = self.sources[at.file].chunks[at.doc];
        match spans::rule_lines(chunk.text) {
            Some(lines) if lines.len() == count => {
                lines.into_iter().map(|l| l + chunk.line_offset).collect()
            }
            _ => (0..count)
                .map(|i| self.position(at, &format!("spec.rules[{i}]")).0)
                .collect(),
        }
    }

    fn position(&mut self, at: DocRef, field: &str) -> (usize, usize) {
        let sources = self.sources;
        self.spans
            .entry(at)
            .or_insert_with(|| {
                let chunk = sources[at.file].chunks[at.doc];
                SpanIndex::build(chunk.text, chunk.line_offset)
            })
            .lookup(field)
    }

    /// Takes over the diagnostics of a collector that worked on part of the input.
    pub(crate) fn absorb(&mut self, other: Reporter<'_>) {
        self.diagnostics.extend(other.diagnostics);
    }

    /// True when anything was reported.
    pub(crate) fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// All diagnostics, ordered by file (in path order), line and column.
    pub(crate) fn finish(self) -> Diagnostics {
        let order: HashMap<&str, usize> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.path.as_str(), i))
            .collect();
        let mut diagnostics = self.diagnostics;
        diagnostics.sort_by(|a, b| {
            let fa = order.get(a.file.as_str()).copied().unwrap_or(usize::MAX);
            let fb = order.get(b.file.as_str()).copied().unwrap_or(usize::MAX);
            (fa, &a.file, a.line, a.column).cmp(&(fb, &b.file, b.line, b.column))
        });
        diagnostics.dedup();
        Diagnostics(diagnostics)
    }
}
