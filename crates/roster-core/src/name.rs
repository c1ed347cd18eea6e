//! Agent names: validated once, then safe to use as file and unit names.
//! Also the rule for environment variable names (secrets, `env_file` lines).

use std::fmt;

/// The longest name an agent may have.
pub const MAX_NAME_LEN: usize = 64;

/// A validated agent name: 1 to 64 of ASCII letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, never containing `..`.
///
/// Names become paths (`<home>/logs/NAME.log`) and, later, unit names, so
/// nothing that could escape a directory or confuse a shell gets through.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AgentName(String);

/// Why a string is not a valid agent name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("the name is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    /// The name starts with something other than a letter or digit.
    #[error("the name must start with a letter or digit")]
    BadStart,
    /// The name contains a character outside the allowed set.
    #[error("the name contains {0:?}; only letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
    /// The name contains `..`.
    #[error("the name contains \"..\"")]
    DotDot,
    /// The name is reserved by the command line (`all` means every agent).
    #[error("\"{0}\" is reserved: `roster stop {0}` means every agent")]
    Reserved(String),
    /// The name ends in [`STDERR_SUFFIX`]: its log, `NAME.err.log`, would be
    /// the file of another agent's separate stderr.
    #[error("the name ends in \".err\": {0}.err.log is where agent `{0}` writes its stderr with stderr = \"separate\"")]
    ErrSuffix(String),
}

/// What a separate stderr log adds to an agent's name (`NAME.err.log`); no
/// agent's name may end in it.
pub const STDERR_SUFFIX: &str = ".err";

/// Names the command line gives a meaning of its own.
pub const RESERVED_NAMES: &[&str] = &["all"];

impl AgentName {
    /// Validates `raw` as an agent name.
    pub fn new(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        let length = raw.chars().count();
        if length > MAX_NAME_LEN {
            return Err(NameError::TooLong(length));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::BadChar(bad));
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(NameError::BadStart);
        }
        if raw.contains("..") {
            return Err(NameError::DotDot);
        }
        if RESERVED_NAMES.contains(&raw) {
            return Err(NameError::Reserved(raw.to_owned()));
        }
        if let Some(owner) = raw.strip_suffix(STDERR_SUFFIX) {
            return Err(NameError::ErrSuffix(owner.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> serde::Deserialize<'de> for AgentName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        AgentName::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// Checks an environment variable name (a secret's key, the name on an
/// `env_file` line): `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid variable name: use letters, digits and _, not starting with a digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for good in [
            "a",
            "customer-support",
            "agent_01",
            "v1.2",
            "9lives",
            &"x".repeat(64),
        ] {
            assert!(AgentName::new(good).is_ok(), "{good} should be valid");
        }
    }

    #[test]
    fn rejects_names_that_could_escape_a_directory() {
        let cases = [
            ("", NameError::Empty),
            ("-x", NameError::BadStart),
            (".hidden", NameError::BadStart),
            ("a..b", NameError::DotDot),
            ("a/b", NameError::BadChar('/')),
            ("a b", NameError::BadChar(' ')),
            ("é", NameError::BadChar('é')),
        ];
        for (raw, expected) in cases {
            assert_eq!(AgentName::new(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(AgentName::new(&"x".repeat(65)), Err(NameError::TooLong(65)));
    }

    #[test]
    fn all_is_reserved_for_every_agent() {
        assert_eq!(
            AgentName::new("all"),
            Err(NameError::Reserved("all".into()))
        );
        // Only the exact word: names that contain it are fine.
        assert!(AgentName::new("all-hands").is_ok());
        assert!(AgentName::new("ALL").is_ok());
    }

    /// `web.err.log` is agent `web`'s stderr log, so no agent may be
    /// called `web.err`.
    #[test]
    fn names_ending_in_err_are_refused() {
        assert_eq!(
            AgentName::new("web.err"),
            Err(NameError::ErrSuffix("web".into()))
        );
        // Only the suffix, with its dot.
        for good in ["web.errors", "err", "web-err", "web.err.1", "error.web"] {
            assert!(AgentName::new(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn variable_names_are_shell_names() {
        for good in ["A", "_", "API_KEY", "a1", "_9"] {
            assert!(check_variable_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A=B"] {
            assert!(check_variable_name(bad).is_err(), "{bad:?}");
        }
    }
}
