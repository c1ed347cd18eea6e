//! What is wrong with a config file, and where: `Diagnostic` (a byte span),
//! `ConfigError` (every problem of a file, located as FILE:LINE:COL with a
//! hint), the "did you mean" suggestion for a mistyped key, and `Checker`,
//! which collects the problems while the file is read. The readers extend
//! `Checker` in their own files; this one depends on none of them.

use std::fmt;
use std::ops::Range;

use toml_edit::{Item, TableLike};

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the file's text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when we know.
    pub hint: Option<String>,
}

/// Every problem found in a config file, with what is needed to print them
/// as `FILE:LINE:COL: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// The problems, in file order.
    pub diagnostics: Vec<Located>,
}

/// A diagnostic with its 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, problem.line, problem.column, problem.message
            )?;
            if let Some(hint) = &problem.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The problems found in `text`, in file order, each said once (a bad
    /// `[defaults]` value is found once per agent), with line and column.
    pub(crate) fn new(file: &str, text: &str, mut problems: Vec<Diagnostic>) -> Self {
        problems.sort_by_key(|problem| problem.span.start);
        problems.dedup_by(|a, b| a.span == b.span && a.message == b.message);
        ConfigError {
            file: file.to_owned(),
            diagnostics: problems
                .into_iter()
                .map(|problem| {
                    let (line, column) = locate(text, problem.span.start);
                    Located {
                        line,
                        column,
                        message: problem.message,
                        hint: problem.hint,
                    }
                })
                .collect(),
        }
    }
}

fn locate(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|index| index + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Where a value sits in the file (0..0 for one made by hand).
pub(crate) fn span_of(item: &Item) -> Range<usize> {
    item.span().unwrap_or(0..0)
}

/// Where `key` is written in `table`, or else where its value sits.
pub(crate) fn key_span(table: &dyn TableLike, key: &str, item: &Item) -> Range<usize> {
    table
        .key(key)
        .and_then(|key| key.span())
        .unwrap_or_else(|| span_of(item))
}

/// The candidate at most two edits away from `word`, the nearest first:
/// the "did you mean" of an unknown key, metric, ...
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Collects every problem of one file while it is read (not just the
/// first).
#[derive(Default)]
pub(crate) struct Checker {
    pub(crate) problems: Vec<Diagnostic>,
}

impl Checker {
    /// Records a problem at `span`.
    pub(crate) fn problem(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.problems.push(Diagnostic {
            span,
            message: message.into(),
            hint,
        });
    }

    /// Records an unknown `key` in `place`, with the known key it most
    /// likely meant, or else the list of `known` ones.
    pub(crate) fn unknown_key(
        &mut self,
        span: Range<usize>,
        key: &str,
        place: &str,
        known: &[&str],
    ) {
        let hint = match closest(key, known) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("known keys here: {}", known.join(", ")),
        };
        self.problem(span, format!("unknown key `{key}` in {place}"), Some(hint));
    }
}
