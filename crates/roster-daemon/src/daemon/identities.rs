//! Who agents run as: each agent's account, looked up at its first start
//! after an apply, the agents reported running as root, and the uids
//! agents run as (`agent-uids`, for the next daemon and for strays).

use std::collections::{HashMap, HashSet};

use roster_core::api::EventKind;
use roster_core::hardening::Identity;
use roster_core::AgentName;

use super::startup;
use crate::home::HomeDir;
use crate::identity::Account;
use crate::journal::{Journal, Row};
use crate::spawn;

/// Who each agent runs as.
pub(super) struct Identities {
    /// Who each agent runs as, resolved at its first start after an apply.
    accounts: HashMap<AgentName, Result<Account, String>>,
    /// Agents already reported running as root without the config saying so.
    root_reported: HashSet<AgentName>,
    /// The uids agents run as besides the daemon's, as `agent-uids` lists
    /// them for the next daemon (and for recognising strays).
    agent_uids: Vec<u32>,
}

impl Identities {
    /// Knowing the uids `agent-uids` lists.
    pub(super) fn new(agent_uids: Vec<u32>) -> Identities {
        Identities {
            accounts: HashMap::new(),
            root_reported: HashSet::new(),
            agent_uids,
        }
    }

    /// A config was applied: users may have been created or changed since,
    /// so they are looked up again.
    pub(super) fn forget_accounts(&mut self) {
        self.accounts.clear();
    }

    /// The uids agents run as besides the daemon's.
    pub(super) fn agent_uids(&self) -> &[u32] {
        &self.agent_uids
    }

    /// The user `agent` runs as, once known.
    pub(super) fn user(&self, agent: &AgentName) -> Option<String> {
        self.accounts
            .get(agent)
            .and_then(|account| account.as_ref().ok())
            .map(|account| account.name.clone())
    }

    /// Whether `agent` was reported running as root unintended.
    pub(super) fn runs_as_root(&self, agent: &AgentName) -> bool {
        self.root_reported.contains(agent)
    }

    /// Who the agent runs as: the configured user (the shim switches to
    /// it), or the daemon's. Root only when the config says so, for the
    /// installed daemon; an ad-hoc root daemon runs it but says so.
    pub(super) fn set_user(
        &mut self,
        agent: &AgentName,
        identity: &Identity,
        launch: &mut spawn::Launch,
        home_dir: &HomeDir,
        journal: &Journal,
    ) -> Result<(), String> {
        let account = self
            .accounts
            .entry(agent.clone())
            .or_insert_with(|| crate::identity::resolve(identity))
            .clone()?;
        if account.uid == 0 && !identity.root_intended() {
            if crate::identity::installed() {
                return Err(format!(
                    "refusing to start {agent} as root: the installed daemon runs agents as root only when the config says so\n  \
                     hint: set user = \"agent-runner\" (or another user) for it or in [defaults], or allow_root = true"
                ));
            }
            if self.root_reported.insert(agent.clone()) {
                let message = format!(
                    "{agent} runs as root because this daemon does and the config names no user; \
                     set user = \"...\" (or allow_root = true to say it is intended)"
                );
                tracing::warn!("{message}");
                journal.record(Row::now(
                    Some(agent.as_str()),
                    EventKind::RunsAsRoot,
                    None,
                    message,
                ));
            }
        }
        if account.uid != nix::unistd::Uid::effective().as_raw()
            && !self.agent_uids.contains(&account.uid)
        {
            self.remember_agent_uid(account.uid, home_dir);
        }
        if crate::identity::needs_switch(&account) {
            if !nix::unistd::Uid::effective().is_root() {
                return Err(format!(
                    "{agent} should run as {} but this daemon does not run as root and cannot switch users\n  \
                     hint: run roster as root (roster install), or remove `user`",
                    account.name
                ));
            }
            launch.user = Some((account.uid, account.gid, account.groups.clone()));
            launch
                .environment
                .push(("HOME".into(), account.home.clone().into_os_string()));
            launch
                .environment
                .push(("USER".into(), account.name.clone().into()));
            launch
                .environment
                .push(("LOGNAME".into(), account.name.clone().into()));
        }
        Ok(())
    }

    /// Adds a uid to `agent-uids`, durably, before the first agent of that
    /// uid is spawned: a daemon killed right after the spawn must leave a
    /// list the next daemon finds that agent by (else it would survive as
    /// an unmanaged copy beside a fresh one). Written on the loop, once per
    /// uid in the daemon's life; writing it off the loop lost that race.
    fn remember_agent_uid(&mut self, uid: u32, home_dir: &HomeDir) {
        self.agent_uids.push(uid);
        self.agent_uids.sort_unstable();
        let text: String = self
            .agent_uids
            .iter()
            .map(|uid| format!("{uid}\n"))
            .collect();
        let written = home_dir.write_atomically(startup::AGENT_UIDS, text.as_bytes());
        if let Err(error) = written {
            tracing::warn!("writing {}: {error}", startup::AGENT_UIDS);
        }
    }
}
