//! `roster web token add|list|rm`: the web dashboard's tokens (see
//! `roster_store::tokens`). They work with or without a running daemon:
//! the CLI changes `<home>/web/tokens.json` itself, and a daemon re-reads
//! the file when it changes, so a removal takes effect at once.
//!
//! `add` prints the token once, alone on the last line of its output
//! (`| tail -1` in scripts); only its hash is kept, and `list` shows
//! neither.

use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;

use roster_core::web::Scope;
use roster_store::clock::{rfc3339_millis, unix_millis};
use roster_store::home::HomeError;
use roster_store::tokens::{Token, TokenError, TokenStore};
use roster_store::Home;

/// `roster web ...`.
#[derive(Subcommand, Debug)]
pub enum WebCommand {
    /// The tokens that open the dashboard: add, list, rm.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// `roster web token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token and print it once, alone on the last line (only its
    /// hash is kept). Exactly one of --admin and --tenant.
    Add(AddArgs),
    /// The tokens: name, scope, read-only, created, last use (never a
    /// token or its hash).
    List {
        /// Print JSON: [{"name", "scope", "tenant", "read_only", "created", "last_used"}].
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it opens nothing from now on.
    Rm {
        /// The token's name.
        name: String,
    },
}

/// `roster web token add`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).args(["admin", "tenant"])))]
pub struct AddArgs {
    /// The token's name (the rules of agent names), shown in the journal
    /// beside what it did.
    pub name: String,
    /// It reaches every agent.
    #[arg(long)]
    pub admin: bool,
    /// It reaches only the agents whose `tenant` key is TENANT.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// It may look, never start, stop or restart.
    #[arg(long)]
    pub read_only: bool,
}

/// Runs `roster web ...`.
pub fn run(home: &Home, command: WebCommand) -> Result<ExitCode> {
    match command {
        WebCommand::Token {
            command: TokenCommand::Add(args),
        } => add(home, args),
        WebCommand::Token {
            command: TokenCommand::List { json },
        } => list(home, json),
        WebCommand::Token {
            command: TokenCommand::Rm { name },
        } => remove(home, &name),
    }
}

fn store_error(error: TokenError) -> anyhow::Error {
    anyhow::Error::msg(error.to_string())
}

/// The store of an existing home, `None` when the home or `<home>/web`
/// does not exist (read-only commands never create them).
fn existing_store(home: &Home) -> Result<Option<TokenStore>> {
    match home.open_verified() {
        Ok(home_dir) => TokenStore::open(&home_dir).map_err(store_error),
        Err(HomeError::Missing { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Admin => "admin".into(),
        Scope::Tenant(tenant) => format!("tenant {tenant}"),
    }
}

fn add(home: &Home, args: AddArgs) -> Result<ExitCode> {
    let scope = match args.tenant {
        Some(tenant) => {
            roster_core::web::check_tenant(&tenant).map_err(anyhow::Error::msg)?;
            Scope::Tenant(tenant)
        }
        None => Scope::Admin,
    };
    roster_store::tokens::check_name(&args.name).map_err(anyhow::Error::msg)?;
    let home_dir = home.create_verified()?;
    let store = TokenStore::create(&home_dir).map_err(store_error)?;
    let description = format!(
        "token {}: {}, {}",
        args.name,
        scope_text(&scope),
        if args.read_only {
            "read-only"
        } else {
            "may start, stop and restart"
        }
    );
    let token = store
        .add(&args.name, scope, args.read_only, unix_millis())
        .map_err(store_error)?;
    println!("{description}");
    println!(
        "shown this once: roster keeps only its hash (`roster web token rm {}` revokes it)",
        args.name
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Listed {
    name: String,
    scope: &'static str,
    tenant: Option<String>,
    read_only: bool,
    created: String,
    last_used: Option<String>,
}

fn listed(token: &Token) -> Listed {
    let (scope, tenant) = match &token.scope {
        Scope::Admin => ("admin", None),
        Scope::Tenant(tenant) => ("tenant", Some(tenant.clone())),
    };
    Listed {
        name: token.name.to_string(),
        scope,
        tenant,
        read_only: token.read_only,
        created: rfc3339_millis(token.created_ms),
        last_used: token.last_used_ms.map(rfc3339_millis),
    }
}

/// `2026-12-06T04:05:39Z`: to the second.
fn to_second(rfc3339: &str) -> String {
    match rfc3339.get(..19) {
        Some(seconds) => format!("{seconds}Z"),
        None => rfc3339.to_owned(),
    }
}

fn list(home: &Home, json: bool) -> Result<ExitCode> {
    let tokens = match existing_store(home)? {
        Some(store) => store.load().map_err(store_error)?.0.tokens,
        None => Vec::new(),
    };
    let rows: Vec<Listed> = tokens.iter().map(listed).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no web tokens\n  hint: roster web token add NAME --admin (or --tenant TENANT)");
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<[String; 5]> = tokens
        .iter()
        .zip(&rows)
        .map(|(token, row)| {
            [
                row.name.clone(),
                scope_text(&token.scope),
                if row.read_only { "read-only" } else { "acts" }.to_owned(),
                to_second(&row.created),
                row.last_used
                    .as_deref()
                    .map(to_second)
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::render::table(&["NAME", "SCOPE", "ACCESS", "CREATED", "LAST USE"], &cells)
    );
    Ok(ExitCode::SUCCESS)
}

fn remove(home: &Home, name: &str) -> Result<ExitCode> {
    let Some(store) = existing_store(home)? else {
        return Err(store_error(TokenError::NotFound(name.to_owned())));
    };
    let removed = store.remove(name).map_err(store_error)?;
    println!(
        "token {} ({}) revoked",
        removed.name,
        scope_text(&removed.scope)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_to_the_second() {
        assert_eq!(
            to_second("2026-12-06T04:05:39.123Z"),
            "2026-12-06T04:05:39Z"
        );
        assert_eq!(to_second("short"), "short");
    }
}
