//! The document limits async-graphql does not have: a token budget and a nesting cap
//! checked on the raw text *before* it is parsed (so a bomb never reaches the parser),
//! then aliases, root fields and text sizes on the parsed document and its variables.
//! Depth, complexity, directives per field and recursion are the schema builder's own
//! limits (`build_schema`). Every refusal is `VALIDATION_ERROR`, answered before anything
//! executes. Every door runs a client's request through [`DocumentLimits::admit`] (by way of
//! [`super::execute`]); they are not a schema extension, because any extension makes
//! async-graphql route every field's resolution through the extension chain (boxed futures
//! and registry look-ups per field; a story page got 6 % faster without them).

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    Directive, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Positioned, Request, ServerError, Value, Variables,
};

use crate::config::GraphqlConfig;
use crate::domain::char_len;
use crate::error::ErrorCode;

/// The limits a client's document must keep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DocumentLimits {
    /// Checked on the raw text, before parsing.
    pub max_tokens: usize,
    pub max_nesting: usize,
    /// Checked on the parsed document and its variables.
    pub rules: DocumentRules,
}

impl DocumentLimits {
    pub(crate) fn from_config(config: &GraphqlConfig) -> DocumentLimits {
        DocumentLimits {
            max_tokens: config.max_tokens,
            // Brackets of every kind: selection sets, arguments, lists, objects.
            max_nesting: config.max_depth.max(config.max_recursion) + 8,
            rules: DocumentRules {
                max_aliases: config.max_aliases,
                max_root_fields: config.max_root_fields,
                max_selections: config.max_selections,
                max_fragment_depth: config.max_recursion,
                introspection: config.introspection,
                max_text: config.max_text_chars,
            },
        }
    }

    /// The checks on raw text (what must hold before anything parses it).
    pub(crate) fn scan(&self, query: &str) -> Result<(), String> {
        scan(query, self.max_tokens, self.max_nesting)
    }

    /// Admits a client's request: the text is scanned, then parsed (the document stays in
    /// the request, so execution does not parse it again), then the document and its
    /// variables are checked.
    pub(crate) fn admit(&self, request: &mut Request) -> Result<(), ServerError> {
        self.scan(&request.query).map_err(refuse)?;
        let document = request.parsed_query()?;
        check_document(document, self.rules).map_err(refuse)?;
        check_variables(&request.variables, self.rules.max_text).map_err(refuse)
    }
}

/// What [`check_document`] enforces on a parsed document.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DocumentRules {
    pub max_aliases: usize,
    pub max_root_fields: usize,
    /// Selections per operation with every fragment expanded where it is spread.
    pub max_selections: usize,
    /// Fragments spread inside fragments, at most this deep.
    pub max_fragment_depth: usize,
    /// When false, `__schema` and `__type` are refused outright (async-graphql would
    /// answer them with a silent `null`); `__typename` stays.
    pub introspection: bool,
    /// Longest string literal, in characters.
    pub max_text: usize,
}

fn refuse(message: impl Into<String>) -> ServerError {
    let mut err = ServerError::new(message, None);
    err.extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set("code", ErrorCode::ValidationError.as_str());
    err
}

/// Counts lexical tokens (GraphQL's punctuators, names, numbers, strings; commas and
/// comments are ignored) and bracket nesting, stopping at the first limit crossed.
/// Unterminated strings and stray characters are left for the parser to report.
pub(crate) fn scan(query: &str, max_tokens: usize, max_nesting: usize) -> Result<(), String> {
    let bytes = query.as_bytes();
    let mut i = 0;
    let mut tokens = 0usize;
    let mut depth = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' => i = string_end(bytes, i),
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > max_nesting {
                    return Err(format!(
                        "the document nests deeper than {max_nesting} levels"
                    ));
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            b'-' | b'0'..=b'9' => i = number_end(bytes, i),
            lead => {
                // Punctuators (`! $ & : = @ |`), a byte-order mark, or a stray character
                // (one token either way): skip one UTF-8 sequence, judged by its lead byte.
                i += match lead {
                    0xF0..=0xFF => 4,
                    0xE0..=0xEF => 3,
                    0xC0..=0xDF => 2,
                    _ => 1,
                };
            }
        }
        tokens += 1;
        if tokens > max_tokens {
            return Err(format!("the document has more than {max_tokens} tokens"));
        }
    }
    Ok(())
}

/// Where the string (block or plain) starting at `bytes[i]` ends (its end, unterminated).
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    if bytes[i..].starts_with(b"\"\"\"") {
        i += 3;
        while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
            i += if bytes[i..].starts_with(b"\\\"\"\"") {
                4
            } else {
                1
            };
        }
        (i + 3).min(bytes.len())
    } else {
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        (i + 1).min(bytes.len())
    }
}

