//! What a host runs, read back from the roster.toml `render` wrote there:
//! each `[agents."TENANT.AGENT"]` section with the digest `plan` compares
//! (the same bytes `render` digested, so an unchanged instance needs no
//! change) and the port the header comment gives it (so the next
//! placement keeps it). Pure: the CLI fetches the text.

use std::collections::BTreeMap;

use super::hash::digest;
use super::model::{Placed, Placement};
use super::plan::RunningInstance;
use super::render::PORT_MARK;

/// A host's fleet-written roster.toml, read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostedConfig {
    /// Its instances with their sections' digests, in file order.
    pub instances: Vec<RunningInstance>,
    /// The port of each instance, by name, as the header gives it.
    pub ports: BTreeMap<String, u16>,
}

/// Splits a roster.toml `render` wrote into its instances and ports.
/// Text it did not write gives what it can: sections as they are (their
/// digests then differ from any rendering, so `plan` changes them).
pub fn read_rendered(text: &str) -> HostedConfig {
    let mut hosted = HostedConfig::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(PORT_MARK) else {
            continue;
        };
        if let Some((name, port)) = rest.split_once(' ') {
            if let Ok(port) = port.trim().parse::<u16>() {
                hosted.ports.insert(name.to_owned(), port);
            }
        }
    }
    // Every instance header with where its line starts.
    let mut starts: Vec<(usize, String)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(name) = instance_header(line.trim_end_matches(['\n', '\r'])) {
            starts.push((offset, name));
        }
        offset += line.len();
    }
    for (index, (start, name)) in starts.iter().enumerate() {
        // `render` puts one blank line between sections: not a part of
        // either.
        let section = match starts.get(index + 1) {
            Some((next, _)) => {
                let chunk = &text[*start..*next];
                chunk.strip_suffix('\n').unwrap_or(chunk)
            }
            None => &text[*start..],
        };
        hosted.instances.push(RunningInstance {
            name: name.clone(),
            digest: digest(section),
        });
    }
    hosted
}

/// The placement the hosts' files describe (instance, host, port), for
/// `place_with`: ports stay where they were. An instance on two hosts (a
/// move cut short) counts on the first.
pub fn previous_placement(hosts: &[(String, HostedConfig)]) -> Placement {
    let mut instances: BTreeMap<&str, Placed> = BTreeMap::new();
    for (host, hosted) in hosts {
        for instance in &hosted.instances {
            let Some(port) = hosted.ports.get(&instance.name) else {
                continue;
            };
            let (tenant, agent) = instance
                .name
                .split_once('.')
                .unwrap_or((&instance.name, ""));
            instances.entry(&instance.name).or_insert_with(|| Placed {
                name: instance.name.clone(),
                tenant: tenant.to_owned(),
                agent: agent.to_owned(),
                host: host.clone(),
                port: *port,
                digest: instance.digest.clone(),
            });
        }
    }
    Placement {
        instances: instances.into_values().collect(),
    }
}

/// The agent's name when `line` is `[agents.NAME]` (not a sub-table such
/// as `[agents.NAME.health]`).
fn instance_header(line: &str) -> Option<String> {
    let rest = line.strip_prefix("[agents.")?.strip_suffix(']')?;
    if let Some(quoted) = rest.strip_prefix('"') {
        // A basic string: the name ends at the first unescaped quote,
        // which must end the header.
        let mut name = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return chars.as_str().is_empty().then_some(name),
                '\\' => name.push(unescape(&mut chars)?),
                c => name.push(c),
            }
        }
        None
    } else {
        let bare = !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        bare.then(|| rest.to_owned())
    }
}

/// One escape of a TOML basic string, after its backslash.
fn unescape(chars: &mut std::str::Chars<'_>) -> Option<char> {
    Some(match chars.next()? {
        'b' => '\u{8}',
        't' => '\t',
        'n' => '\n',
        'f' => '\u{c}',
        'r' => '\r',
        'e' => '\u{1b}',
        '"' => '"',
        '\\' => '\\',
        'u' => hex(chars, 4)?,
        'U' => hex(chars, 8)?,
        _ => return None,
    })
}

fn hex(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let text: String = chars.take(digits).collect();
    if text.len() != digits {
        return None;
    }
    char::from_u32(u32::from_str_radix(&text, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_instances_not_their_sub_tables() {
        assert_eq!(
            instance_header(r#"[agents."c01.support"]"#).as_deref(),
            Some("c01.support")
        );
        assert_eq!(instance_header("[agents.web]").as_deref(), Some("web"));
        assert_eq!(instance_header(r#"[agents."c01.support".health]"#), None);
        assert_eq!(instance_header("[agents.web.health]"), None);
        assert_eq!(instance_header("[metrics]"), None);
        assert_eq!(
            instance_header(r#"[agents."a\"b\u00e9"]"#).as_deref(),
            Some("a\"bé")
        );
    }

    #[test]
    fn hand_written_text_reads_as_it_stands() {
        let text = "[agents.web]\ncommand = \"a\"\n\n[agents.web.health]\nexec = \"b\"\n";
        let hosted = read_rendered(text);
        assert_eq!(hosted.instances.len(), 1);
        assert_eq!(hosted.instances[0].name, "web");
        assert_eq!(hosted.instances[0].digest, digest(text));
        assert!(hosted.ports.is_empty());
        assert_eq!(previous_placement(&[("h1".into(), hosted)]).instances, []);
    }
}
