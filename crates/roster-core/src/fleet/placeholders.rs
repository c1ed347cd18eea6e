//! Placeholders in a fleet file's strings: `{tenant}`, `{agent}`,
//! `{instance}`, `{port}`, `{address}`, `{host}`. Finding them (to check
//! them where they are written) and replacing them (to render an
//! instance). A placeholder is `{` lower-case letters or `_` `}`; other
//! braces (`${HOME}`, JSON) are left as they are.

use std::ops::Range;

/// Every placeholder a template may use.
pub const INSTANCE_PLACEHOLDERS: &[&str] =
    &["tenant", "agent", "instance", "port", "address", "host"];

/// The placeholders `[metrics] listen` may use.
pub const HOST_PLACEHOLDERS: &[&str] = &["address", "host"];

/// What the placeholders of one instance (or one host) stand for.
#[derive(Clone, Debug)]
pub(super) struct Vars<'a> {
    pub(super) tenant: &'a str,
    pub(super) agent: &'a str,
    pub(super) instance: &'a str,
    pub(super) port: u16,
    pub(super) address: &'a str,
    pub(super) host: &'a str,
}

impl Vars<'_> {
    fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "tenant" => self.tenant.to_owned(),
            "agent" => self.agent.to_owned(),
            "instance" => self.instance.to_owned(),
            "port" => self.port.to_string(),
            "address" => self.address.to_owned(),
            "host" => self.host.to_owned(),
            _ => return None,
        })
    }

    /// `text` with every placeholder replaced; an unknown one stays as it
    /// is (the file was checked before).
    pub(super) fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = 0;
        for (range, name) in find(text) {
            if let Some(value) = self.value(name) {
                out.push_str(&text[rest..range.start]);
                out.push_str(&value);
                rest = range.end;
            }
        }
        out.push_str(&text[rest..]);
        out
    }
}

/// The placeholders in `text`: where each is (braces included) and its
/// name.
pub(super) fn find(text: &str) -> Vec<(Range<usize>, &str)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'{' {
            let start = index + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
                end += 1;
            }
            if end > start && end < bytes.len() && bytes[end] == b'}' {
                found.push((index..end + 1, &text[start..end]));
                index = end + 1;
                continue;
            }
        }
        index += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            tenant: "c01",
            agent: "support",
            instance: "c01.support",
            port: 8100,
            address: "10.0.0.11",
            host: "h01",
        }
    }

    #[test]
    fn finds_placeholders_and_leaves_other_braces() {
        let text = "{tenant}:${HOME} {\"a\": 1} {} {port}{x_y";
        let names: Vec<&str> = find(text).into_iter().map(|(_, name)| name).collect();
        assert_eq!(names, ["tenant", "port"]);
        assert_eq!(find("a{host}")[0].0, 1..7);
    }

    #[test]
    fn substitutes_every_known_placeholder() {
        assert_eq!(
            vars().substitute(
                "{instance} on {host} ({address}:{port}) for {tenant}/{agent} {other} ${PATH}"
            ),
            "c01.support on h01 (10.0.0.11:8100) for c01/support {other} ${PATH}"
        );
    }
}