/// Where the number starting at `bytes[i]` ends. GraphQL's number is
/// -?digits(.digits)?([eE][+-]?digits)? and no more, as the parser reads it (`0-0-0` is
/// three numbers, not one).
fn number_end(bytes: &[u8], i: usize) -> usize {
    let digits = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits(i + 1);
    if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
        i = digits(i + 1);
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < bytes.len() && matches!(bytes[j], b'+' | b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            i = digits(j);
        }
    }
    i
}

/// Aliases in the whole document, root fields per operation (fragments at the root
/// expanded, each once), and the length of every string literal.
pub(crate) fn check_document(
    document: &ExecutableDocument,
    rules: DocumentRules,
) -> Result<(), String> {
    let DocumentRules {
        max_aliases,
        max_root_fields,
        max_selections,
        max_fragment_depth,
        introspection,
        max_text,
    } = rules;
    check_selections(document, introspection, max_aliases, max_text)?;
    let definition_directives = document
        .operations
        .iter()
        .flat_map(|(_, op)| op.node.directives.iter())
        .chain(
            document
                .fragments
                .values()
                .flat_map(|f| f.node.directives.iter()),
        );
    for directive in definition_directives {
        check_directives(std::slice::from_ref(directive), max_text)?;
    }
    for (_, operation) in document.operations.iter() {
        for variable in &operation.node.variable_definitions {
            if let Some(default) = &variable.node.default_value {
                check_const(
                    &default.node,
                    &format!("${}", variable.node.name.node),
                    max_text,
                )?;
            }
        }
        let mut expansion = Expansion {
            fragments: &document.fragments,
            sizes: HashMap::new(),
            max: max_selections,
            max_depth: max_fragment_depth,
        };
        expansion.size(&operation.node.selection_set.node, 0)?;
        let roots = root_fields(&operation.node.selection_set.node, &document.fragments);
        if roots > max_root_fields {
            return Err(format!(
                "an operation may select at most {max_root_fields} root fields"
            ));
        }
    }
    Ok(())
}

/// Every selection set of the document, walked iteratively (no recursion to exhaust):
/// introspection where it is off, the aliases in all, and the string literals of
/// arguments and directives.
fn check_selections(
    document: &ExecutableDocument,
    introspection: bool,
    max_aliases: usize,
    max_text: usize,
) -> Result<(), String> {
    let mut aliases = 0usize;
    let mut sets: Vec<&SelectionSet> = document
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .collect();
    sets.extend(
        document
            .fragments
            .values()
            .map(|f| &f.node.selection_set.node),
    );
    while let Some(set) = sets.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if !introspection && matches!(field.name.node.as_str(), "__schema" | "__type") {
                        return Err("introspection is disabled on this server".into());
                    }
                    if field.alias.is_some() {
                        aliases += 1;
                        if aliases > max_aliases {
                            return Err(format!(
                                "the document uses more than {max_aliases} aliases"
                            ));
                        }
                    }
                    for (name, value) in &field.arguments {
                        check_value(&value.node, &name.node, max_text)?;
                    }
                    check_directives(&field.directives, max_text)?;
                    sets.push(&field.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    check_directives(&fragment.node.directives, max_text)?;
                    sets.push(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    check_directives(&spread.node.directives, max_text)?;
                }
            }
        }
    }
    Ok(())
}

/// The string literals given to `directives`.
fn check_directives(directives: &[Positioned<Directive>], max_text: usize) -> Result<(), String> {
    for directive in directives {
        for (name, value) in &directive.node.arguments {
            check_value(&value.node, &name.node, max_text)?;
        }
    }
    Ok(())
}

/// Counts an operation's selections as execution would see them: every fragment spread
/// replaced by the fragment's selections, however often it is spread. Each fragment's
/// expanded size is computed once (memoised), so the count costs time linear in the
/// document even when its expansion is exponential (7 fragments each spreading the next
/// 10 times expand to 10⁷ fields from a 636-byte text); it stops at the first limit.
struct Expansion<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Expanded size per fragment; `None` while it is being counted (a cycle).
    sizes: HashMap<&'a str, Option<usize>>,
    max: usize,
    max_depth: usize,
}

