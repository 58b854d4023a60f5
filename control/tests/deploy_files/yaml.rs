//! YAML helpers: multi-document files and dotted-path lookups with errors that name the file,
//! the document and the path.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_yaml::Value;

/// One document of a YAML file.
#[derive(Debug, Clone)]
pub struct Doc {
    pub file: String,
    /// 0-based position in the file.
    pub index: usize,
    pub value: Value,
}

impl fmt::Display for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let name = self
            .value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        write!(f, "{} document {} ({kind} {name})", self.file, self.index)
    }
}

/// Every non-empty document of `text`; a parse error panics with the file name and position.
pub fn docs(file: &str, text: &str) -> Vec<Doc> {
    let mut out = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).unwrap_or_else(|e| panic!("{file}: {e}"));
        if !value.is_null() {
            out.push(Doc {
                file: file.to_string(),
                index,
                value,
            });
        }
    }
    out
}

/// The value at a dotted path (`spec.template.metadata.labels`); numbers index sequences.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) if v.is_sequence() => v.get(i),
            _ => v.get(key),
        })
}

/// The string at `path`, or a panic naming `ctx` and the path.
pub fn str_at<'a>(v: &'a Value, path: &str, ctx: &dyn fmt::Display) -> &'a str {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{ctx}: {path} must be a string"))
}

/// The unsigned number at `path`, or a panic.
pub fn u64_at(v: &Value, path: &str, ctx: &dyn fmt::Display) -> u64 {
    at(v, path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ctx}: {path} must be a non-negative number"))
}

/// The sequence at `path` (empty when absent).
pub fn seq_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A string-to-string map at `path` (labels, selectors), or a panic on other shapes.
pub fn labels_at(v: &Value, path: &str, ctx: &dyn fmt::Display) -> BTreeMap<String, String> {
    let Some(m) = at(v, path) else {
        return BTreeMap::new();
    };
    let m = m
        .as_mapping()
        .unwrap_or_else(|| panic!("{ctx}: {path} must be a map"));
    m.iter()
        .map(|(k, v)| {
            let k = k
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: {path} has a non-string key"));
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: {path}.{k} must be a string"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// True when every pair of `selector` is in `labels` (and the selector is not empty).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A string list (command lines), or a panic.
pub fn strings(v: &[Value], ctx: &dyn fmt::Display) -> Vec<String> {
    v.iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("{ctx}: argument {other:?} must be a string"),
        })
        .collect()
}
