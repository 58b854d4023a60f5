//! Field path → line:column maps for one YAML document, built on demand with yaml-rust2's event parser.
//!
//! Serde drops positions, so semantic errors carry a field path (`spec.rules[1].name`) and are
//! positioned afterwards by re-reading only the documents that have errors. Rule lines, which
//! every compiled rule carries, come from [`rule_lines`], a cheap line scan of block-style YAML
//! that falls back to the span index when the layout is anything else.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Positions of the nodes of one document, keyed by field path; lines and columns are 1-based
/// and relative to the file (the chunk's line offset is added).
#[derive(Debug, Default)]
pub(crate) struct SpanIndex {
    spans: HashMap<String, (usize, usize)>,
    /// Positions of mapping keys, keyed by the path of their value.
    keys: HashMap<String, (usize, usize)>,
    start: (usize, usize),
}

enum Frame {
    /// A mapping; `key` is the key whose value comes next, `None` while a key is expected.
    /// `pending` holds the mapping's own path and mark until its first key is seen: a block
    /// mapping's start mark is at its first `:`, so the first key's position is used instead.
    Map {
        key: Option<String>,
        pending: Option<(String, (usize, usize))>,
    },
    Seq {
        index: usize,
    },
    /// A complex (non-scalar) mapping key being skipped.
    SkippedKey,
}

impl SpanIndex {
    /// Indexes the first document of `text`. A syntax error stops indexing; what was seen stays.
    pub(crate) fn build(text: &str, line_offset: usize) -> Self {
        let mut index = SpanIndex {
            spans: HashMap::new(),
            keys: HashMap::new(),
            start: (line_offset + 1, 1),
        };
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        let pos = |m: Marker| (m.line() + line_offset, m.col() + 1);
        let mut started = false;
        while let Ok((event, mark)) = parser.next_token() {
            match event {
                Event::StreamEnd | Event::DocumentEnd => {
                    if started {
                        break;
                    }
                }
                Event::StreamStart | Event::Nothing => {}
                Event::DocumentStart => {
                    started = true;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    if let Some(Frame::Map {
                        pending: Some((path, at)),
                        ..
                    }) = stack.pop()
                    {
                        index.put(path, at);
                    }
                    index.advance(&mut stack);
                }
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map {
                        key: key @ None,
                        pending,
                    }) = stack.last_mut()
                    {
                        *key = Some(value);
                        if let Some((path, _)) = pending.take() {
                            index.put(path, pos(mark));
                        }
                        let path = path_of(&stack);
                        // The last occurrence wins: that is the one a "duplicate" error is about.
                        index.keys.insert(path, pos(mark));
                    } else if !matches!(stack.last(), Some(Frame::SkippedKey)) {
                        index.record(&stack, pos(mark));
                        index.advance(&mut stack);
                    }
                }
                Event::Alias(_) => {
                    if let Some(Frame::Map {
                        key: key @ None, ..
                    }) = stack.last_mut()
                    {
                        *key = Some(String::from("?"));
                    } else {
                        index.record(&stack, pos(mark));
                        index.advance(&mut stack);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }))
                        || matches!(stack.last(), Some(Frame::SkippedKey));
                    if is_key {
                        stack.push(Frame::SkippedKey);
                        continue;
                    }
                    if matches!(event, Event::MappingStart(..)) {
                        let path = path_of(&stack);
                        stack.push(Frame::Map {
                            key: None,
                            pending: Some((path, pos(mark))),
                        });
                    } else {
                        index.record(&stack, pos(mark));
                        stack.push(Frame::Seq { index: 0 });
                    }
                }
            }
        }
        index
    }

    fn record(&mut self, stack: &[Frame], at: (usize, usize)) {
        self.put(path_of(stack), at);
    }

    fn put(&mut self, path: String, at: (usize, usize)) {
        if path.is_empty() {
            self.start = at;
        }
        self.spans.entry(path).or_insert(at);
    }

    /// After a value completes: the parent mapping expects a key, the parent sequence moves on.
    fn advance(&mut self, stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            Some(Frame::SkippedKey) | None => {}
        }
    }

    /// The position of the key of the mapping entry at `path`, if it is one.
    pub(crate) fn lookup_key(&self, path: &str) -> Option<(usize, usize)> {
        self.keys.get(path).copied()
    }

    /// The position of `path`, or of its nearest recorded ancestor, or of the document.
    pub(crate) fn lookup(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(&at) = self.spans.get(path) {
                return at;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None if !path.is_empty() => path = "",
                None => return self.start,
            }
        }
    }
}

