//! The kinds of journal events, one name each on the wire.
//!
//! The journal stores the name (`kind` in `roster events --json` and in
//! [`EventRecord`](super::EventRecord), which stays a string so that rows of
//! kinds this build does not know still read). Writers name a kind only
//! through this enum, so a kind cannot be misspelt at one call site.

use serde::{Deserialize, Serialize};

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What a journal event is about. Serialized as its snake_case name,
        /// which [`EventKind::as_str`] gives too.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The name on the wire and in the journal.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// The kind of that name, if this build knows it.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    // An agent's life, as the supervisor reports it.
    /// It appeared in the config.
    Added = "added",
    /// Its config changed.
    Changed = "changed",
    /// It left the config and is stopped.
    Removed = "removed",
    /// A process was started.
    Started = "started",
    /// The process could not be started.
    SpawnFailed = "spawn_failed",
    /// It stayed up for `ready_after`.
    Running = "running",
    /// The main process ended on its own.
    Exited = "exited",
    /// It will be started again after a delay.
    Restarting = "restarting",
    /// It died too often too quickly, or cannot start as configured.
    Failed = "failed",
    /// A failed agent is tried again after its cool-down.
    Retrying = "retrying",
    /// It was told to stop.
    Stopping = "stopping",
    /// It did not stop in time and was killed.
    Killed = "killed",
    /// It stopped.
    Stopped = "stopped",
    /// Its health check passes.
    Healthy = "healthy",
    /// Its health check failed `retries` times.
    Unhealthy = "unhealthy",
    /// A restart for ill health was not made (too many already).
    RestartSuppressed = "restart_suppressed",
    /// A cutover: the live process keeps serving while a new one starts.
    Handover = "handover",
    /// The outgoing process of a cutover drains.
    Retiring = "retiring",
    /// The outgoing process of a cutover is gone.
    Retired = "retired",
    /// A cutover gave up: the outgoing process is the main one again.
    HandedBack = "handed_back",
    /// It is shipped as releases and none is deployed yet.
    Undeployed = "undeployed",
    /// Files under its `watch_paths` changed: it restarts.
    FilesChanged = "files_changed",
    /// Its `watch_paths` cannot be watched (in full): changes there may
    /// restart nothing.
    WatchPathsFailed = "watch_paths_failed",

    // The daemon.
    /// The daemon started.
    DaemonStarted = "daemon_started",
    /// The daemon began to stop its agents.
    DaemonStopping = "daemon_stopping",
    /// The daemon stopped.
    DaemonStopped = "daemon_stopped",
    /// The daemon's home was deleted or replaced.
    HomeLost = "home_lost",
    /// A corrupt journal was moved aside and a new one started.
    JournalReset = "journal_reset",
    /// The daemon's limits (open files) at start.
    Limits = "limits",
    /// Agents run as root.
    RunsAsRoot = "runs_as_root",
    /// Log pipes are smaller than wanted (an unprivileged daemon).
    LogPipeReduced = "log_pipe_reduced",
    /// A request on the control socket from a user who may not control roster.
    ApiRefused = "api_refused",

    // Configs.
    /// A config was applied.
    ConfigApplied = "config_applied",
    /// A config was refused; nothing changed.
    ConfigRejected = "config_rejected",
    /// A `[listen]` address moved to the agent at its restart.
    ListenHandover = "listen_handover",
    /// An agent's resource limits cannot be enforced as asked.
    LimitsUnenforced = "limits_unenforced",
    /// An agent's resource limits could not be set.
    LimitsFailed = "limits_failed",

    // Processes roster finds.
    /// A process a killed daemon left running was stopped at start.
    StaleStopped = "stale_stopped",
    /// A process left behind by an agent was killed.
    StrayKilled = "stray_killed",
    /// Processes left behind were stopped.
    StraysStopped = "strays_stopped",
    /// The kernel's OOM killer killed a process of the agent.
    OomKilled = "oom_killed",

    // Logs.
    /// Log lines were dropped.
    LogDropped = "log_dropped",
    /// Rotated logs were deleted to free the disk.
    LogsCleaned = "logs_cleaned",

    // Recovery.
    /// A step of `roster recover`, or its summary.
    Recovery = "recovery",

    // Watch rules and alerts.
    /// A rule stopped the agent.
    RuleStop = "rule_stop",
    /// An alert fired.
    AlertFiring = "alert_firing",
    /// An alert resolved.
    AlertResolved = "alert_resolved",
    /// An alert event was delivered to a notify target.
    Notified = "notified",
    /// Alert events could not be delivered to a notify target.
    NotifyFailed = "notify_failed",
    /// A notify target takes deliveries again.
    NotifyRecovered = "notify_recovered",

    // Secrets.
    /// A secret was set.
    SecretSet = "secret_set",
    /// A secret was removed.
    SecretRemoved = "secret_removed",

    // Deploys.
    /// A deploy began.
    DeployStarted = "deploy_started",
    /// A rollback began.
    RollbackStarted = "rollback_started",
    /// A step of a deploy or rollback ended.
    DeployStep = "deploy_step",
    /// A deploy ended with the new release live.
    Deployed = "deployed",
    /// A deploy failed before the cutover; the old release still serves.
    DeployFailed = "deploy_failed",
    /// A deploy failed after the cutover and was rolled back.
    RolledBack = "rolled_back",
    /// A rollback ended with the previous release live.
    RollbackDone = "rollback_done",
    /// A rollback failed.
    RollbackFailed = "rollback_failed",
    /// A release store was repaired after a crash.
    ReleaseRecovered = "release_recovered",
    /// A release store could not be read or repaired.
    ReleaseStoreError = "release_store_error",
    /// A user was created for an agent, or its directory given to it.
    Account = "account",
    /// The web dashboard started, stopped or restarted an agent (the
    /// detail names the token).
    WebAction = "web_action",
    /// The web dashboard could not be served where `[web]` says.
    WebFailed = "web_failed",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn every_kind_is_its_own_name_on_the_wire() {
        let mut names = std::collections::HashSet::new();
        for kind in EventKind::ALL {
            let name = kind.as_str();
            assert!(names.insert(name), "{name} twice");
            assert!(
                name.bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
                "{name} is not snake_case"
            );
            let json = serde_json::to_string(kind).expect("serializes");
            assert_eq!(json, format!("\"{name}\""));
            let back: EventKind = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, *kind);
            assert_eq!(EventKind::from_name(name), Some(*kind));
        }
        assert_eq!(EventKind::from_name("no_such_kind"), None);
    }

    #[test]
    fn the_names_stay_what_journals_and_scripts_already_hold() {
        let pinned = [
            (EventKind::Started, "started"),
            (EventKind::Exited, "exited"),
            (EventKind::SpawnFailed, "spawn_failed"),
            (EventKind::Handover, "handover"),
            (EventKind::ConfigApplied, "config_applied"),
            (EventKind::DaemonStarted, "daemon_started"),
            (EventKind::AlertFiring, "alert_firing"),
            (EventKind::NotifyFailed, "notify_failed"),
            (EventKind::DeployStep, "deploy_step"),
            (EventKind::RolledBack, "rolled_back"),
        ];
        for (kind, name) in pinned {
            assert_eq!(kind.as_str(), name);
        }
    }
}
