//! Label selectors: the string syntax of `?labelSelector=` and the structured `LabelSelector`
//! of workload specs, both turned into one [`Selector`] that matches label sets.
//!
//! The grammar, error messages and matching rules follow upstream's `labels` package:
//! `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, and the integer comparisons
//! `a>1` / `a<1` that upstream's string parser also accepts (never produced from a `LabelSelector`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::status::{FieldError, FieldPath, aggregate_message};
use crate::validation::{is_label_key, is_label_value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// Anything labels can be read from.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for [(&str, &str)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equals => "=",
            Self::DoubleEquals => "==",
            Self::NotEquals => "!=",
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Exists => "exists",
            Self::DoesNotExist => "!",
            Self::GreaterThan => "gt",
            Self::LessThan => "lt",
        }
    }
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and de-duplicated, as upstream's string set yields them.
    values: Vec<String>,
}

impl Requirement {
    /// Builds a validated requirement; errors carry upstream's field paths (`key`, `values[0][k]`).
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        Self::with_path(key, operator, values, &FieldPath::default())
    }

    fn with_path(
        key: &str,
        operator: Operator,
        mut values: Vec<String>,
        path: &FieldPath,
    ) -> Result<Self, SelectorError> {
        let mut errs: Vec<FieldError> = Vec::new();
        let msgs = is_label_key(key);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&path.child("key"), key, &msgs.join("; ")));
        }
        let vpath = path.child("values");
        let json_values = || Value::from(values.clone());
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(FieldError::invalid(
                &vpath,
                json_values(),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => errs
                .push(FieldError::invalid(
                    &vpath,
                    json_values(),
                    "exact-match compatibility requires one single value",
                )),
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(FieldError::invalid(
                    &vpath,
                    json_values(),
                    "values set must be empty for exists and does not exist",
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        &vpath,
                        json_values(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            &vpath.index(i),
                            v.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_label_value(v);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    &vpath.index(i).key(key),
                    v.as_str(),
                    &msgs.join("; "),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(SelectorError(aggregate_message(&errs)));
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key: key.to_string(),
            operator,
            values,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotIn | Operator::NotEquals => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A conjunction of requirements. The empty selector matches everything; [`Selector::nothing`]
/// (what a missing `LabelSelector` means) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn nothing() -> Self {
        Self {
            requirements: vec![],
            nothing: true,
        }
    }

    /// Parses the string form (`?labelSelector=`, `kubectl -l`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Upstream's `LabelSelectorAsSelector`: `None` selects nothing, an empty selector everything.
    pub fn from_label_selector(ls: Option<&LabelSelector>) -> Result<Self, SelectorError> {
        let Some(ls) = ls else {
            return Ok(Self::nothing());
        };
        let mut reqs = Vec::new();
        for (k, v) in ls.match_labels.iter().flatten() {
            reqs.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in ls.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError(format!(
                        "{} is not a valid label selector operator",
                        crate::status::go_quote(other)
                    )));
                }
            };
            reqs.push(Requirement::new(
                &expr.key,
                op,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements: reqs,
            nothing: false,
        })
    }

    /// The same from the raw JSON of a `LabelSelector` (`spec.selector` of a stored object).
    pub fn from_label_selector_json(v: Option<&Value>) -> Result<Self, SelectorError> {
        match v {
            None | Some(Value::Null) => Ok(Self::nothing()),
            Some(v) => {
                let ls: LabelSelector = serde_json::from_value(v.clone())
                    .map_err(|e| SelectorError(format!("invalid label selector: {e}")))?;
                Self::from_label_selector(Some(&ls))
            }
        }
    }

    /// A selector matching exactly this set (`spec.selector` of a Service).
    pub fn from_map<'a>(set: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for (k, v) in set {
            reqs.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements: reqs,
            nothing: false,
        })
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches `metadata.labels` of a JSON object (no labels = the empty set).
    pub fn matches_object(&self, obj: &Value) -> bool {
        let empty = serde_json::Map::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.matches(labels)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    In,
    NotIn,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Not => "!",
            Tok::Eq => "=",
            Tok::DoubleEq => "==",
            Tok::NotEq => "!=",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }

    /// In value positions `in`/`notin` are plain words (`a in (in)` is fine).
    fn as_value(&self) -> Tok {
        match self {
            Tok::In | Tok::NotIn => Tok::Ident(self.literal().to_string()),
            t => t.clone(),
        }
    }
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn symbol(s: &[u8]) -> Option<Tok> {
    Some(match s {
        b"!" => Tok::Not,
        b"!=" => Tok::NotEq,
        b"(" => Tok::Open,
        b")" => Tok::Close,
        b"," => Tok::Comma,
        b"=" => Tok::Eq,
        b"==" => Tok::DoubleEq,
        b">" => Tok::Gt,
        b"<" => Tok::Lt,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= b.len() {
            out.push(Tok::End);
            return out;
        }
        if is_special(b[i]) {
            // longest special-symbol token, like upstream's scanner
            let mut best = None;
            let mut j = i;
            while j < b.len() && is_special(b[j]) {
                match symbol(&b[i..=j]) {
                    Some(t) => best = Some((t, j + 1)),
                    None if best.is_some() => break,
                    None => {}
                }
                j += 1;
            }
            match best {
                Some((t, end)) => {
                    out.push(t);
                    i = end;
                }
                None => {
                    i = j;
                }
            }
        } else {
            let start = i;
            while i < b.len() && !is_special(b[i]) && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            let word = &s[start..i];
            out.push(match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                w => Tok::Ident(w.to_string()),
            });
        }
    }
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Tok {
        self.tokens.get(self.pos).cloned().unwrap_or(Tok::End).as_value()
    }

    fn next_raw(&mut self) -> Tok {
        let t = self.tokens.get(self.pos).cloned().unwrap_or(Tok::End);
        self.pos += 1;
        t
    }

    fn next(&mut self) -> Tok {
        self.next_raw().as_value()
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.peek() {
                Tok::Ident(_) | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| SelectorError(format!("unable to parse requirement: {}", e.0)))?;
                    reqs.push(r);
                    match self.next() {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let t = self.peek();
                            if !matches!(t, Tok::Ident(_) | Tok::Not) {
                                return Err(SelectorError(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut op = None;
        let mut tok = self.next();
        if tok == Tok::Not {
            op = Some(Operator::DoesNotExist);
            tok = self.next();
        }
        let Tok::Ident(key) = tok else {
            return Err(SelectorError(format!(
                "found '{}', expected: identifier",
                tok.literal()
            )));
        };
        let msgs = is_label_key(&key);
        if !msgs.is_empty() {
            // Upstream validates the key here against its nil root path, which prints as `<nil>`.
            let e = FieldError::invalid(&FieldPath::new("<nil>"), key.as_str(), &msgs.join("; "));
            return Err(SelectorError(e.to_string()));
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        if let Some(op) = op {
            return Requirement::new(&key, op, vec![]);
        }
        let op = match self.next_raw() {
            Tok::In => Operator::In,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEq => Operator::NotEquals,
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                )));
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    fn set_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let t = self.next();
        if t != Tok::Open {
            return Err(SelectorError(format!("found '{}' expected: '('", t.literal())));
        }
        let look = self.peek();
        match look {
            Tok::Ident(_) | Tok::Comma => {
                let vals = self.identifier_list()?;
                if self.next() != Tok::Close {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ')'",
                        look.literal()
                    )));
                }
                Ok(vals)
            }
            Tok::Close => {
                self.next();
                Ok(vec![String::new()])
            }
            t => Err(SelectorError(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            ))),
        }
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut vals: Vec<String> = Vec::new();
        loop {
            match self.next() {
                Tok::Ident(v) => {
                    vals.push(v);
                    match self.peek() {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(vals),
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or ')'",
                                t.literal()
                            )));
                        }
                    }
                }
                Tok::Comma => {
                    // empty values around commas: `(,a)`, `(a,)`, `(a,,b)`
                    if vals.is_empty() {
                        vals.push(String::new());
                    }
                    match self.peek() {
                        Tok::Close => {
                            vals.push(String::new());
                            return Ok(vals);
                        }
                        Tok::Comma => vals.push(String::new()),
                        _ => {}
                    }
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    )));
                }
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next() {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(SelectorError(format!(
                "found '{}', expected: identifier",
                t.literal()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    #[test]
    fn equality_operators_match_present_values() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(sel("app=web").matches(&l));
        assert!(sel("app==web").matches(&l));
        assert!(sel("app = web , tier=front").matches(&l));
        assert!(!sel("app=db").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(
            sel("missing!=x").matches(&l),
            "!= matches when the label is absent"
        );
        assert!(!sel("app!=web").matches(&l));
    }

    #[test]
    fn set_operators_and_existence() {
        let l = labels(&[("env", "prod"), ("app", "web")]);
        assert!(sel("env in (prod, staging)").matches(&l));
        assert!(!sel("env notin (prod)").matches(&l));
        assert!(sel("team notin (a)").matches(&l));
        assert!(sel("app").matches(&l));
        assert!(!sel("!app").matches(&l));
        assert!(sel("!team").matches(&l));
        assert!(sel("app,!team,env in (prod)").matches(&l));
    }

    #[test]
    fn in_and_notin_are_plain_words_in_value_positions() {
        let l = labels(&[("in", "notin")]);
        assert!(sel("in in (notin)").matches(&l));
        assert!(sel("in=notin").matches(&l));
    }

    #[test]
    fn integer_comparisons_follow_upstream() {
        let l = labels(&[("gen", "5"), ("name", "x")]);
        assert!(sel("gen>4").matches(&l));
        assert!(!sel("gen<5").matches(&l));
        assert!(
            !sel("name>1").matches(&l),
            "non-integer label values never compare"
        );
        assert!(!sel("missing<100").matches(&l));
        assert_eq!(
            Selector::parse("gen>x").unwrap_err().to_string(),
            r#"unable to parse requirement: values[0]: Invalid value: "x": for 'Gt', 'Lt' operators, the value must be an integer"#
        );
    }

    #[test]
    fn empty_string_selects_everything() {
        let s = sel("");
        assert!(s.is_everything());
        assert!(s.matches(&labels(&[])));
        assert!(sel("  ").is_everything());
    }

    #[test]
    fn empty_values_are_allowed() {
        let l = labels(&[("a", "")]);
        assert!(sel("a=").matches(&l));
        assert!(sel("a in ()").matches(&l));
        assert!(sel("a in (,x)").matches(&l));
    }

    #[test]
    fn syntax_errors_read_like_upstream() {
        let err = |s: &str| Selector::parse(s).unwrap_err().to_string();
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(
            err("=b"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
    }

    #[test]
    fn invalid_keys_and_values_are_rejected_with_paths() {
        let e = Selector::parse("a b=c").unwrap_err().to_string();
        assert!(e.starts_with("unable to parse requirement: found 'b'"), "{e}");
        let e = Selector::parse("-a=b").unwrap_err().to_string();
        assert!(
            e.starts_with(
                r#"unable to parse requirement: <nil>: Invalid value: "-a": name part must consist of"#
            ),
            "{e}"
        );
        let e = Selector::parse("a=-b").unwrap_err().to_string();
        assert!(
            e.starts_with(
                r#"unable to parse requirement: values[0][a]: Invalid value: "-b": a valid label must"#
            ),
            "{e}"
        );
    }

    #[test]
    fn display_sorts_requirements_by_key() {
        assert_eq!(sel("z=1,a in (y,x),!b,c").to_string(), "a in (x,y),!b,c,z=1");
        assert_eq!(sel("x>3,y!=2").to_string(), "x>3,y!=2");
    }

    #[test]
    fn label_selector_conversion_handles_nil_empty_and_expressions() {
        assert!(Selector::from_label_selector(None).unwrap().is_nothing());
        assert!(!Selector::from_label_selector(None).unwrap().matches(&labels(&[])));
        assert!(
            Selector::from_label_selector(Some(&LabelSelector::default()))
                .unwrap()
                .is_everything()
        );
        let ls = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let s = Selector::from_label_selector(Some(&ls)).unwrap();
        assert_eq!(s.to_string(), "app=web,!canary,env in (prod)");
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("canary", "1")])));
    }

    #[test]
    fn label_selector_conversion_rejects_unknown_operators_and_empty_in() {
        let mut ls = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_label_selector(Some(&ls)).unwrap_err().to_string(),
            r#""Gt" is not a valid label selector operator"#
        );
        ls.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: "In".into(),
            values: None,
        }]);
        assert_eq!(
            Selector::from_label_selector(Some(&ls)).unwrap_err().to_string(),
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        );
    }

    #[test]
    fn selectors_match_json_objects_and_raw_label_selectors() {
        let obj = serde_json::json!({"metadata": {"labels": {"app": "web"}}});
        assert!(sel("app=web").matches_object(&obj));
        assert!(sel("!app2").matches_object(&serde_json::json!({})));
        let spec = serde_json::json!({"matchLabels": {"app": "web"}});
        assert!(
            Selector::from_label_selector_json(Some(&spec))
                .unwrap()
                .matches_object(&obj)
        );
        assert!(Selector::from_label_selector_json(None).unwrap().is_nothing());
        let svc = Selector::from_map([("app", "web")]).unwrap();
        assert!(svc.matches(&[("app", "web")][..]));
    }
}