/// The field path of the node the stack points at (`spec.rules[1].name`).
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Map { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Seq { index } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
            Frame::Map { key: None, .. } | Frame::SkippedKey => {}
        }
    }
    path
}

/// The 1-based, chunk-relative line of each item of `spec.rules` when the document is plain
/// block-style YAML; `None` when it is not (the caller then uses the [`SpanIndex`]).
pub(crate) fn rule_lines(text: &str) -> Option<Vec<usize>> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    });
    // `spec:` at the top level.
    lines.find(|(_, l)| is_key_line(l, "spec"))?;
    // Its children's indentation, then `rules:` among them.
    let (_, first) = lines.next()?;
    let child = indent(first);
    if child == 0 {
        return None;
    }
    let mut line = first;
    while !(indent(line) == child && is_key_line(&line[child..], "rules")) {
        line = lines.next()?.1;
        if indent(line) < child {
            return None;
        }
    }
    // The items: `-` lines at the first item's indentation.
    let mut items = Vec::new();
    let mut item_indent = None;
    for (number, line) in lines {
        let ind = indent(line);
        let at = &line[ind..];
        let is_item = at == "-" || at.starts_with("- ");
        match item_indent {
            None if is_item && ind >= child => item_indent = Some(ind),
            None => return None,
            Some(i) if ind < i || (ind == i && !is_item) => break,
            Some(_) => {}
        }
        if Some(ind) == item_indent && is_item {
            items.push(number + 1);
        }
    }
    Some(items)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `key:` alone on its line (a trailing comment allowed): the value is a block below.
fn is_key_line(line: &str, key: &str) -> bool {
    line.strip_prefix(key)
        .and_then(|r| r.strip_prefix(':'))
        .is_some_and(|r| {
            let r = r.trim();
            r.is_empty() || r.starts_with('#')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: cart          # the cart service
  namespace: shop
spec:
  parentRefs:
    - name: edge
      sectionName: https
  hostnames: [\"shop.example.com\", \"*.shop.example.com\"]
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /cart
      backendRefs:
        - name: cart-v1
          weight: 90
        - {name: cart-v2, weight: 10}
    # a comment between rules
    - name: fallback
      backendRefs:
      - name: cart-v1
";

    #[test]
    fn indexes_block_and_flow_nodes_with_file_positions() {
        let idx = SpanIndex::build(ROUTE, 10);
        assert_eq!(idx.lookup("metadata.name"), (14, 9));
        assert_eq!(idx.lookup("spec.parentRefs[0].sectionName"), (19, 20));
        assert_eq!(idx.lookup("spec.hostnames[1]"), (20, 35));
        assert_eq!(idx.lookup("spec.rules[0].matches[0].path.value"), (25, 20));
        assert_eq!(idx.lookup("spec.rules[0].backendRefs[1].name"), (29, 18));
        assert_eq!(idx.lookup("spec.rules[0].backendRefs[1].weight"), (29, 35));
        assert_eq!(idx.lookup("spec.rules[1].name"), (31, 13));
        assert_eq!(idx.lookup("spec.rules[1].backendRefs[0].name"), (33, 15));
    }

    #[test]
    fn lookup_falls_back_to_the_nearest_ancestor() {
        let idx = SpanIndex::build(ROUTE, 0);
        assert_eq!(
            idx.lookup("spec.rules[1].timeouts.request"),
            idx.lookup("spec.rules[1]")
        );
        assert_eq!(idx.lookup("spec.rules[1]"), (21, 7));
        assert_eq!(idx.lookup("spec.nothing"), idx.lookup("spec"));
        assert_eq!(idx.lookup("bogus"), (1, 1));
        assert_eq!(idx.lookup(""), (1, 1));
    }

    #[test]
    fn rule_lines_agree_with_the_span_index() {
        let idx = SpanIndex::build(ROUTE, 0);
        let lines = rule_lines(ROUTE).unwrap();
        assert_eq!(lines, [12, 21]);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(idx.lookup(&format!("spec.rules[{i}]")).0, *line);
        }
    }

    #[test]
    fn rule_lines_handles_unindented_sequences_and_gives_up_on_flow_style() {
        let block =
            "spec:\n  rules:\n  - backendRefs: []\n  - name: b\n    matches: []\n  hostnames: []\n";
        assert_eq!(rule_lines(block), Some(vec![3, 4]));
        assert_eq!(rule_lines("spec:\n  rules: [{name: a}]\n"), None);
        assert_eq!(rule_lines("spec: {rules: []}\n"), None);
        assert_eq!(rule_lines("spec:\n  hostnames: []\n"), None);
        assert_eq!(rule_lines("kind: X\n"), None);
    }
}
