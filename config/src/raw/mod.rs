//! Stage one: YAML text to raw serde objects, with positioned diagnostics for malformed or mistyped documents.

pub(crate) mod document;
pub(crate) mod egress;
pub(crate) mod gateway;
pub(crate) mod route;
pub(crate) mod security;
pub(crate) mod split;
pub(crate) mod switchyard;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeSeed, IgnoredAny};

use crate::diag::Diagnostic;
use crate::source::SourceFile;
use crate::spans::SpanIndex;
use document::{DocSeed, Header};
pub(crate) use document::{Kind, RawObject, Spec};
pub(crate) use split::Chunk;

/// A document's address: file index (in path order) and document index in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DocRef {
    pub file: usize,
    pub doc: usize,
}

/// A source file split into documents.
#[derive(Debug)]
pub(crate) struct SourceText<'a> {
    /// The path as given, for diagnostics.
    pub path: String,
    /// The directory relative paths in the file resolve against.
    pub dir: PathBuf,
    pub chunks: Vec<Chunk<'a>>,
}

/// One parsed object and where it came from. Objects are shared with the [`ParseCache`].
#[derive(Debug)]
pub(crate) struct RawDoc {
    pub at: DocRef,
    pub object: Arc<RawObject>,
}

/// The parse of files seen before, reused while a file's contents do not change: a set with
/// one edited file out of 10,000 re-parses one file. Holds only the files of the last parse.
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<PathBuf, CachedFile>,
}

#[derive(Debug)]
struct CachedFile {
    len: usize,
    hash: u64,
    /// (document index, object).
    docs: Vec<(usize, Arc<RawObject>)>,
    diagnostics: Vec<Diagnostic>,
}

fn content_hash(contents: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    contents.hash(&mut h);
    h.finish()
}

/// The result of stage one.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub sources: Vec<SourceText<'a>>,
    pub docs: Vec<RawDoc>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Inputs smaller than this are parsed on the calling thread.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// What parsing one document produced.
struct Outcome {
    at: DocRef,
    object: Option<RawObject>,
    diagnostics: Vec<Diagnostic>,
}

/// Parses every document of every file; a bad document is reported and skipped, never fatal.
///
/// Documents are independent, so large inputs are parsed on scoped threads (see
/// [`crate::par`]); results keep file and document order either way. libyaml is the bulk of
/// a large build's cost.
pub(crate) fn parse<'a>(files: &[&'a SourceFile], cache: Option<&mut ParseCache>) -> Parsed<'a> {
    let sources: Vec<SourceText<'a>> = files
        .iter()
        .map(|file| SourceText {
            path: file.path.to_string_lossy().into_owned(),
            dir: file
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            chunks: split::split_documents(&file.contents),
        })
        .collect();
    let hashes: Vec<u64> = match &cache {
        Some(_) => files.iter().map(|f| content_hash(&f.contents)).collect(),
        None => Vec::new(),
    };
    let cached = |file: usize| -> Option<&CachedFile> {
        let c = cache.as_ref()?.files.get(&files[file].path)?;
        (c.len == files[file].contents.len() && c.hash == hashes[file]).then_some(c)
    };
    let mut parsed = Parsed {
        sources: Vec::new(),
        docs: Vec::new(),
        diagnostics: Vec::new(),
    };
    let mut work: Vec<(DocRef, Chunk<'a>)> = Vec::new();
    for (file, source) in sources.iter().enumerate() {
        if let Some(c) = cached(file) {
            parsed.diagnostics.extend(c.diagnostics.iter().cloned());
            parsed
                .docs
                .extend(c.docs.iter().map(|(doc, object)| RawDoc {
                    at: DocRef { file, doc: *doc },
                    object: object.clone(),
                }));
            continue;
        }
        work.extend(
            source
                .chunks
                .iter()
                .enumerate()
                .filter(|(_, chunk)| !chunk.is_blank())
                .map(|(doc, chunk)| (DocRef { file, doc }, *chunk)),
        );
    }
    let outcomes = parse_all(&work, &sources);
    let mut fresh: HashMap<usize, CachedFile> = HashMap::new();
    for outcome in outcomes {
        let entry = fresh.entry(outcome.at.file).or_insert_with(|| CachedFile {
            len: 0,
            hash: 0,
            docs: Vec::new(),
            diagnostics: Vec::new(),
        });
        entry
            .diagnostics
            .extend(outcome.diagnostics.iter().cloned());
        parsed.diagnostics.extend(outcome.diagnostics);
        if let Some(object) = outcome.object {
            let object = Arc::new(object);
            entry.docs.push((outcome.at.doc, object.clone()));
            parsed.docs.push(RawDoc {
                at: outcome.at,
                object,
            });
        }
    }
    parsed.docs.sort_by_key(|d| d.at);
    if let Some(cache) = cache {
        let mut next = HashMap::with_capacity(files.len());
        for (file, f) in files.iter().enumerate() {
            let entry = match fresh.remove(&file) {
                Some(mut e) => {
                    e.len = f.contents.len();
                    e.hash = hashes[file];
                    e
                }
                // Unchanged (cached) or without any document (blank).
                None => match cache.files.remove(&f.path) {
                    Some(e) if e.len == f.contents.len() && e.hash == hashes[file] => e,
                    _ => CachedFile {
                        len: f.contents.len(),
                        hash: hashes[file],
                        docs: Vec::new(),
                        diagnostics: Vec::new(),
                    },
                },
            };
            next.insert(f.path.clone(), entry);
        }
        cache.files = next;
    }
    parsed.sources = sources;
    parsed
}

