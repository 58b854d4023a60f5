//! A position-keeping YAML tree for the rollout editor: yaml-rust2 events folded into nodes that
//! remember their byte offsets, so a scalar can be rewritten in place without re-emitting YAML.
//!
//! Only what the editor needs is kept: scalars (value, style, start byte, line, column),
//! mappings (entries in order, flow or block, the byte of a flow mapping's `}`) and sequences.
//! Offsets are bytes into the text given to [`parse_first`]; lines are 1-based, columns 0-based
//! characters, both relative to that text.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// A scalar and where it starts (at its opening quote when quoted, after any tag or anchor).
#[derive(Debug)]
pub(crate) struct Scalar {
    pub value: String,
    pub style: TScalarStyle,
    pub start: usize,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug)]
pub(crate) struct Map {
    pub entries: Vec<(Node, Node)>,
    pub style: MapStyle,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapStyle {
    /// Indented `key: value` lines.
    Block,
    /// `{key: value, ...}`.
    Flow,
    /// A single `key: value` pair written as an item of a flow sequence (`[name: a]`).
    FlowPair,
}

#[derive(Debug)]
pub(crate) enum Node {
    Scalar(Scalar),
    Map(Map),
    Seq {
        items: Vec<Node>,
        line: usize,
    },
    /// An alias: nothing the editor can change in place.
    Alias {
        line: usize,
    },
}

impl Node {
    pub(crate) fn line(&self) -> usize {
        match self {
            Node::Scalar(s) => s.line,
            Node::Map(m) => m.line,
            Node::Seq { line, .. } | Node::Alias { line } => *line,
        }
    }

    pub(crate) fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn as_scalar(&self) -> Option<&Scalar> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_seq(&self) -> Option<&[Node]> {
        match self {
            Node::Seq { items, .. } => Some(items),
            _ => None,
        }
    }
}

impl Map {
    /// The entry whose key is the plain or quoted scalar `key` (the last one if repeated).
    pub(crate) fn entry(&self, key: &str) -> Option<(&Scalar, &Node)> {
        self.entries.iter().rev().find_map(|(k, v)| match k {
            Node::Scalar(k) if k.value == key => Some((k, v)),
            _ => None,
        })
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The string value of `key` when it is a scalar.
    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(Node::as_scalar)
            .map(|s| s.value.as_str())
    }
}

/// A YAML syntax error, with its 1-based line relative to the parsed text.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses the first document of `text`; `Ok(None)` when it holds no node.
pub(crate) fn parse_first(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        offsets: Offsets::new(text),
        text,
    };
    loop {
        let (event, mark) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentStart | Event::Nothing => {}
            Event::DocumentEnd | Event::StreamEnd => return Ok(None),
            event => return reader.node(event, mark, 0).map(Some),
        }
    }
}

struct Reader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    offsets: Offsets,
    text: &'a str,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser.next_token().map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })
    }

    fn node(&mut self, event: Event, mark: Marker, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                line: mark.line(),
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        match event {
            Event::Scalar(value, style, ..) => Ok(Node::Scalar(Scalar {
                value,
                style,
                start: self.offsets.byte(mark.index()),
                line: mark.line(),
                col: mark.col(),
            })),
            Event::MappingStart(..) => {
                // A flow mapping ends with its `}` (it may start at an anchor or a tag); a
                // block mapping's end mark is the next token, never a `}`: block collections
                // cannot sit inside flow ones.
                let mut entries = Vec::new();
                let brace = loop {
                    let (event, key_mark) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        let at = self.offsets.byte(key_mark.index());
                        break self.text.as_bytes().get(at) == Some(&b'}');
                    }
                    let key = self.node(event, key_mark, depth + 1)?;
                    let (event, value_mark) = self.next()?;
                    let value = self.node(event, value_mark, depth + 1)?;
                    entries.push((key, value));
                };
                Ok(Node::Map(Map {
                    entries,
                    style: if brace {
                        MapStyle::Flow
                    } else {
                        MapStyle::Block
                    },
                    line: mark.line(),
                }))
            }
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                loop {
                    let (event, item_mark) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        // In a flow sequence, a mapping without braces is an implicit pair.
                        let at = self.offsets.byte(item_mark.index());
                        if self.text.as_bytes().get(at) == Some(&b']') {
                            for item in &mut items {
                                if let Node::Map(m) = item {
                                    if m.style == MapStyle::Block {
                                        m.style = MapStyle::FlowPair;
                                    }
                                }
                            }
                        }
                        break;
                    }
                    items.push(self.node(event, item_mark, depth + 1)?);
                }
                Ok(Node::Seq {
                    items,
                    line: mark.line(),
                })
            }
            Event::Alias(_) => Ok(Node::Alias { line: mark.line() }),
            other => Err(SyntaxError {
                line: mark.line(),
                message: format!("unexpected YAML event {other:?}"),
            }),
        }
    }
}

