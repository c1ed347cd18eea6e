//! `roster secret set|list|rm|init-key`: an agent's secrets, environment
//! variables kept out of the config (see `roster_store::secrets`).
//!
//! With a daemon running, `set`, `list` and `rm` go through it, so its copy
//! stays current; without one, the CLI changes the files itself, with the
//! same code. A value is read from stdin only, and never printed.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use roster_core::api::{SecretRemoveRequest, SecretSetRequest, SecretsReply};
use roster_store::secrets::{self, SecretError, Store, MAX_VALUE_BYTES};
use roster_store::Home;

use crate::client::NotRunning;

/// `roster secret ...`.
#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Store a secret of an agent; the value is read from stdin (one line).
    /// The agent gets it at its next start.
    Set {
        /// The agent.
        agent: String,
        /// The variable's name: [A-Za-z_][A-Za-z0-9_]*.
        key: String,
    },
    /// List the names of an agent's secrets (never their values).
    List {
        /// The agent.
        agent: String,
        /// Print JSON: {"agent", "keys": [...], "encrypted"}.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret of an agent; its next start no longer has it.
    Rm {
        /// The agent.
        agent: String,
        /// The variable's name.
        key: String,
    },
    /// Create <home>/secrets/key (32 random bytes, 0600) and encrypt every
    /// stored value with it from now on.
    InitKey,
}

/// Runs `roster secret ...`.
pub fn run(home: &Home, command: SecretCommand) -> Result<ExitCode> {
    match command {
        SecretCommand::Set { agent, key } => set(home, &agent, &key),
        SecretCommand::List { agent, json } => list(home, &agent, json),
        SecretCommand::Rm { agent, key } => remove(home, &agent, &key),
        SecretCommand::InitKey => init_key(home),
    }
}

fn check(agent: &str, key: Option<&str>) -> Result<roster_core::AgentName> {
    let name = secrets::check_agent(agent).map_err(anyhow::Error::msg)?;
    if let Some(key) = key {
        secrets::check_key(key).map_err(anyhow::Error::msg)?;
    }
    Ok(name)
}

/// Whether the CLI may change the files itself: no daemon answers, and
/// none holds the home (one starting has not bound its socket yet, and
/// would not see the change).
fn no_daemon(home: &Home) -> Result<()> {
    if home.is_locked()? {
        bail!(
            "a roster daemon holds {} but does not answer on its socket (starting or stopping?)\n  hint: try again in a moment",
            home.root().display()
        );
    }
    Ok(())
}

fn is_not_running(error: &anyhow::Error) -> bool {
    error.downcast_ref::<NotRunning>().is_some()
}

fn store_error(error: SecretError) -> anyhow::Error {
    anyhow::Error::msg(error.to_string())
}

/// Reads the value: one line from stdin, its line break stripped.
pub(crate) fn read_value(key: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let mut bytes = Vec::new();
    if stdin.is_terminal() {
        eprintln!("value of {key} (one line, not shown, then Enter):");
        bytes = read_line_unechoed(&stdin)?.into_bytes();
    } else {
        stdin
            .lock()
            .take(MAX_VALUE_BYTES as u64 + 3)
            .read_to_end(&mut bytes)
            .context("reading the value from stdin")?;
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() > MAX_VALUE_BYTES {
        bail!("the value on stdin is longer than {MAX_VALUE_BYTES} bytes");
    }
    let value = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the value is not UTF-8"))?;
    secrets::check_value(&value).map_err(|problem| {
        anyhow::anyhow!("{problem}\n  hint: pipe the value in, e.g. `printf %s \"$TOKEN\" | roster secret set AGENT {key}`")
    })?;
    Ok(value)
}

/// One line from the terminal with echo off (the value must not stay on
/// the screen or in a terminal recording); echo is restored after.
fn read_line_unechoed(stdin: &std::io::Stdin) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        let _ = tcsetattr(stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(stdin, SetArg::TCSANOW, saved);
    }
    read.context("reading the value from the terminal")?;
    Ok(line)
}

fn set(home: &Home, agent: &str, key: &str) -> Result<ExitCode> {
    let name = check(agent, Some(key))?;
    let value = read_value(key)?;
    let request = SecretSetRequest {
        agent: agent.to_owned(),
        key: key.to_owned(),
        value,
    };
    match super::client(home).post::<_, ()>("/v1/secrets/set", &request) {
        Ok(()) => {}
        Err(error) if is_not_running(&error) => {
            no_daemon(home)?;
            let home_dir = home.create_verified()?;
            Store::create(&home_dir)
                .and_then(|store| store.set(&name, key, &request.value))
                .map_err(store_error)?;
        }
        Err(error) => return Err(error),
    }
    eprintln!("{agent}: secret {key} set; it takes effect at the agent's next start");
    Ok(ExitCode::SUCCESS)
}

fn list(home: &Home, agent: &str, json: bool) -> Result<ExitCode> {
    let name = check(agent, None)?;
    let path = format!("/v1/secrets?agent={agent}");
    let reply: SecretsReply = match super::client(home).get(&path) {
        Ok(reply) => reply,
        Err(error) if is_not_running(&error) => {
            no_daemon(home)?;
            let store = match home.open_verified() {
                Ok(home_dir) => Store::open(&home_dir).map_err(store_error)?,
                Err(roster_store::home::HomeError::Missing { .. }) => None,
                Err(error) => return Err(error.into()),
            };
            let (keys, encrypted) = match store {
                Some(store) => (
                    store
                        .load(&name)
                        .map_err(store_error)?
                        .into_keys()
                        .collect(),
                    store.is_encrypted().map_err(store_error)?,
                ),
                None => (Vec::new(), false),
            };
            SecretsReply {
                agent: agent.to_owned(),
                keys,
                encrypted,
            }
        }
        Err(error) => return Err(error),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else if reply.keys.is_empty() {
        eprintln!("{agent} has no secrets");
    } else {
        for key in &reply.keys {
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(home: &Home, agent: &str, key: &str) -> Result<ExitCode> {
    let name = check(agent, Some(key))?;
    let request = SecretRemoveRequest {
        agent: agent.to_owned(),
        key: key.to_owned(),
    };
    match super::client(home).post::<_, ()>("/v1/secrets/rm", &request) {
        Ok(()) => {}
        Err(error) if is_not_running(&error) => {
            no_daemon(home)?;
            let store = match home.open_verified() {
                Ok(home_dir) => Store::open(&home_dir).map_err(store_error)?,
                Err(roster_store::home::HomeError::Missing { .. }) => None,
                Err(error) => return Err(error.into()),
            };
            let Some(store) = store else {
                return Err(store_error(SecretError::NotFound {
                    agent: agent.to_owned(),
                    key: key.to_owned(),
                }));
            };
            store.remove(&name, key).map_err(store_error)?;
        }
        Err(error) => return Err(error),
    }
    eprintln!("{agent}: secret {key} removed; the agent loses it at its next start");
    Ok(ExitCode::SUCCESS)
}

fn init_key(home: &Home) -> Result<ExitCode> {
    // The key only changes how files are stored: the daemon's copy of the
    // values stays the same, so this works with or without a daemon (the
    // store's lock keeps the two apart).
    let home_dir = home.create_verified()?;
    let encrypted = Store::create(&home_dir)
        .and_then(|store| store.init_key())
        .map_err(store_error)?;
    let key = home.root().join(secrets::DIRECTORY).join(secrets::KEY_FILE);
    println!(
        "created {} (keep a copy apart from backups of the home); {encrypted} agent file(s) encrypted",
        key.display()
    );
    Ok(ExitCode::SUCCESS)
}
