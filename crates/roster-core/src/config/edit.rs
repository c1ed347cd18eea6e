//! Editing a config file's text for `roster add`, `roster remove` and
//! `roster scale`,
//! keeping everything else as the user wrote it: comments, blank lines,
//! spacing, the order of tables.
//!
//! Text in, text out: the caller reads and writes the file, and checks the
//! result whole with [`super::parse`] before it replaces anything. An
//! agent is added by appending its table at the end (the old text stays a
//! prefix of the new); it is removed through `toml_edit`'s document, which
//! prints every other item exactly as it was read.

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use crate::name::AgentName;

/// An agent as `roster add` writes it.
#[derive(Clone, Debug)]
pub struct NewAgent {
    /// Its name (the table is `[agents.NAME]`).
    pub name: AgentName,
    /// `command`, an argv; never empty.
    pub command: Vec<String>,
    /// `cwd`, as it is to be written (relative to the file's directory, or
    /// absolute).
    pub cwd: Option<String>,
    /// `env`, as an inline table, in the order given.
    pub env: Vec<(String, String)>,
    /// `user`.
    pub user: Option<String>,
    /// `[agents.NAME.health] http`.
    pub health_http: Option<String>,
}

/// Why a config's text could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The text is not TOML; [`super::parse`] locates the problem.
    #[error("the file is not valid TOML: {0}")]
    NotToml(#[from] toml_edit::TomlError),
    /// `roster add` of a name the file has already.
    #[error("agent `{0}` is already in the file")]
    AlreadyThere(String),
    /// `roster add` with an empty command.
    #[error("the command is empty")]
    EmptyCommand,
    /// `roster remove` of a name the file does not have.
    #[error("no agent `{name}` in the file")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The agents the file has, in file order.
        known: Vec<String>,
    },
}

/// The text with `agent`'s table appended, and the line (1-based) its
/// table starts on. The old text is a prefix of the new one.
pub fn add_agent(text: &str, agent: &NewAgent) -> Result<(String, usize), EditError> {
    if agent
        .command
        .first()
        .is_none_or(|program| program.is_empty())
    {
        return Err(EditError::EmptyCommand);
    }
    let document: DocumentMut = text.parse()?;
    if agent_names(&document)
        .iter()
        .any(|name| name == agent.name.as_str())
    {
        return Err(EditError::AlreadyThere(agent.name.to_string()));
    }
    let mut out = text.to_owned();
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        // One blank line between the last table and the new one.
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
    }
    let first_line = out.matches('\n').count() + 1;
    out.push_str(&render(agent));
    Ok((out, first_line))
}

/// The agent's tables alone, as `toml_edit` writes them.
fn render(agent: &NewAgent) -> String {
    let mut table = Table::new();
    table.insert(
        "command",
        toml_edit::value(agent.command.iter().map(String::as_str).collect::<Array>()),
    );
    if let Some(cwd) = &agent.cwd {
        table.insert("cwd", toml_edit::value(cwd.as_str()));
    }
    if !agent.env.is_empty() {
        let mut env = InlineTable::new();
        for (key, value) in &agent.env {
            env.insert(key.as_str(), value.as_str().into());
        }
        table.insert("env", toml_edit::value(env));
    }
    if let Some(user) = &agent.user {
        table.insert("user", toml_edit::value(user.as_str()));
    }
    if let Some(url) = &agent.health_http {
        let mut health = Table::new();
        health.insert("http", toml_edit::value(url.as_str()));
        table.insert("health", Item::Table(health));
    }
    let mut agents = Table::new();
    agents.set_implicit(true);
    agents.insert(agent.name.as_str(), Item::Table(table));
    let mut document = DocumentMut::new();
    document.insert("agents", Item::Table(agents));
    document.to_string()
}

/// The text with `instances = count` in `[agents.NAME]` (`roster scale`),
/// and the count it had (`None`: no `instances`, one agent of its own).
/// A value already written is replaced in place, its comment kept; a new
/// key goes after the table's last key.
pub fn set_instances(
    text: &str,
    name: &str,
    count: u32,
) -> Result<(String, Option<i64>), EditError> {
    let mut document: DocumentMut = text.parse()?;
    let known = agent_names(&document);
    let table = document
        .get_mut("agents")
        .and_then(Item::as_table_like_mut)
        .and_then(|agents| agents.get_mut(name))
        .and_then(Item::as_table_like_mut);
    let Some(table) = table else {
        return Err(EditError::Unknown {
            name: name.to_owned(),
            known,
        });
    };
    let mut value = Value::from(i64::from(count));
    let previous = match table.get_mut("instances").and_then(Item::as_value_mut) {
        Some(old) => {
            let previous = old.as_integer();
            *value.decor_mut() = old.decor().clone();
            *old = value;
            previous
        }
        None => {
            table.insert("instances", Item::Value(value));
            None
        }
    };
    Ok((document.to_string(), previous))
}

