//! Who an agent runs as and what it may use: `user`, `group`,
//! `allow_root`, `create_user`, and the limits `memory_max`, `cpu_quota`,
//! `tasks_max`, `nofile`. Parsed in `config/agents.rs`; enforced by the daemon
//! (the exec shim switches user and applies rlimits, `cgroup.rs` the
//! cgroup limits).

/// The user and group an agent runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// A user name or numeric uid, `{name}` already replaced by the
    /// agent's name; `None`: the daemon's user.
    pub user: Option<String>,
    /// A group name or gid; `None`: the user's primary group.
    pub group: Option<String>,
    /// Running as root is intended (otherwise an installed daemon refuses).
    pub allow_root: bool,
    /// Create `user` (a system user, no login, no home) if it is missing.
    pub create_user: bool,
}

impl Identity {
    /// Whether the config says the agent may run as root.
    pub fn root_intended(&self) -> bool {
        self.allow_root || matches!(self.user.as_deref(), Some("root" | "0"))
    }
}

/// Resource limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory of the agent's cgroup (or its address space, as an rlimit).
    pub memory_max: Option<u64>,
    /// CPU time as a percentage of one core (150 = one and a half).
    pub cpu_quota: Option<u32>,
    /// Processes and threads.
    pub tasks_max: Option<u64>,
    /// Open files (an rlimit).
    pub nofile: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        *self != Limits::default()
    }
}

/// A user or group as the config may give it after `{name}` is replaced:
/// a number, or a name from the POSIX portable set (`[A-Za-z0-9._-]`, up
/// to 32 characters, optionally ending in `$`) that cannot be taken for
/// an option or a path: not starting with `-`, not `.` or `..`, no `/`.
/// Capitals are allowed (Linux accepts them; `useradd` may need
/// `--badname` to create one).
pub fn valid_account(name: &str) -> bool {
    if !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()) {
        return name.parse::<u32>().is_ok();
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && name.len() <= 32
        && !body.starts_with('-')
        && body != "."
        && body != ".."
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// `value` with `{name}` replaced by the agent's name.
pub fn expand(value: &str, agent: &str) -> String {
    value.replace("{name}", agent)
}

/// `"50%"` (or `50`) as a percentage of one core; above 0.
pub fn parse_cpu_quota(raw: &str) -> Result<u32, String> {
    let number = raw.trim().strip_suffix('%').unwrap_or(raw.trim());
    match number.trim().parse::<u32>() {
        Ok(0) => Err("it must be above 0%".into()),
        Ok(percent) if percent <= 100_000 => Ok(percent),
        Ok(_) => Err("it is more than 1000 cores".into()),
        Err(_) => Err(format!("{raw:?} is not a percentage such as \"50%\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_templates() {
        assert!(valid_account("agent-runner"));
        assert!(valid_account("_svc"));
        assert!(valid_account("1000"));
        assert!(valid_account("root"));
        // Issue #14, item 20: Linux allows capitals and dots.
        assert!(valid_account("Agent"));
        assert!(valid_account("tenant-Acme.EU"));
        assert!(valid_account("a.b"));
        assert!(valid_account("host$"));
        assert!(valid_account(&"x".repeat(32)));
        // Never an option, a path or something else.
        for bad in [
            "-rf",
            "-",
            ".",
            "..",
            "../etc",
            "a/b",
            "/root",
            "tenant:x",
            "a b",
            "",
            "$",
            "x\n",
            "é",
            "99999999999",
        ] {
            assert!(!valid_account(bad), "{bad:?}");
        }
        assert!(!valid_account(&"x".repeat(33)));
        assert_eq!(expand("tenant-{name}", "acme"), "tenant-acme");
    }

    #[test]
    fn cpu_quotas() {
        assert_eq!(parse_cpu_quota("50%"), Ok(50));
        assert_eq!(parse_cpu_quota("150"), Ok(150));
        assert!(parse_cpu_quota("0%").is_err());
        assert!(parse_cpu_quota("half").is_err());
    }
}
