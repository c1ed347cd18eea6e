//! Config keys as tables: each key of a table is one line (its name, how
//! its value is read, where the value goes, and whether `[defaults]` may
//! set it), and one reader walks a TOML table through such a list. The
//! unknown-key error and its "did you mean" come from the same list, so a
//! new key cannot be read yet still be called unknown.

use std::ops::Range;
use std::time::Duration;

use toml_edit::{Item, TableLike};

use super::diagnostics::{key_span, span_of, Checker};
use super::model::StderrMode;
use crate::signal::Signal;

/// One key of a table, read into a `T` (an agent, `[log]`, a health
/// check, ...).
pub(crate) struct Key<T: 'static> {
    /// The key as written in the file.
    pub(crate) name: &'static str,
    /// How its value is read, and where it goes.
    pub(crate) read: Read<T>,
    /// `[defaults]` may set it for every agent (agent keys only).
    pub(crate) in_defaults: bool,
}

impl<T> Key<T> {
    /// A key of its own table only.
    pub(crate) const fn new(name: &'static str, read: Read<T>) -> Self {
        Self {
            name,
            read,
            in_defaults: false,
        }
    }

    /// An agent key `[defaults]` may also set (an agent's own value wins).
    pub(crate) const fn shared(name: &'static str, read: Read<T>) -> Self {
        Self {
            name,
            read,
            in_defaults: true,
        }
    }
}

/// How a key's value is read, each with where the value goes. A value that
/// does not read reports its own problem and sets nothing.
pub(crate) enum Read<T: 'static> {
    /// A duration such as "10s".
    Duration(fn(&mut T, Duration)),
    /// A duration above zero (timeouts).
    PositiveDuration(fn(&mut T, Duration)),
    /// A health probe's `interval` or `timeout`: at least
    /// [`crate::health::MIN_PROBE_PERIOD`].
    ProbePeriod(fn(&mut T, Duration)),
    /// A whole number within `min..=max`.
    Integer(i64, i64, fn(&mut T, i64)),
    /// A size ("10MiB", or a number of bytes) no smaller than its floor.
    Size(Floor, fn(&mut T, u64)),
    /// `true` or `false`.
    Boolean(fn(&mut T, bool)),
    /// A signal name such as "SIGTERM".
    Signal(fn(&mut T, Signal)),
    /// A command line: an array of strings, or a string split into words.
    Command(fn(&mut T, Vec<String>)),
    /// Where stderr goes: "merge" or "separate".
    Stderr(fn(&mut T, StderrMode)),
    /// Anything else: a function of its own.
    Custom(fn(&mut Checker, &Entry<'_>, &mut T)),
}

/// The smallest size a key takes, and what is said of a smaller one.
pub(crate) struct Floor {
    pub(crate) min: u64,
    pub(crate) message: &'static str,
    pub(crate) hint: fn() -> String,
}

/// One `key = value` of a table, as a `Read::Custom` function gets it.
pub(crate) struct Entry<'a> {
    pub(crate) key: &'a str,
    pub(crate) item: &'a Item,
    /// Where the key is written (the value's span for a `[defaults]` item).
    pub(crate) key_span: Range<usize>,
}

/// The names of `keys`, in table order: the "known keys here" of a hint.
pub(crate) fn names<T>(keys: &[Key<T>]) -> Vec<&'static str> {
    keys.iter().map(|key| key.name).collect()
}

impl Checker {
    /// Reads every key of `table` through `keys` into `target`; a key not
    /// in `keys` is reported as unknown in `place`.
    pub(crate) fn read_keys<T>(
        &mut self,
        table: &dyn TableLike,
        keys: &[Key<T>],
        place: &str,
        target: &mut T,
    ) {
        for (key, item) in table.iter() {
            self.read_key(table, key, item, keys, place, target);
        }
    }

    /// Reads one `key = item` of `table` through `keys` into `target`.
    pub(crate) fn read_key<T>(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        item: &Item,
        keys: &[Key<T>],
        place: &str,
        target: &mut T,
    ) {
        let key_span = key_span(table, key, item);
        match keys.iter().find(|known| known.name == key) {
            Some(known) => {
                let entry = Entry {
                    key,
                    item,
                    key_span,
                };
                self.read_value(&known.read, &entry, target);
            }
            None => self.unknown_key(key_span, key, place, &names(keys)),
        }
    }

    fn read_value<T>(&mut self, read: &Read<T>, entry: &Entry<'_>, target: &mut T) {
        let (key, item) = (entry.key, entry.item);
        match read {
            Read::Duration(set) => {
                if let Some(value) = self.duration(item, key) {
                    set(target, value);
                }
            }
            Read::PositiveDuration(set) => {
                if let Some(value) = self.positive_duration(item, key) {
                    set(target, value);
                }
            }
            Read::ProbePeriod(set) => {
                if let Some(value) = self.probe_period(item, key) {
                    set(target, value);
                }
            }
            Read::Integer(min, max, set) => {
                if let Some(value) = self.integer(item, key, *min, *max) {
                    set(target, value);
                }
            }
            Read::Size(floor, set) => {
                if let Some(size) = self.size(item, key) {
                    if size < floor.min {
                        self.problem(span_of(item), floor.message, Some((floor.hint)()));
                    } else {
                        set(target, size);
                    }
                }
            }
            Read::Boolean(set) => {
                if let Some(value) = self.boolean(item, key) {
                    set(target, value);
                }
            }
            Read::Signal(set) => {
                if let Some(signal) = self.signal(item, key) {
                    set(target, signal);
                }
            }
            Read::Command(set) => {
                if let Some(argv) = self.command(item) {
                    set(target, argv);
                }
            }
            Read::Stderr(set) => {
                if let Some(mode) = self.stderr_mode(item, key) {
                    set(target, mode);
                }
            }
            Read::Custom(read) => read(self, entry, target),
        }
    }
}