/// `new` with the line endings of `old`: a file written with CRLF (edited
/// on Windows) stays CRLF throughout, lines an edit added included.
pub fn keep_line_endings(old: &str, new: &str) -> String {
    if !old.contains("\r\n") {
        return new.to_owned();
    }
    let mut out = String::with_capacity(new.len() + new.len() / 32);
    let mut previous = '\0';
    for c in new.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

/// The agents a document has, in file order.
fn agent_names(document: &DocumentMut) -> Vec<String> {
    document
        .get("agents")
        .and_then(Item::as_table_like)
        .map(|agents| agents.iter().map(|(name, _)| name.to_owned()).collect())
        .unwrap_or_default()
}

/// The text without `[agents.NAME]` and its sub-tables
/// (`[agents.NAME.health]`, `[[agents.NAME.watch]]`, ...).
///
/// The comment lines right above the agent's first header go with it; what
/// stands above a blank line before them (a comment on a whole section)
/// stays, above the table that now follows. Comments below the agent's last
/// key stay with what follows them, unless that is one of its own tables.
pub fn remove_agent(text: &str, name: &str) -> Result<String, EditError> {
    let mut document: DocumentMut = text.parse()?;
    let known = agent_names(&document);
    let removed = document
        .get_mut("agents")
        .and_then(Item::as_table_like_mut)
        .and_then(|agents| agents.remove(name));
    let Some(removed) = removed else {
        return Err(EditError::Unknown {
            name: name.to_owned(),
            known,
        });
    };
    let mut headed = Vec::new();
    headed_tables(&removed, &mut headed);
    let lead = headed.into_iter().min_by_key(|(position, _)| *position);
    if let Some((position, prefix)) = lead {
        carry_to_next(&mut document, position, &kept_above(&prefix));
    }
    Ok(document.to_string())
}

/// The tables in `item` written with a header: their position in the file
/// and the text above the header.
fn headed_tables(item: &Item, found: &mut Vec<(isize, String)>) {
    match item {
        Item::Table(table) => headed_table(table, found),
        Item::ArrayOfTables(array) => {
            for table in array.iter() {
                headed_table(table, found);
            }
        }
        Item::None | Item::Value(_) => {}
    }
}

fn headed_table(table: &Table, found: &mut Vec<(isize, String)>) {
    if let (false, false, Some(position)) =
        (table.is_implicit(), table.is_dotted(), table.position())
    {
        found.push((position, prefix_of(table).to_owned()));
    }
    for (_, child) in table.iter() {
        headed_tables(child, found);
    }
}

/// The text above a table's header.
fn prefix_of(table: &Table) -> &str {
    table
        .decor()
        .prefix()
        .and_then(|raw| raw.as_str())
        .unwrap_or_default()
}

/// `text` without its leading blank lines (a comment's indentation stays).
fn without_leading_blank_lines(text: &str) -> &str {
    let mut rest = text;
    while let Some(end) = rest.find('\n') {
        if !rest[..end].trim().is_empty() {
            break;
        }
        rest = &rest[end + 1..];
    }
    if rest.trim().is_empty() {
        ""
    } else {
        rest
    }
}

/// Of the text above a header, what does not belong to it: everything up
/// to and including the last blank line.
fn kept_above(prefix: &str) -> String {
    let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    match lines.iter().rposition(|line| line.trim().is_empty()) {
        Some(last_blank) => lines[..=last_blank].concat(),
        None => String::new(),
    }
}

/// Puts `kept` (what stood above a removed header and ends with a blank
/// line) above the first header after `position`, or before the comments
/// at the end of the file when there is none.
fn carry_to_next(document: &mut DocumentMut, position: isize, kept: &str) {
    let has_comments = !kept.trim().is_empty();
    let mut after = Vec::new();
    for (_, child) in document.as_table().iter() {
        headed_tables(child, &mut after);
    }
    let next = after
        .into_iter()
        .map(|(table_position, _)| table_position)
        .filter(|table_position| *table_position > position)
        .min();
    let target = next.and_then(|next| table_at(document.as_table_mut(), next));
    match target {
        // Without comments to carry, the next table keeps its own spacing.
        Some(table) if has_comments => {
            // `kept` ends with its blank line: the next table's own
            // leading blank lines would double it.
            let own = without_leading_blank_lines(prefix_of(table)).to_owned();
            table.decor_mut().set_prefix(format!("{kept}{own}"));
        }
        Some(_) => {}
        None => {
            let trailing = document.trailing().as_str().unwrap_or_default();
            let rest = without_leading_blank_lines(trailing);
            let new = match (rest.is_empty(), has_comments) {
                (false, _) => format!("{kept}{rest}"),
                (true, true) => format!("{}\n", kept.trim_end()),
                (true, false) => String::new(),
            };
            document.set_trailing(new);
        }
    }
}

/// The headed table at `position` under `table`.
fn table_at(table: &mut Table, position: isize) -> Option<&mut Table> {
    for (_, child) in table.iter_mut() {
        let found = match child {
            Item::Table(child) => at_or_under(child, position),
            Item::ArrayOfTables(array) => array
                .iter_mut()
                .find_map(|element| at_or_under(element, position)),
            Item::None | Item::Value(_) => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn at_or_under(table: &mut Table, position: isize) -> Option<&mut Table> {
    let here = !table.is_implicit() && !table.is_dotted() && table.position() == Some(position);
    if here {
        return Some(table);
    }
    table_at(table, position)
}

#[cfg(test)]
mod tests;
