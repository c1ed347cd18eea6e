//! A backup's manifest (`manifest.json` in the archive) and the checks a
//! restore makes on it before it writes anything: the format version, the
//! paths (relative, without `..`), and every file's size and SHA-256
//! against what the archive actually holds. Pure: the CLI reads the
//! archive and hands the findings here.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The format this roster writes and reads.
pub const FORMAT: u32 = 1;

/// The manifest's name in the archive.
pub const MANIFEST: &str = "manifest.json";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The archive format ([`FORMAT`] when written by this roster).
    pub format: u32,
    /// The roster version that wrote it.
    pub roster_version: String,
    /// When it was taken, unix seconds.
    pub created_unix: u64,
    /// The host it was taken on.
    pub host: String,
    /// Where the config was (restore writes it there by default).
    pub config_path: String,
    /// The config's path in the archive.
    pub config_entry: String,
    /// The secrets, if the backup holds them.
    #[serde(default)]
    pub secrets: Option<SecretsInfo>,
    /// Each agent with releases: its live and previous release.
    #[serde(default)]
    pub agents: Vec<AgentReleases>,
    /// Every file in the archive but the manifest.
    pub files: Vec<FileEntry>,
}

/// How the secrets are sealed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretsInfo {
    /// The sealed file's path in the archive.
    pub entry: String,
    /// Which key sealed them: `home` (`<home>/secrets/key`) or `key-file`.
    pub key_source: String,
    /// The key's fingerprint (the first 16 hex digits of its SHA-256).
    pub key_fingerprint: String,
    /// How many agents have secrets.
    pub agents: usize,
}

/// One agent's releases in a backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentReleases {
    /// The agent.
    pub name: String,
    /// The live release.
    pub live: Option<String>,
    /// The release live before it.
    pub previous: Option<String>,
}

/// One file (or symbolic link) in the archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    /// Its path in the archive.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// The hex SHA-256 of its bytes (of the link target for a link).
    pub sha256: String,
    /// Its permission bits.
    pub mode: u32,
    /// The target, for a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// What the archive held for one path, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Bytes read.
    pub size: u64,
    /// Their hex SHA-256.
    pub sha256: String,
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The config's path in a `config_applied` event's detail
/// (`PATH: 1 added, 0 changed, 0 removed, 0 unchanged`).
pub fn config_path_of_applied(detail: &str) -> Option<&str> {
    let (path, counts) = detail.rsplit_once(": ")?;
    (counts.contains(" added") && path.starts_with('/')).then_some(path)
}

/// Whether a manifest of `format` can be read by this roster; the reason
/// when not.
pub fn check_format(format: u32, written_by: &str) -> Result<(), String> {
    match format {
        FORMAT => Ok(()),
        0 => Err("the manifest says format 0, which no roster writes: the file is not a roster backup".into()),
        newer if newer > FORMAT => Err(format!(
            "this backup is format {newer}, written by roster {written_by}; this roster ({}) reads format {FORMAT} only\n  hint: restore it with roster {written_by} or newer",
            env!("CARGO_PKG_VERSION")
        )),
        older => Err(format!(
            "this backup is format {older}, written by roster {written_by}, which this roster no longer reads"
        )),
    }
}

/// Whether an archive path is safe to write under a directory: relative,
/// no `..`, `.` or empty parts, no NUL.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.contains('\0') {
        return Err(format!("{path:?} is not a relative path"));
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!("{path:?} has an empty, `.` or `..` part"));
    }
    Ok(())
}