impl<'a> Expansion<'a> {
    fn size(&mut self, set: &'a SelectionSet, depth: usize) -> Result<usize, String> {
        let mut total = 0usize;
        for item in &set.items {
            let add = match &item.node {
                Selection::Field(field) => 1 + self.size(&field.node.selection_set.node, depth)?,
                Selection::InlineFragment(f) => self.size(&f.node.selection_set.node, depth)?,
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), depth + 1)?
                }
            };
            total = total.saturating_add(add);
            if total > self.max {
                return Err(format!(
                    "the operation expands to more than {} selections (fragments counted \
                     wherever they are spread)",
                    self.max
                ));
            }
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<usize, String> {
        match self.sizes.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Err(format!("fragment `{name}` spreads itself")),
            None => {}
        }
        // An unknown fragment is the validator's to report; it expands to nothing here.
        let Some(fragment) = self.fragments.get(name) else {
            return Ok(0);
        };
        if depth > self.max_depth {
            return Err(format!(
                "fragments are spread inside each other more than {} deep",
                self.max_depth
            ));
        }
        self.sizes.insert(name, None);
        let size = self.size(&fragment.node.selection_set.node, depth)?;
        self.sizes.insert(name, Some(size));
        Ok(size)
    }
}

/// Root fields of one operation; a fragment spread counts its fields once however
/// often (or cyclically) it is spread.
fn root_fields(
    set: &SelectionSet,
    fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
) -> usize {
    let mut count = 0;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut pending: Vec<&SelectionSet> = vec![set];
    while let Some(set) = pending.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(_) => count += 1,
                Selection::InlineFragment(f) => pending.push(&f.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if seen.insert(name)
                        && let Some(fragment) = fragments.get(name)
                    {
                        pending.push(&fragment.node.selection_set.node);
                    }
                }
            }
        }
    }
    count
}

fn too_long(field: &str, max: usize) -> String {
    format!("`{field}` is longer than {max} characters")
}

/// A literal argument; variables inside it count as null (they are checked on their own).
fn check_value(value: &async_graphql_value::Value, field: &str, max: usize) -> Result<(), String> {
    let literal = value
        .clone()
        .into_const_with(|_| Ok::<_, std::convert::Infallible>(Value::Null));
    match literal {
        Ok(v) => check_const(&v, field, max),
        Err(never) => match never {},
    }
}

