//! Splits a YAML stream into its documents' text, so each document parses (and is positioned) on its own.
//!
//! A line that is `---` (optionally followed by a space and content) starts a document, and a
//! `...` line ends one; YAML forbids both inside content, so splitting on them is exact. `%`
//! directive lines stay with the document they precede. Splitting first gives every document
//! a stable index and a line offset, lets a bad document fail alone, and lets the span index
//! (yaml-rust2) parse only the documents that have an error.

/// One document's text and where it starts in its file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk<'a> {
    pub text: &'a str,
    /// Lines before this chunk in the file (add to a chunk-relative 1-based line).
    pub line_offset: usize,
}

impl Chunk<'_> {
    /// True when the chunk holds no node: only blank lines, comments and markers.
    pub(crate) fn is_blank(&self) -> bool {
        self.text.lines().all(|line| {
            let t = line.trim();
            t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with("--- #")
        })
    }
}

/// True when the chunk's last line is a `...` document end marker.
pub(crate) fn ends_document(text: &str) -> bool {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| {
            let l = l.trim_end();
            l == "..." || l.starts_with("... ")
        })
}

/// Splits `contents` into document chunks (blank chunks included; callers skip them).
pub(crate) fn split_documents(contents: &str) -> Vec<Chunk<'_>> {
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    let mut chunks = Vec::new();
    // (byte offset, line index) of the current chunk's start.
    let mut start = (0usize, 0usize);
    // Start of a run of directive lines right before a marker, if any.
    let mut directives: Option<(usize, usize)> = None;
    let mut offset = 0usize;
    for (index, line) in contents.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_start_marker(bare) {
            let split = directives.take().unwrap_or((offset, index));
            if split.0 > start.0 {
                chunks.push(chunk(contents, start, split.0));
            }
            start = split;
        } else if bare == "..." || bare.starts_with("... ") {
            let end = offset + line.len();
            chunks.push(chunk(contents, start, end));
            start = (end, index + 1);
            directives = None;
        } else if bare.starts_with('%') {
            directives.get_or_insert((offset, index));
        } else if !bare.trim().is_empty() && !bare.trim_start().starts_with('#') {
            directives = None;
        }
        offset += line.len();
    }
    if start.0 < contents.len() {
        chunks.push(chunk(contents, start, contents.len()));
    }
    chunks
}

fn chunk(contents: &str, start: (usize, usize), end: usize) -> Chunk<'_> {
    Chunk {
        text: &contents[start.0..end],
        line_offset: start.1,
    }
}

fn is_start_marker(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(usize, &str)> {
        split_documents(s)
            .into_iter()
            .map(|c| (c.line_offset, c.text))
            .collect()
    }

    #[test]
    fn splits_on_markers_and_keeps_line_offsets() {
        let s = "a: 1\n---\nb: 2\n--- # two\nc: 3\n";
        assert_eq!(
            texts(s),
            [(0, "a: 1\n"), (1, "---\nb: 2\n"), (3, "--- # two\nc: 3\n")]
        );
    }

    #[test]
    fn leading_marker_and_empty_documents() {
        let s = "# header\n---\n---\nx: 1\n---\n";
        let chunks = split_documents(s);
        assert_eq!(chunks.len(), 4);
        assert!(chunks[0].is_blank() && chunks[1].is_blank() && chunks[3].is_blank());
        assert!(!chunks[2].is_blank());
        assert_eq!(chunks[2].line_offset, 2);
    }

    #[test]
    fn document_end_marker_and_directives() {
        let s = "a: 1\n...\n%YAML 1.2\n---\nb: 2\n";
        assert_eq!(
            texts(s),
            [(0, "a: 1\n...\n"), (2, "%YAML 1.2\n---\nb: 2\n")]
        );
    }

    #[test]
    fn marker_lookalikes_inside_content_do_not_split() {
        let s = "a: |\n  ---\n  text\nb: ---x\n----\n";
        assert_eq!(split_documents(s).len(), 1);
    }

    #[test]
    fn crlf_and_bom() {
        let s = "\u{feff}a: 1\r\n---\r\nb: 2\r\n";
        assert_eq!(texts(s), [(0, "a: 1\r\n"), (1, "---\r\nb: 2\r\n")]);
    }
}
