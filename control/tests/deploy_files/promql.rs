//! A small PromQL scanner for the dashboard test: the metric selectors of an expression (name
//! and label matchers), the label lists of its `by`/`without`/`on`/`ignoring`/`group_left`/
//! `group_right` clauses, and the functions it calls. It skips strings, numbers and range
//! brackets; any other bare identifier is reported as unknown, so a query cannot name a
//! metric the scanner does not see.

/// One label matcher: label, operator (`=`, `!=`, `=~`, `!~`), value.
pub type Matcher = (String, String, String);

/// A `metric{label op "value", ..}` selector.
#[derive(Debug, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

/// What an expression uses.
#[derive(Debug, Default, PartialEq)]
pub struct Expr {
    pub selectors: Vec<Selector>,
    /// Label lists of grouping and vector-matching clauses, with the clause keyword.
    pub groupings: Vec<(String, Vec<String>)>,
    pub functions: Vec<String>,
}

const CLAUSES: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const FUNCTIONS: &[&str] = &[
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "time",
    "scalar",
    "vector",
    "clamp_min",
    "topk",
    "abs",
];
const OPERATORS: &[&str] = &["and", "or", "unless", "bool", "offset"];

pub fn scan(expr: &str) -> Result<Expr, String> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Expr::default();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' {
            i = end_of_string(&s, i)?;
        } else if c == '[' {
            i += s[i..].iter().position(|&x| x == ']').ok_or("unclosed [")? + 1;
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = skip_ws(i);
            if CLAUSES.contains(&word.as_str()) {
                if s.get(next) == Some(&'(') {
                    let close = next
                        + s[next..]
                            .iter()
                            .position(|&x| x == ')')
                            .ok_or("unclosed clause")?;
                    let labels: Vec<String> = s[next + 1..close]
                        .iter()
                        .collect::<String>()
                        .split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect();
                    out.groupings.push((word, labels));
                    i = close + 1;
                } else if !word.starts_with("group_") {
                    return Err(format!("`{word}` without a label list"));
                }
            } else if s.get(next) == Some(&'(')
                || (FUNCTIONS.contains(&word.as_str()) && starts_clause(&s[next..]))
            {
                if !FUNCTIONS.contains(&word.as_str()) {
                    return Err(format!("unknown function `{word}`"));
                }
                out.functions.push(word);
            } else if OPERATORS.contains(&word.as_str()) {
            } else if word.starts_with("switchyard_") {
                let mut matchers = Vec::new();
                if s.get(i) == Some(&'{') {
                    let (m, end) = matchers_at(&s, i)?;
                    matchers = m;
                    i = end;
                }
                out.selectors.push(Selector {
                    metric: word,
                    matchers,
                });
            } else {
                return Err(format!(
                    "unknown identifier `{word}` (not a switchyard_ metric, function or keyword)"
                ));
            }
        } else if c == '{' {
            return Err("a selector without a metric name".into());
        } else {
            i += 1;
        }
    }
    Ok(out)
}

/// `by (` or `without (` after an aggregation's name.
fn starts_clause(rest: &[char]) -> bool {
    let word: String = rest
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    word == "by" || word == "without"
}

fn end_of_string(s: &[char], start: usize) -> Result<usize, String> {
    let quote = s[start];
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("unclosed string".into())
}

/// `{label op "value", ...}` starting at `s[start] == '{'`; returns the matchers and the
/// index after `}`.
fn matchers_at(s: &[char], start: usize) -> Result<(Vec<Matcher>, usize), String> {
    let mut i = start + 1;
    let mut out = Vec::new();
    loop {
        while i < s.len() && (s[i].is_whitespace() || s[i] == ',') {
            i += 1;
        }
        if s.get(i) == Some(&'}') {
            return Ok((out, i + 1));
        }
        let l0 = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_') {
            i += 1;
        }
        let label: String = s[l0..i].iter().collect();
        if label.is_empty() {
            return Err(format!(
                "bad matcher at {:?}",
                s[l0..].iter().collect::<String>()
            ));
        }
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        let o0 = i;
        while i < s.len() && "=!~".contains(s[i]) {
            i += 1;
        }
        let op: String = s[o0..i].iter().collect();
        if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
            return Err(format!("bad operator {op:?} after {label}"));
        }
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        if !matches!(s.get(i), Some('"') | Some('\'')) {
            return Err(format!("{label}{op} needs a quoted value"));
        }
        let end = end_of_string(s, i)?;
        out.push((label, op, s[i + 1..end - 1].iter().collect()));
        i = end;
    }
}

#[test]
fn scans_selectors_clauses_and_functions() {
    let e = scan(r#"histogram_quantile(0.99, sum by (route, le) (rate(switchyard_x_bucket{a=~"$v", b!="ok"}[$__rate_interval]))) / on (route) group_left max(switchyard_y)"#).unwrap();
    assert_eq!(e.selectors.len(), 2);
    assert_eq!(e.selectors[0].metric, "switchyard_x_bucket");
    assert_eq!(
        e.selectors[0].matchers,
        vec![
            ("a".into(), "=~".into(), "$v".into()),
            ("b".into(), "!=".into(), "ok".into())
        ]
    );
    assert_eq!(e.selectors[1].matchers, vec![]);
    assert_eq!(
        e.groupings,
        vec![
            ("by".into(), vec!["route".into(), "le".into()]),
            ("on".into(), vec!["route".into()])
        ]
    );
    assert_eq!(e.functions, ["histogram_quantile", "sum", "rate", "max"]);
    assert!(
        scan("sum(rate(http_requests_total[5m]))").is_err(),
        "a foreign metric is unknown"
    );
    assert!(scan(r#"{__name__="switchyard_x"}"#).is_err());
    assert!(scan("frobnicate(switchyard_x)").is_err());
}
