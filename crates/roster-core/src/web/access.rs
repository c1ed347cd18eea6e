//! Who may see and act on which agent. A token (and a session opened with
//! it) carries a `Grant`: its name, its `Scope`, and whether it is read
//! only. An admin token sees every agent; a tenant token sees only the
//! agents whose `tenant` key is its tenant; an agent without a tenant is
//! the admin's alone. A read-only grant never acts.

use std::fmt;

/// What a token reaches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every agent.
    Admin,
    /// The agents of one tenant.
    Tenant(String),
}

impl Scope {
    /// Reads `admin` or `tenant:NAME` (how the token store writes it).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "admin" {
            return Ok(Scope::Admin);
        }
        match text.strip_prefix("tenant:") {
            Some(tenant) => {
                check_tenant(tenant)?;
                Ok(Scope::Tenant(tenant.to_owned()))
            }
            None => Err(format!(
                "bad scope {text:?}: expected \"admin\" or \"tenant:NAME\""
            )),
        }
    }
}

impl fmt::Display for Scope {
    /// `admin` or `tenant:NAME`, what [`Scope::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Tenant(tenant) => write!(f, "tenant:{tenant}"),
        }
    }
}

/// A tenant's name, by the rule of the agents' `tenant` key: 1 to 64
/// letters, digits, `_`, `-` and `.`.
pub fn check_tenant(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(format!(
            "bad tenant {name:?}: 1 to 64 letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

/// What a token, or a session opened with it, allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The token's name (journaled with every action).
    pub token: String,
    /// What it reaches.
    pub scope: Scope,
    /// It may look, never act.
    pub read_only: bool,
}

/// Whether `scope` sees an agent whose `tenant` key is `agent_tenant`.
pub fn may_see(scope: &Scope, agent_tenant: Option<&str>) -> bool {
    match scope {
        Scope::Admin => true,
        Scope::Tenant(tenant) => agent_tenant == Some(tenant.as_str()),
    }
}

/// Whether `grant` may start, stop or restart an agent whose `tenant` key
/// is `agent_tenant`: it sees the agent and is not read only.
pub fn may_act(grant: &Grant, agent_tenant: Option<&str>) -> bool {
    !grant.read_only && may_see(&grant.scope, agent_tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scope: Scope, read_only: bool) -> Grant {
        Grant {
            token: "t".into(),
            scope,
            read_only,
        }
    }

    #[test]
    fn admins_see_all_and_tenants_their_own_only() {
        let acme = Scope::Tenant("acme".into());
        assert!(may_see(&Scope::Admin, None));
        assert!(may_see(&Scope::Admin, Some("acme")));
        assert!(may_see(&acme, Some("acme")));
        assert!(!may_see(&acme, Some("other")));
        assert!(!may_see(&acme, Some("acme2")), "no prefix matching");
        assert!(!may_see(&acme, Some("ACME")), "case matters");
        assert!(
            !may_see(&acme, None),
            "an agent without a tenant is admin-only"
        );
    }

    #[test]
    fn read_only_never_acts() {
        let acme = Scope::Tenant("acme".into());
        assert!(may_act(&grant(Scope::Admin, false), None));
        assert!(!may_act(&grant(Scope::Admin, true), None));
        assert!(may_act(&grant(acme.clone(), false), Some("acme")));
        assert!(!may_act(&grant(acme.clone(), true), Some("acme")));
        assert!(!may_act(&grant(acme.clone(), false), Some("other")));
        assert!(!may_act(&grant(acme, false), None));
    }

    #[test]
    fn scopes_read_back_what_they_write() {
        for scope in [Scope::Admin, Scope::Tenant("c-01.x".into())] {
            assert_eq!(Scope::parse(&scope.to_string()), Ok(scope));
        }
        assert!(Scope::parse("tenant:").is_err());
        assert!(Scope::parse("tenant:a/b").is_err());
        assert!(Scope::parse("root").is_err());
        assert!(check_tenant(&"a".repeat(64)).is_ok());
        assert!(check_tenant(&"a".repeat(65)).is_err());
    }
}
