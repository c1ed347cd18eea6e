//! The config file: its model, and validation that reports every problem at
//! once with the line and column where it sits.
//!
//! Nothing here touches the file system: the caller reads the file and
//! hands over its text and the directory relative paths are resolved
//! against. By job:
//! - `model`: what a valid file means (`Config`, `AgentSpec`, defaults);
//! - `checking`: reading the TOML tree into the model, every problem
//!   collected; the keys of each table are declared once, as a table of
//!   `keys::Key` lines (`agents::AGENT_KEYS` for agents and `[defaults]`),
//!   and read by `keys`, with `values` for single values;
//! - `instances`: an agent with `instances = N` read as N copies, with
//!   `{instance}` replaced in their keys;
//! - `health_checks`, `watch_checks`, `notify_checks`, `deploy_checks`,
//!   `web_checks`: the sub-tables that are checked as a whole;
//! - `diagnostics`: `ConfigError`, FILE:LINE:COL, "did you mean";
//! - `edit`: a file's text with an agent added or removed or its
//!   `instances` set, everything else kept as written (`roster add`,
//!   `roster remove`, `roster scale`).

mod agents;
mod checking;
mod deploy_checks;
mod diagnostics;
mod edit;
mod health_checks;
mod instances;
mod keys;
mod model;
mod notify_checks;
mod values;
mod watch_checks;
mod web_checks;

#[cfg(test)]
mod instance_tests;
#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod readme_tests;
#[cfg(test)]
mod tests;

pub use checking::parse;
pub use diagnostics::{ConfigError, Diagnostic, Located};
pub use edit::{add_agent, keep_line_endings, remove_agent, set_instances, EditError, NewAgent};
pub use instances::{INSTANCE_KEYS, MAX_INSTANCES};
pub use model::{
    AgentSpec, Config, Instance, LogConfig, RestartMode, RestartPolicy, StderrMode, StopPolicy,
};

// For other files of the same shape (the fleet file): the same checker,
// readers and FILE:LINE:COL errors, so their messages read alike.
pub(crate) use diagnostics::{closest, key_span, span_of, Checker};
pub(crate) use instances::Shared;
pub(crate) use keys::{Entry, Key, Read};

/// `text` as a TOML basic string: quoted, with `"`, backslashes, newlines, tabs,
/// carriage returns and other control characters escaped. For writers of
/// TOML (`roster init`, each fleet host's rendered roster.toml).
pub fn toml_string(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