/// Parses the work list, in parallel when it is large, keeping its order.
fn parse_all(work: &[(DocRef, Chunk<'_>)], sources: &[SourceText<'_>]) -> Vec<Outcome> {
    crate::par::map_parts(
        work,
        |(_, chunk)| chunk.text.len(),
        PARALLEL_MIN_BYTES,
        |part| parse_part(part, sources),
    )
    .into_iter()
    .flatten()
    .collect()
}

/// Parses consecutive documents as one YAML stream, falling back to [`parse_document`] for
/// any document that does not come out clean.
///
/// Each libyaml parser allocates about 64 KiB of buffers, so a parser per document (10k route
/// files) costs more in the allocator than the parsing itself. The documents are therefore
/// joined into one stream, each opened by a `---` line, and read with one parser: document
/// `i` of the stream is chunk `i`, because a chunk holds exactly one document and no other
/// marker line. A document with any problem is parsed again on its own, which positions its
/// diagnostics; after a syntax error the stream yields only errors, so every later document
/// takes that path too.
fn parse_part(part: &[(DocRef, Chunk<'_>)], sources: &[SourceText<'_>]) -> Vec<Outcome> {
    let size = part.iter().map(|(_, c)| c.text.len() + 9).sum();
    let mut joined = String::with_capacity(size);
    let mut ended = true;
    for (_, chunk) in part {
        let text = chunk.text;
        if text.starts_with('%') {
            // Directives are only allowed once the previous document has ended.
            if !ended {
                joined.push_str("...\n");
            }
        } else if !text.starts_with("---") {
            joined.push_str("---\n");
        }
        joined.push_str(text);
        if !text.ends_with('\n') {
            joined.push('\n');
        }
        ended = split::ends_document(text);
    }
    let mut stream = serde_yaml::Deserializer::from_str(&joined);
    part.iter()
        .map(|(at, chunk)| {
            let fast = stream.next().and_then(|document| {
                let mut header = Header::default();
                let seed = DocSeed {
                    known: None,
                    header: &mut header,
                };
                let object = seed.deserialize(document).ok()?;
                let clean = header.problems.is_empty()
                    && !object
                        .as_ref()
                        .is_some_and(|o| matches!(o.spec, Spec::Deferred));
                clean.then_some(object)
            });
            #[cfg(test)]
            tests::FAST.with(|n| n.set(n.get() + usize::from(fast.is_some())));
            match fast {
                Some(object) => Outcome {
                    at: *at,
                    object,
                    diagnostics: Vec::new(),
                },
                None => parse_document(*at, chunk, &sources[at.file].path),
            }
        })
        .collect()
}

fn parse_document(at: DocRef, chunk: &Chunk<'_>, path: &str) -> Outcome {
    let (result, header) = parse_chunk(chunk.text);
    let mut diagnostics = Vec::new();
    if !header.problems.is_empty() {
        let spans = SpanIndex::build(chunk.text, chunk.line_offset);
        for (key, message) in &header.problems {
            let (line, column) = spans.lookup_key(key).unwrap_or_else(|| spans.lookup(""));
            diagnostics.push(Diagnostic {
                file: path.to_string(),
                line,
                column,
                object: header.label(),
                field: String::new(),
                message: message.clone(),
            });
        }
    }
    let object = match result {
        Ok(object) => object,
        Err(failure) => {
            diagnostics.push(failure.diagnostic(path, chunk));
            None
        }
    };
    Outcome {
        at,
        object,
        diagnostics,
    }
}

/// A document that did not parse.
struct Failure {
    object: Option<String>,
    field: String,
    error: serde_yaml::Error,
    syntax: bool,
}

fn parse_chunk(text: &str) -> (Result<Option<RawObject>, Failure>, Header) {
    let (result, header) = deserialize(text, None);
    match result {
        // `spec` came before `kind`: read again, now knowing the kind.
        Ok(Some(RawObject {
            spec: Spec::Deferred,
            kind: Some(kind),
            ..
        })) => deserialize(text, Some(kind)),
        Ok(Some(mut object)) if matches!(object.spec, Spec::Deferred) => {
            object.spec = Spec::Unsupported;
            (Ok(Some(object)), header)
        }
        other => (other, header),
    }
}

fn deserialize(text: &str, known: Option<Kind>) -> (Result<Option<RawObject>, Failure>, Header) {
    let mut header = Header::default();
    // Path tracking costs on every field, so the first read goes without it and only a
    // failed document is read again through serde_path_to_error.
    let first = DocSeed {
        known,
        header: &mut header,
    }
    .deserialize(serde_yaml::Deserializer::from_str(text));
    let error = match first {
        Ok(object) => return (Ok(object), header),
        Err(error) => error,
    };
    // A syntax error can surface as a type error on the truncated events; report the
    // syntax error, which is the real problem.
    if let Err(syntax) = serde_yaml::from_str::<IgnoredAny>(text) {
        let failure = Failure {
            object: None,
            field: String::new(),
            error: syntax,
            syntax: true,
        };
        return (Err(failure), Header::default());
    }
    let mut header = Header::default();
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(
        serde_yaml::Deserializer::from_str(text),
        &mut track,
    );
    let seed = DocSeed {
        known,
        header: &mut header,
    };
    let error = match seed.deserialize(de) {
        Err(e) => e,
        // Cannot happen (same input, same seed); keep the first error then.
        Ok(_) => error,
    };
    let field = track.path().to_string();
    let failure = Failure {
        object: header.label(),
        field: if field == "." { String::new() } else { field },
        error,
        syntax: false,
    };
    (Err(failure), header)
}

impl Failure {
    fn diagnostic(self, path: &str, chunk: &Chunk<'_>) -> Diagnostic {
        let location = self.error.location();
        let (line, column) = match &location {
            // Errors about the document as a whole (a missing top-level field) carry no
            // useful mark: point at the document's first node.
            _ if self.field.is_empty() && !self.syntax => {
                SpanIndex::build(chunk.text, 0).lookup("")
            }
            Some(l) => (l.line(), l.column()),
            None => (1, 1),
        };
        let mut message = self.error.to_string();
        if let Some(l) = &location {
            let at = format!(" at line {} column {}", l.line(), l.column());
            if let Some(i) = message.find(&at) {
                message.replace_range(i..i + at.len(), "");
            }
        }
        // serde_yaml prefixes messages with its own copy of the field path.
        if let Some((head, tail)) = message.split_once(": ") {
            if !head.is_empty() && !head.contains([' ', '`', '"']) && !tail.is_empty() {
                message = tail.to_string();
            }
        }
        Diagnostic {
            file: path.to_string(),
            line: line + chunk.line_offset,
            column,
            object: self.object,
            field: self.field,
            message: shift_lines(&message, chunk.line_offset),
        }
    }
}

/// Moves "at line N column M" mentions (libyaml's context positions) from chunk to file lines.
fn shift_lines(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("at line ") {
        let (head, tail) = rest.split_at(i + "at line ".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        match tail[..digits].parse::<usize>() {
            Ok(n) if tail[digits..].starts_with(" column") => {
                out.push_str(&(n + offset).to_string())
            }
            _ => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
