//! Keeping secrets out of a support bundle: a config's secret-looking
//! values redacted by key and by shape, and known secret values scrubbed
//! from any text (logs, events, status) before it is written.

use std::sync::OnceLock;

use regex::Regex;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not scrubbed from free text (replacing
/// every `ab` would make logs unreadable and say which letters a secret
/// has); a config's values are redacted by key whatever their length.
pub const SCRUB_MIN_LEN: usize = 4;

/// Prefixes of well-known API keys and tokens.
pub const SECRET_PREFIXES: [&str; 8] = [
    "sk-",
    "sk_live_",
    "xoxb-",
    "xoxp-",
    "ghp_",
    "github_pat_",
    "AKIA",
    "glpat-",
];

fn secret_key() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"(?i)(secret|token|password|passwd|api_?key|auth|credential|private)")
            .unwrap_or_else(|_| unreachable!("a constant pattern"))
    })
}

fn pair() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(
            r#"(?P<key>[A-Za-z0-9_.\-]+|"[^"\n]*"|'[^'\n]*')(?P<eq>[ \t]*=[ \t]*)(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^,}\s#]+)"#,
        )
        .unwrap_or_else(|_| unreachable!("a constant pattern"))
    })
}

fn quoted() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r#""(?:[^"\\\n]|\\.)*"|'[^'\n]*'"#)
            .unwrap_or_else(|_| unreachable!("a constant pattern"))
    })
}

/// Whether a key names a secret (`API_KEY`, `db_password`, `auth`, ...).
pub fn is_secret_key(key: &str) -> bool {
    secret_key().is_match(key)
}

/// Whether a value looks like a well-known kind of API key, whatever its key.
pub fn looks_like_token(value: &str) -> bool {
    value.len() >= 12
        && SECRET_PREFIXES
            .iter()
            .any(|prefix| value.starts_with(prefix))
}

fn strip_quotes(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .or_else(|| {
            value
                .strip_prefix('\'')
                .and_then(|rest| rest.strip_suffix('\''))
        })
        .unwrap_or(value)
}

/// A config's text with the value of every key that names a secret
/// (anywhere: top level, tables, inline tables such as `env = { ... }`,
/// dotted keys) and every value shaped like a known token replaced by
/// `"[REDACTED]"`. Comments that hold `key = value` are redacted too.
pub fn redact_config(text: &str) -> String {
    let by_key = pair().replace_all(text, |captures: &regex::Captures<'_>| {
        let key = &captures["key"];
        let value = &captures["value"];
        if is_secret_key(strip_quotes(key)) && !value.starts_with('[') && !value.starts_with('{') {
            format!("{key}{}\"{REDACTED}\"", &captures["eq"])
        } else {
            captures[0].to_owned()
        }
    });
    quoted()
        .replace_all(&by_key, |captures: &regex::Captures<'_>| {
            let value = &captures[0];
            if looks_like_token(strip_quotes(value)) {
                format!("\"{REDACTED}\"")
            } else {
                value.to_owned()
            }
        })
        .into_owned()
}

/// `text` with every occurrence of each of `secrets` (those at least
/// [`SCRUB_MIN_LEN`] long) replaced by [`REDACTED`], longest first (so a
/// secret that contains another goes whole).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|secret| secret.len() >= SCRUB_MIN_LEN)
        .collect();
    sorted.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    sorted.dedup();
    let mut text = text.to_owned();
    for secret in sorted {
        if text.contains(secret) {
            text = text.replace(secret, REDACTED);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_name_secrets_are_redacted_wherever_they_are() {
        let config = r#"
[agents.web]
command = ["python3", "agent.py", "--port", "8080"]
env = { OPENAI_API_KEY = "abc123", MODEL = "small", "Auth-Header" = 'Bearer zzz' }
[agents.web.env]
DB_PASSWORD = "hunter2"
PORT = "8080"
github_token=plain
[metrics]
bearer_token_file = "/etc/roster/metrics.token"
# old: SECRET = "kept in a comment"
[agents.bot]
command = ["bot", "--key", "sk-proj-0123456789abcdef"]
env.PRIVATE_KEY = "-----BEGIN"
"#;
        let redacted = redact_config(config);
        for gone in [
            "abc123",
            "hunter2",
            "Bearer zzz",
            "plain",
            "/etc/roster/metrics.token",
            "kept in a comment",
            "sk-proj-0123456789abcdef",
            "-----BEGIN",
        ] {
            assert!(!redacted.contains(gone), "{gone} left in:\n{redacted}");
        }
        for kept in [
            "MODEL = \"small\"",
            "PORT = \"8080\"",
            "\"--port\", \"8080\"",
            "[agents.web.env]",
            "OPENAI_API_KEY = \"[REDACTED]\"",
            "github_token=\"[REDACTED]\"",
        ] {
            assert!(redacted.contains(kept), "{kept} missing in:\n{redacted}");
        }
    }

    #[test]
    fn known_values_are_scrubbed_longest_first_and_tiny_ones_left() {
        let secrets = vec![
            "s3cr3t".to_owned(),
            "s3cr3t-and-more".to_owned(),
            "ab".to_owned(),
        ];
        assert_eq!(
            scrub("x s3cr3t-and-more y s3cr3t z ab", &secrets),
            "x [REDACTED] y [REDACTED] z ab"
        );
        assert_eq!(scrub("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn token_shapes_are_known() {
        assert!(looks_like_token("ghp_0123456789abcdef"));
        assert!(!looks_like_token("sk-short"));
        assert!(
            is_secret_key("X_API_KEY") && is_secret_key("apikey") && is_secret_key("Credentials")
        );
        assert!(!is_secret_key("MODEL") && !is_secret_key("PORT"));
    }
}