fn check_const(value: &Value, field: &str, max: usize) -> Result<(), String> {
    use Value as ConstValue;
    let mut pending = vec![(value, field.to_string())];
    while let Some((value, path)) = pending.pop() {
        match value {
            ConstValue::String(s) if char_len(s) > max => return Err(too_long(&path, max)),
            // PostgreSQL cannot store NUL in `text`; refused on every backend alike.
            ConstValue::String(s) if s.contains('\0') => {
                return Err(format!("`{path}` contains a NUL character (U+0000)"));
            }
            ConstValue::List(items) => pending.extend(items.iter().map(|v| (v, path.clone()))),
            ConstValue::Object(fields) => {
                pending.extend(fields.iter().map(|(k, v)| (v, format!("{path}.{k}"))))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every string inside the variables, however deeply nested, names its path
/// (`$input.theme`).
pub(crate) fn check_variables(variables: &Variables, max: usize) -> Result<(), String> {
    for (name, value) in variables.iter() {
        check_const(value, &format!("${name}"), max)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default longest text (contract §2; `JJONGAL_MAX_TEXT_CHARS`).
    const MAX_TEXT_CHARS: usize = 10_000;

    #[test]
    fn tokens_are_counted_like_graphql_does() {
        let q = "query Q($id: ID!) { story(id: $id) { ...F title @include(if: true) } } \
                 fragment F on Story { id } # a comment { { {";
        // query Q ( $ id : ID ! ) { story ( id : $ id ) { ... F title @ include ( if : true ) } }
        // fragment F on Story { id }
        assert!(scan(q, 37, 10).is_ok());
        assert!(scan(q, 36, 10).is_err());
        // Strings are one token, whatever they hold.
        let strings = r#"{ a(s: "{ { \" { [") b(t: """ { " \""" """) }"#;
        assert!(scan(strings, 14, 2).is_ok());
        assert!(scan(strings, 13, 2).is_err());
        assert!(scan("{a{a{a{a}}}}", 100, 3).is_err());
        // Numbers as GraphQL reads them: `[0-0-0]` is five tokens, `-1.5e+3` one.
        assert!(scan("[0-0-0]", 5, 3).is_ok());
        assert!(scan("[0-0-0]", 4, 3).is_err());
        assert!(scan("-1.5e+3", 1, 3).is_ok());
        // Multi-byte stray characters and a BOM are one token each.
        assert!(scan("\u{feff}{ 가 }", 4, 3).is_ok());
        assert!(scan("\u{feff}{ 가 }", 3, 3).is_err());
        assert!(scan("{a{a{a}}}", 100, 3).is_ok());
    }

    fn rules(max_aliases: usize, max_root_fields: usize) -> DocumentRules {
        DocumentRules {
            max_aliases,
            max_root_fields,
            max_selections: 2000,
            max_fragment_depth: 32,
            introspection: true,
            max_text: MAX_TEXT_CHARS,
        }
    }

    #[test]
    fn aliases_root_fields_and_literals_are_limited() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        let aliased = doc("{ a: me { id } b: me { id } c: me { n: name } }");
        assert!(check_document(&aliased, rules(4, 10)).is_ok());
        assert!(check_document(&aliased, rules(3, 10)).is_err());
        let roots =
            doc("{ ...R ...R me { id } } fragment R on Query { a: me { id } b: me { id } }");
        assert!(check_document(&roots, rules(10, 3)).is_ok());
        assert!(check_document(&roots, rules(10, 2)).is_err());
        let long = "가".repeat(MAX_TEXT_CHARS + 1);
        let literal = doc(&format!(
            r#"mutation {{ createStory(input: {{userPreferences: {{theme: "{long}"}}}}) {{ id }} }}"#
        ));
        let err = check_document(&literal, rules(10, 10)).unwrap_err();
        assert!(err.contains("input.userPreferences.theme"), "{err}");
        let closed = DocumentRules {
            introspection: false,
            ..rules(10, 10)
        };
        assert!(check_document(&doc("{ __schema { types { name } } }"), closed).is_err());
        assert!(check_document(&doc("{ me { __type: id } }"), closed).is_ok());
        assert!(check_document(&doc("{ __typename }"), closed).is_ok());
        let ok = "가".repeat(MAX_TEXT_CHARS);
        let literal = doc(&format!(r#"{{ a(s: ["{ok}"]) }}"#));
        assert!(check_document(&literal, rules(10, 10)).is_ok());
    }

    /// 7 fragments, each spreading the one below 10 times: 10⁷ fields once expanded.
    fn fragment_bomb() -> String {
        let mut q = String::from("{ ...F0 }\n");
        for level in 0..7 {
            let spreads = format!("...F{} ", level + 1).repeat(10);
            q.push_str(&format!("fragment F{level} on Query {{ {spreads} }}\n"));
        }
        q.push_str("fragment F7 on Query { __typename }\n");
        q
    }

    #[test]
    fn fragment_expansion_is_bounded_and_counted_once_per_fragment() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        let bomb = fragment_bomb();
        let started = std::time::Instant::now();
        let err = check_document(&doc(&bomb), rules(50, 20)).unwrap_err();
        assert!(err.contains("more than 2000 selections"), "{err}");
        // Linear in the document: far below a millisecond per fragment even on a slow
        // machine (a generous bound; the point is that 10⁷ expansions never happen).
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Exactly at the limit passes; one more is refused.
        let exact = |n: usize| {
            let fields = "a ".repeat(n);
            doc(&format!(
                "{{ ...F ...F }} fragment F on Query {{ {fields} }}"
            ))
        };
        let limited = |max| DocumentRules {
            max_selections: max,
            ..rules(50, 1000)
        };
        assert!(check_document(&exact(50), limited(100)).is_ok());
        assert!(check_document(&exact(50), limited(99)).is_err());
        // Nested fields count with their sub-selections.
        let nested = doc("{ me { id name } stories { id } }");
        assert!(check_document(&nested, limited(5)).is_ok());
        assert!(check_document(&nested, limited(4)).is_err());
        // Cycles and deep chains of fragments are refused, not followed.
        let cycle = doc("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }");
        assert!(
            check_document(&cycle, rules(50, 20))
                .unwrap_err()
                .contains("spreads itself")
        );
        let mut chain = String::from("{ ...F0 }");
        for i in 0..40 {
            chain.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        chain.push_str(" fragment F40 on Query { a }");
        let err = check_document(&doc(&chain), rules(50, 20)).unwrap_err();
        assert!(err.contains("more than 32 deep"), "{err}");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any text: the scanner answers without panicking, and a budget that passes
            /// keeps passing when raised.
            #[test]
            fn scanning_never_panics_and_is_monotonic(query in any::<String>(), budget in 0usize..64) {
                if scan(&query, budget, 64).is_ok() {
                    prop_assert!(scan(&query, budget + 1, 64).is_ok());
                }
            }

            /// `{ f f … f }` is n + 2 tokens and nests once.
            #[test]
            fn tokens_are_counted_exactly(n in 0usize..200) {
                let query = format!("{{{}}}", " f,".repeat(n));
                prop_assert!(scan(&query, n + 2, 1).is_ok());
                prop_assert!(scan(&query, n + 1, 1).is_err());
            }

            /// Whatever parses, the document checks answer without panicking.
            #[test]
            fn parsed_documents_are_checked_without_panicking(query in "[{}()a-c:.$@ \"!]{0,40}") {
                if let Ok(document) = async_graphql::parser::parse_query(&query) {
                    let _ = check_document(&document, super::rules(2, 2));
                }
            }
        }
    }
}