/// yaml-rust2 marks count characters; edits need bytes.
struct Offsets {
    /// Byte offset of each character, plus the text length; empty for ASCII text.
    table: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        let table = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        Offsets {
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.table.is_empty() {
            char_index.min(self.len)
        } else {
            self.table.get(char_index).copied().unwrap_or(self.len)
        }
    }
}

/// The byte range of a single-line scalar's token in `text`, quotes included; `None` when the
/// token is not where the mark says or spans lines (block scalars, folded plain scalars).
pub(crate) fn token_range(text: &str, s: &Scalar) -> Option<(usize, usize)> {
    let rest = text.get(s.start..)?;
    let end = match s.style {
        TScalarStyle::Plain => {
            if !rest.starts_with(s.value.as_str()) || s.value.contains(['\n', '\r']) {
                return None;
            }
            s.value.len()
        }
        TScalarStyle::SingleQuoted => quoted_end(rest, b'\'')?,
        TScalarStyle::DoubleQuoted => quoted_end(rest, b'"')?,
        TScalarStyle::Literal | TScalarStyle::Folded => return None,
    };
    Some((s.start, s.start + end))
}

/// The end (exclusive) of a one-line quoted token starting at `rest[0]`.
fn quoted_end(rest: &str, quote: u8) -> Option<usize> {
    let bytes = rest.as_bytes();
    if bytes.first() != Some(&quote) {
        return None;
    }
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' | b'\r' => return None,
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => {
                // '' is an escaped quote inside a single-quoted scalar.
                if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The byte range of a scalar's value inside its token (between the quotes when quoted), when
/// that text is exactly the value (no escapes).
pub(crate) fn value_range(text: &str, s: &Scalar) -> Option<(usize, usize)> {
    let (start, end) = token_range(text, s)?;
    let (start, end) = match s.style {
        TScalarStyle::Plain => (start, end),
        _ => (start + 1, end - 1),
    };
    (text.get(start..end)? == s.value).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_styles() {
        let text = "a: é\nb: {c: 'x''y', d: \"q\\\"r\"}\ne: 7 # c\n";
        let root = parse_first(text).unwrap().unwrap();
        let root = root.as_map().unwrap();
        assert_eq!(root.style, MapStyle::Block);
        let b = root.get("b").unwrap().as_map().unwrap();
        assert_eq!(b.style, MapStyle::Flow);
        let c = b.get("c").unwrap().as_scalar().unwrap();
        assert_eq!(
            token_range(text, c).map(|(s, e)| &text[s..e]),
            Some("'x''y'")
        );
        assert_eq!(value_range(text, c), None, "escaped quote is not the value");
        let d = b.get("d").unwrap().as_scalar().unwrap();
        assert_eq!(
            token_range(text, d).map(|(s, e)| &text[s..e]),
            Some("\"q\\\"r\"")
        );
        let e = root.get("e").unwrap().as_scalar().unwrap();
        assert_eq!(value_range(text, e).map(|(s, e)| &text[s..e]), Some("7"));
        assert_eq!((e.line, e.col), (3, 3));
    }

    #[test]
    fn implicit_pairs_in_flow_sequences() {
        let text = "s: [a: 1, &x {b: 2}]\nt:\n  - c: 3\n";
        let root = parse_first(text).unwrap().unwrap();
        let root = root.as_map().unwrap();
        let styles = |key| -> Vec<MapStyle> {
            root.get(key)
                .and_then(Node::as_seq)
                .unwrap()
                .iter()
                .map(|n| n.as_map().unwrap().style)
                .collect()
        };
        assert_eq!(styles("s"), [MapStyle::FlowPair, MapStyle::Flow]);
        assert_eq!(styles("t"), [MapStyle::Block]);
    }

    #[test]
    fn syntax_errors_and_empty_documents() {
        assert!(parse_first("a: [unclosed\n").is_err());
        assert!(parse_first("# nothing\n").unwrap().is_none());
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_first(&deep).is_err());
    }
}
