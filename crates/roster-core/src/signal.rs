//! The signals an agent may be stopped with, by name.

use std::fmt;

/// A signal roster may send to an agent's process group.
///
/// The numbers are Linux's, which roster targets exclusively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGHUP (1)
    Hup,
    /// SIGINT (2)
    Int,
    /// SIGQUIT (3)
    Quit,
    /// SIGKILL (9)
    Kill,
    /// SIGUSR1 (10)
    Usr1,
    /// SIGUSR2 (12)
    Usr2,
    /// SIGTERM (15)
    Term,
    /// SIGWINCH (28)
    Winch,
}

const ALL: [(Signal, &str, i32); 8] = [
    (Signal::Hup, "SIGHUP", 1),
    (Signal::Int, "SIGINT", 2),
    (Signal::Quit, "SIGQUIT", 3),
    (Signal::Kill, "SIGKILL", 9),
    (Signal::Usr1, "SIGUSR1", 10),
    (Signal::Usr2, "SIGUSR2", 12),
    (Signal::Term, "SIGTERM", 15),
    (Signal::Winch, "SIGWINCH", 28),
];

impl Signal {
    /// Parses `"SIGTERM"`, `"TERM"` or `"sigterm"`.
    pub fn from_name(raw: &str) -> Option<Signal> {
        let upper = raw.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        ALL.iter()
            .find(|(_, name, _)| *name == full)
            .map(|(signal, _, _)| *signal)
    }

    /// The Linux signal number.
    pub fn number(self) -> i32 {
        ALL.iter()
            .find(|(signal, _, _)| *signal == self)
            .map(|(_, _, number)| *number)
            .unwrap_or(15)
    }

    /// Whether a stopped process must be continued (SIGCONT) after this
    /// signal for it to act: every catchable signal. SIGKILL needs no help.
    pub fn resumes_stopped(self) -> bool {
        self != Signal::Kill
    }

    /// The conventional name, e.g. `"SIGTERM"`.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(signal, _, _)| *signal == self)
            .map(|(_, name, _)| *name)
            .unwrap_or("SIGTERM")
    }

    /// The names roster accepts, for hints.
    pub fn known_names() -> impl Iterator<Item = &'static str> {
        ALL.iter().map(|(_, name, _)| *name)
    }
}

/// The conventional name of any Linux signal number, for reporting how a
/// process died (it may die of signals roster never sends).
pub fn name_of_number(number: i32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(number)
        .ok()
        .and_then(|index| NAMES.get(index))
        .map(|name| (*name).to_owned())
        .unwrap_or_else(|| format!("signal {number}"))
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(Signal::from_name("SIGTERM"), Some(Signal::Term));
        assert_eq!(Signal::from_name("int"), Some(Signal::Int));
        assert_eq!(Signal::from_name("SIGBOGUS"), None);
        assert_eq!(Signal::Kill.number(), 9);
        assert_eq!(Signal::Usr2.number(), 12);
        assert_eq!(name_of_number(9), "SIGKILL");
        assert_eq!(name_of_number(64), "signal 64");
    }
}