/// Every problem with an archive: its manifest against what was read
/// (`found`: each entry but the manifest, by path). Empty when every
/// file is there, whole, and nothing else is.
pub fn check_contents(manifest: &Manifest, found: &BTreeMap<String, Found>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(reason) = check_format(manifest.format, &manifest.roster_version) {
        problems.push(reason);
        return problems;
    }
    let mut listed = BTreeMap::new();
    for entry in &manifest.files {
        if let Err(reason) = check_path(&entry.path) {
            problems.push(format!("the manifest lists an unsafe path: {reason}"));
            continue;
        }
        if listed.insert(entry.path.as_str(), entry).is_some() {
            problems.push(format!("the manifest lists {} twice", entry.path));
        }
    }
    for (path, entry) in &listed {
        match found.get(*path) {
            None => problems.push(format!("{path} is in the manifest but not in the archive")),
            Some(got) if got.size != entry.size => problems.push(format!(
                "{path} has {} bytes; the manifest says {}",
                got.size, entry.size
            )),
            Some(got) if got.sha256 != entry.sha256 => {
                problems.push(format!("{path} does not match its checksum"))
            }
            Some(_) => {}
        }
    }
    for path in found.keys() {
        if !listed.contains_key(path.as_str()) {
            problems.push(format!("{path} is in the archive but not in the manifest"));
        }
    }
    if !listed.contains_key(manifest.config_entry.as_str()) {
        problems.push(format!(
            "the config {} is not among the files",
            manifest.config_entry
        ));
    }
    if let Some(secrets) = &manifest.secrets {
        if !listed.contains_key(secrets.entry.as_str()) {
            problems.push(format!(
                "the secrets {} are not among the files",
                secrets.entry
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            format: FORMAT,
            roster_version: "0.1.0".into(),
            created_unix: 1,
            host: "h".into(),
            config_path: "/etc/roster/roster.toml".into(),
            config_entry: "config/roster.toml".into(),
            secrets: None,
            agents: Vec::new(),
            files: files
                .iter()
                .map(|(path, bytes)| FileEntry {
                    path: (*path).into(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                    mode: 0o600,
                    link: None,
                })
                .collect(),
        }
    }

    fn found(files: &[(&str, &[u8])]) -> BTreeMap<String, Found> {
        files
            .iter()
            .map(|(path, bytes)| {
                (
                    (*path).to_string(),
                    Found {
                        size: bytes.len() as u64,
                        sha256: sha256_hex(bytes),
                    },
                )
            })
            .collect()
    }

    const GOOD: &[(&str, &[u8])] = &[
        ("config/roster.toml", b"[agents.a]\ncommand = \"x\"\n"),
        ("journal.db", b"sqlite"),
    ];

    #[test]
    fn a_whole_archive_passes() {
        assert_eq!(
            check_contents(&manifest(GOOD), &found(GOOD)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_changed_byte_is_named() {
        let read = found(&[GOOD[0], ("journal.db", b"sqlitf")]);
        assert_eq!(
            check_contents(&manifest(GOOD), &read),
            vec!["journal.db does not match its checksum".to_string()]
        );
    }

    #[test]
    fn a_short_or_missing_file_is_named() {
        let read = found(&[("config/roster.toml", b"[agents")]);
        let problems = check_contents(&manifest(GOOD), &read);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("config/roster.toml has 7 bytes"));
        assert!(problems[1].contains("journal.db is in the manifest but not in the archive"));
    }

    #[test]
    fn an_extra_file_is_named() {
        let read = found(&[GOOD[0], GOOD[1], ("agents/x", b"")]);
        assert_eq!(
            check_contents(&manifest(GOOD), &read),
            vec!["agents/x is in the archive but not in the manifest".to_string()]
        );
    }

    #[test]
    fn the_config_must_be_listed() {
        let mut listed = manifest(&[GOOD[1]]);
        listed.config_entry = "config/roster.toml".into();
        let problems = check_contents(&listed, &found(&[GOOD[1]]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("the config config/roster.toml"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for path in ["/etc/passwd", "a/../../b", "", "a//b", "./a"] {
            assert!(check_path(path).is_err(), "{path}");
        }
        assert!(check_path("agents/a/releases/v1/bin/run").is_ok());
        let bad = manifest(&[GOOD[0], ("../escape", b"x")]);
        let problems = check_contents(&bad, &found(&[GOOD[0], ("../escape", b"x")]));
        assert!(
            problems.iter().any(|p| p.contains("unsafe path")),
            "{problems:?}"
        );
    }

    #[test]
    fn formats_newer_or_unknown_are_refused_with_the_reason() {
        assert!(check_format(FORMAT, "0.1.0").is_ok());
        let newer = check_format(FORMAT + 1, "9.0.0").unwrap_err();
        assert!(newer.contains("written by roster 9.0.0"), "{newer}");
        assert!(newer.contains("or newer"), "{newer}");
        assert!(check_format(0, "x").is_err());
        let mut future = manifest(GOOD);
        future.format = FORMAT + 1;
        let problems = check_contents(&future, &found(GOOD));
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn the_applied_config_is_read_from_its_event() {
        assert_eq!(
            config_path_of_applied(
                "/srv/a: b/roster.toml: 1 added, 0 changed, 0 removed, 0 unchanged"
            ),
            Some("/srv/a: b/roster.toml")
        );
        assert_eq!(config_path_of_applied("no config"), None);
    }

    #[test]
    fn the_manifest_round_trips_as_json() {
        let written = manifest(GOOD);
        let text = serde_json::to_string(&written).unwrap();
        let read: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(read, written);
    }
}
