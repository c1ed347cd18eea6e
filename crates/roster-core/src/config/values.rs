//! Reading one value of a config: a string, a duration, a size, a whole
//! number in a range, a boolean, a signal, a command line, an environment
//! table. Each reports its own mistake at the value and returns `None`, so
//! that a key is read in one line wherever it sits.

use std::collections::BTreeMap;
use std::time::Duration;

use toml_edit::{Item, Value};

use super::diagnostics::{key_span, span_of, Checker};
use super::model::StderrMode;
use crate::health::MIN_PROBE_PERIOD;
use crate::signal::Signal;
use crate::units::{parse_duration, parse_size};

impl Checker {
    /// `stderr = "merge" | "separate"`.
    pub(crate) fn stderr_mode(&mut self, item: &Item, key: &str) -> Option<StderrMode> {
        match self.string(item, key)? {
            "merge" => Some(StderrMode::Merge),
            "separate" => Some(StderrMode::Separate),
            other => {
                self.problem(
                    span_of(item),
                    format!("unknown stderr mode {other:?}"),
                    Some(
                        "use \"merge\" (stderr into NAME.log, with stdout) or \"separate\" (into NAME.err.log)"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn signal(&mut self, item: &Item, key: &str) -> Option<Signal> {
        let raw = self.string(item, key)?;
        let signal = Signal::from_name(raw);
        if signal.is_none() {
            self.problem(
                span_of(item),
                format!("unknown signal {raw:?}"),
                Some(format!(
                    "use one of {}",
                    Signal::known_names().collect::<Vec<_>>().join(", ")
                )),
            );
        }
        signal
    }

    /// A command line: an array of strings, or a string split into words as
    /// a shell would (but never run through one).
    pub(crate) fn command(&mut self, item: &Item) -> Option<Vec<String>> {
        let span = span_of(item);
        let argv = match item.as_value() {
            Some(Value::String(text)) => match shell_words::split(text.value()) {
                Ok(words) => words,
                Err(error) => {
                    self.problem(
                        span,
                        format!("`command` cannot be split into words: {error}"),
                        Some(
                            "check the quotes, or write the command as an array of strings".into(),
                        ),
                    );
                    return None;
                }
            },
            Some(Value::Array(array)) => {
                let mut words = Vec::new();
                for value in array.iter() {
                    match value.as_str() {
                        Some(word) => words.push(word.to_owned()),
                        None => {
                            self.problem(
                                value.span().unwrap_or(span.clone()),
                                "every element of `command` must be a string",
                                Some("quote numbers too: [\"sleep\", \"10\"]".into()),
                            );
                            return None;
                        }
                    }
                }
                words
            }
            _ => {
                self.problem(
                    span,
                    "`command` must be a string or an array of strings",
                    Some("e.g. command = [\"python3\", \"main.py\"]".into()),
                );
                return None;
            }
        };
        if argv.first().is_none_or(|program| program.is_empty()) {
            self.problem(
                span,
                "`command` is empty",
                Some("name the program to run, e.g. command = [\"python3\", \"main.py\"]".into()),
            );
            return None;
        }
        if argv.iter().any(|word| word.contains('\0')) {
            self.problem(span, "`command` contains a NUL byte", None);
            return None;
        }
        Some(argv)
    }

    pub(crate) fn env(&mut self, item: &Item) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(table) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`env` must be a table of strings",
                Some("e.g. env = { MODEL = \"small\" }".into()),
            );
            return env;
        };
        for (key, value) in table.iter() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                self.problem(
                    key_span(table, key, value),
                    format!("{key:?} is not a valid environment variable name"),
                    None,
                );
                continue;
            }
            match value.as_str() {
                Some(text) if !text.contains('\0') => {
                    env.insert(key.to_owned(), text.to_owned());
                }
                Some(_) => self.problem(
                    span_of(value),
                    "environment values may not contain NUL bytes",
                    None,
                ),
                None => self.problem(
                    span_of(value),
                    format!("env `{key}` must be a string"),
                    Some("quote it: numbers and booleans reach the agent as text anyway".into()),
                ),
            }
        }
        env
    }

    pub(crate) fn string<'a>(&mut self, item: &'a Item, key: &str) -> Option<&'a str> {
        let text = item.as_str();
        if text.is_none() {
            self.problem(span_of(item), format!("`{key}` must be a string"), None);
        }
        text
    }

    /// A duration that must be above zero (intervals, timeouts).
    pub(crate) fn positive_duration(&mut self, item: &Item, key: &str) -> Option<Duration> {
        let value = self.duration(item, key)?;
        if value.is_zero() {
            self.problem(span_of(item), format!("`{key}` must be above 0s"), None);
            return None;
        }
        Some(value)
    }

    /// A health check's `interval` or `timeout`: at least
    /// [`MIN_PROBE_PERIOD`].
    pub(crate) fn probe_period(&mut self, item: &Item, key: &str) -> Option<Duration> {
        let value = self.duration(item, key)?;
        if value < MIN_PROBE_PERIOD {
            self.problem(
                span_of(item),
                format!(
                    "`{key}` must be at least {}ms",
                    MIN_PROBE_PERIOD.as_millis()
                ),
                Some(if key == "interval" {
                    "probing more often only adds load, and a check that flaps does so \
                     as often; write e.g. interval = \"1s\""
                        .to_owned()
                } else {
                    "a shorter cut fails answers that are merely a little slow; \
                     write e.g. timeout = \"1s\""
                        .to_owned()
                }),
            );
            return None;
        }
        Some(value)
    }

    pub(crate) fn duration(&mut self, item: &Item, key: &str) -> Option<Duration> {
        let raw = self.string(item, key)?;
        match parse_duration(raw) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(
                    span_of(item),
                    format!("bad duration for `{key}`: {error}"),
                    Some("write e.g. \"500ms\", \"10s\", \"5m\" or \"1h30m\"".into()),
                );
                None
            }
        }
    }

    pub(crate) fn size(&mut self, item: &Item, key: &str) -> Option<u64> {
        if let Some(number) = item.as_integer() {
            if number >= 0 {
                return Some(number as u64);
            }
        }
        let Some(raw) = item.as_str() else {
            self.problem(
                span_of(item),
                format!("`{key}` must be a size such as \"10MiB\""),
                None,
            );
            return None;
        };
        match parse_size(raw) {
            Ok(size) => Some(size),
            Err(error) => {
                self.problem(
                    span_of(item),
                    format!("bad size for `{key}`: {error}"),
                    Some("write e.g. \"512KiB\", \"10MiB\" or \"1GiB\"".into()),
                );
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, item: &Item, key: &str, min: i64, max: i64) -> Option<i64> {
        match item.as_integer() {
            Some(number) if (min..=max).contains(&number) => Some(number),
            Some(number) => {
                self.problem(
                    span_of(item),
                    format!("`{key}` is {number}; it must be between {min} and {max}"),
                    None,
                );
                None
            }
            None => {
                self.problem(
                    span_of(item),
                    format!("`{key}` must be a whole number"),
                    None,
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, item: &Item, key: &str) -> Option<bool> {
        let value = item.as_bool();
        if value.is_none() {
            self.problem(
                span_of(item),
                format!("`{key}` must be true or false"),
                None,
            );
        }
        value
    }
}
