//! `roster init [DIR]`: asks how many agents, customers and servers (on a
//! terminal, or from flags), recommends a pattern with its reasons, and
//! writes `DIR/roster.toml` and a starter agent per kind. It never
//! overwrites a file without `--force`. The decisions are in `plan`, the
//! text in `templates`; this module only asks, prints and writes.

pub mod plan;
pub mod templates;

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use plan::{Answers, Pattern};

/// A line on stdout. A closed stdout (`roster init | head`) must not stop
/// the command halfway through writing files, as `println!` would.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// A line on stderr, the same way.
macro_rules! warn {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// What the command line said; `None`: ask, or take the default.
#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// The project's directory (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// How many kinds of agent [default: 1].
    #[arg(long, value_name = "N", value_parser = parse_agents_arg)]
    pub agents: Option<u32>,
    /// The kinds' names, comma-separated (e.g. support,billing); sets
    /// --agents [default: worker, or worker1..workerN].
    #[arg(long, value_name = "NAMES", value_parser = parse_kinds_arg)]
    pub kinds: Option<Kinds>,
    /// How many customers, each with its own instance of every kind [default: 1].
    #[arg(long, value_name = "N", value_parser = parse_customers_arg)]
    pub customers: Option<u32>,
    /// How many servers [default: 1].
    #[arg(long, value_name = "N", value_parser = parse_servers_arg)]
    pub servers: Option<u32>,
    /// Requests (units of work) a day, all agents together [default: 1000].
    #[arg(long, value_name = "N", value_parser = parse_requests_arg)]
    pub requests_per_day: Option<u64>,
    /// Uptime target in percent, above 0 and at most 100 [default: 99.9].
    #[arg(long, value_name = "PCT", value_parser = plan::parse_uptime)]
    pub uptime: Option<f64>,
    /// The server's memory, e.g. 2GiB or 512MiB [default: from /proc/meminfo].
    #[arg(long, value_name = "SIZE", value_parser = plan::parse_ram)]
    pub ram: Option<u64>,
    /// The first agent's /health port; each instance gets the next one [default: 8100].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Never ask: take the flags and the defaults (also when stdin is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Overwrite roster.toml and the starter agents if they exist.
    #[arg(long)]
    pub force: bool,
}

/// The names `--kinds` gave (one value to clap, however many names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kinds(pub Vec<String>);

/// `--kinds` (clap's value parser).
pub fn parse_kinds_arg(raw: &str) -> Result<Kinds, String> {
    plan::parse_names(raw).map(Kinds)
}

/// `--agents` (clap's value parser: a bad value exits 2).
pub fn parse_agents_arg(raw: &str) -> Result<u32, String> {
    count_arg(raw, 1, plan::MAX_AGENTS)
}

/// `--customers`.
pub fn parse_customers_arg(raw: &str) -> Result<u32, String> {
    count_arg(raw, 1, plan::MAX_CUSTOMERS)
}

/// `--servers`.
pub fn parse_servers_arg(raw: &str) -> Result<u32, String> {
    count_arg(raw, 1, plan::MAX_SERVERS)
}

/// `--requests-per-day`.
pub fn parse_requests_arg(raw: &str) -> Result<u64, String> {
    plan::parse_count(raw, 0, u64::MAX / 2)
}

fn count_arg(raw: &str, min: u32, max: u32) -> Result<u32, String> {
    plan::parse_count(raw, u64::from(min), u64::from(max))
        .and_then(|count| u32::try_from(count).map_err(|_| format!("it must be at most {max}")))
}

const MIB: u64 = 1024 * 1024;

/// The host's memory, from /proc/meminfo.
fn host_ram() -> Option<u64> {
    plan::meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// Asks `question` until `parse` accepts the answer; an empty answer is
/// `default`. Fails when the input ends.
pub fn ask<T>(
    input: &mut impl BufRead,
    output: &mut impl Write,
    question: &str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T> {
    loop {
        write!(output, "{question} [{default}]: ")?;
        output.flush()?;
        let mut answer = String::new();
        if input.read_line(&mut answer)? == 0 {
            writeln!(output)?;
            anyhow::bail!("no answer (the input ended); nothing was written");
        }
        let answer = answer.trim();
        let answer = if answer.is_empty() { default } else { answer };
        match parse(answer) {
            Ok(value) => return Ok(value),
            Err(error) => writeln!(output, "  {error}; try again")?,
        }
    }
}

/// The answers: flags first, then (on a terminal, without `--yes`) the
/// operator's, then the defaults.
fn gather(
    options: &Options,
    defaults: &Answers,
    interactive: Option<(&mut dyn BufRead, &mut dyn Write)>,
) -> Result<Answers> {
    let Some((mut input, mut output)) = interactive else {
        return Ok(Answers {
            agents: options
                .kinds
                .as_ref()
                .map(|kinds| kinds.0.len() as u32)
                .or(options.agents)
                .unwrap_or(defaults.agents),
            names: options
                .kinds
                .clone()
                .map(|kinds| kinds.0)
                .unwrap_or_default(),
            customers: options.customers.unwrap_or(defaults.customers),
            servers: options.servers.unwrap_or(defaults.servers),
            requests_per_day: options
                .requests_per_day
                .unwrap_or(defaults.requests_per_day),
            uptime: options.uptime.unwrap_or(defaults.uptime),
            ram: options.ram.unwrap_or(defaults.ram),
        });
    };
    let (input, output) = (&mut input, &mut output);
    let agents = match options
        .kinds
        .as_ref()
        .map(|kinds| kinds.0.len() as u32)
        .or(options.agents)
    {
        Some(value) => value,
        None => ask(
            input,
            output,
            "How many kinds of agent?",
            &defaults.agents.to_string(),
            parse_agents_arg,
        )?,
    };
    let names = if let Some(kinds) = &options.kinds {
        kinds.0.clone()
    } else {
        let defaults = plan::default_names(agents);
        let question = if agents == 1 {
            "Its name?"
        } else {
            "Their names, comma-separated?"
        };
        ask(input, output, question, &defaults.join(","), |raw| {
            let names = plan::parse_names(raw)?;
            if names.len() == agents as usize {
                Ok(names)
            } else {
                Err(format!("{agents} names, please"))
            }
        })?
    };
    let customers = match options.customers {
        Some(value) => value,
        None => ask(
            input,
            output,
            "How many customers, each with its own instance?",
            &defaults.customers.to_string(),
            parse_customers_arg,
        )?,
    };
    let servers = match options.servers {
        Some(value) => value,
        None => ask(
            input,
            output,
            "How many servers?",
            &defaults.servers.to_string(),
            parse_servers_arg,
        )?,
    };
    let requests_per_day = match options.requests_per_day {
        Some(value) => value,
        None => ask(
            input,
            output,
            "How many requests a day?",
            &defaults.requests_per_day.to_string(),
            parse_requests_arg,
        )?,
    };
    let uptime = match options.uptime {
        Some(value) => value,
        None => ask(
            input,
            output,
            "Uptime target, in percent?",
            &plan::format_percent(defaults.uptime),
            plan::parse_uptime,
        )?,
    };
    let ram = match options.ram {
        Some(value) => value,
        None => ask(
            input,
            output,
            "The server's memory?",
            &plan::format_size(defaults.ram),
            plan::parse_ram,
        )?,
    };
    Ok(Answers {
        agents,
        customers,
        servers,
        requests_per_day,
        uptime,
        ram,
        names,
    })
}

/// Runs `roster init`.
pub fn run(options: &Options) -> Result<ExitCode> {
    if let (Some(Kinds(kinds)), Some(agents)) = (&options.kinds, options.agents) {
        if kinds.len() != agents as usize {
            warn!(
                "error: --agents {agents} but --kinds names {}\n  hint: pass one of them",
                kinds.len()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let measured = host_ram();
    let defaults = Answers::defaults(measured.map_or(1024 * MIB, |ram| ram / MIB * MIB));
    let stdin = std::io::stdin();
    let interactive = !options.yes && stdin.is_terminal();
    let answers = if interactive {
        say!("roster init: a few questions to choose how to lay out your agents.");
        say!("Press Enter for the answer in brackets.");
        if measured.is_none() {
            say!("(/proc/meminfo could not be read: the memory below is a guess)");
        }
        let mut input = stdin.lock();
        let mut output = std::io::stdout();
        let answers = gather(options, &defaults, Some((&mut input, &mut output)))?;
        say!("");
        answers
    } else {
        gather(options, &defaults, None)?
    };
    let first_port = options.port.unwrap_or(plan::DEFAULT_PORT);
    let Some(instances) = plan::instances(&answers, first_port, &port_is_free) else {
        warn!(
            "error: {} instances from port {first_port} run past port 65535 (skipping ports in use)\n  hint: pass a lower --port",
            answers.instances()
        );
        return Ok(ExitCode::from(2));
    };
    let skipped_ports = plan::skipped_ports(first_port, &instances);
    let recommendation = plan::recommend(&answers);
    let as_root = nix::unistd::geteuid().is_root();

    say!("Recommended: {}", recommendation.pattern.name());
    for reason in &recommendation.reasons {
        say!("  - {reason}");
    }
    if !recommendation.fleet.is_empty() {
        say!("Fleet mode (roster fleet) is the better fit:");
        for reason in &recommendation.fleet {
            say!("  - {reason}");
        }
        say!("  The config below runs everything on this server; `roster fleet --help` spreads it over several.");
    }
    if !skipped_ports.is_empty() {
        // An explicit --port that is taken is worth a warning: the agents
        // do not get the ports asked for. The default's is a note.
        let list = skipped_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let ports = instances
            .iter()
            .map(|instance| instance.port.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if options.port.is_some() {
            warn!(
                "warning: port {list} is in use on 127.0.0.1: the agents get {ports} instead\n  hint: free it, or pass another --port"
            );
        } else {
            say!("Ports: {list} is in use on 127.0.0.1, so the agents' /health ports are {ports}.");
        }
    }
    if measured.is_none() && options.ram.is_none() {
        say!(
            "  (memory: /proc/meminfo could not be read, {} assumed; pass --ram)",
            plan::format_size(answers.ram)
        );
    }
    say!("");

    let mut files: Vec<(String, String)> = vec![(
        "roster.toml".into(),
        templates::config_text(
            &answers,
            &recommendation,
            &instances,
            &templates::Layout {
                as_root,
                skipped_ports: skipped_ports.clone(),
            },
        ),
    )];
    for (index, kind) in plan::kinds(&answers).iter().enumerate() {
        let port = instances
            .iter()
            .find(|instance| &instance.kind == kind)
            .map_or(first_port.saturating_add(index as u16), |instance| {
                instance.port
            });
        files.push((templates::agent_file(kind), templates::agent_py(kind, port)));
    }

    let dir = &options.dir;
    let existing: Vec<PathBuf> = files
        .iter()
        .map(|(relative, _)| dir.join(relative))
        .filter(|path| path.symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() && !options.force {
        warn!("error: these files exist already; nothing was written:");
        for path in &existing {
            warn!("  {}", path.display());
        }
        warn!("  hint: pass --force to overwrite them, or choose another directory");
        return Ok(ExitCode::from(1));
    }

    // Below DIR nothing is followed: a link planted at agents/ or work/
    // (by whoever else can write there) would send a root init's files,
    // and later a tenant's chown, anywhere on the machine.
    let below: Vec<PathBuf> = files
        .iter()
        .filter_map(|(relative, _)| Path::new(relative).parent().map(Path::to_path_buf))
        .chain(
            instances
                .iter()
                .map(|instance| templates::work_dir(instance).into()),
        )
        .collect();
    if let Some(link) = link_below(dir, &below) {
        warn!(
            "error: {} is a symbolic link; roster init writes only into real directories below {}; nothing was written",
            link.display(),
            dir.display()
        );
        warn!("  hint: remove the link (or choose another directory)");
        return Ok(ExitCode::from(1));
    }

    // All or nothing: the directories, then every file staged beside its
    // place, and only when all are on disk, the renames (which need no
    // space). A failure on the way (a full disk) removes what this run
    // made and leaves what was there.
    let mut made: Vec<PathBuf> = Vec::new();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let prepared = (|| -> Result<()> {
        made.extend(create_directory(dir)?);
        for kind in plan::kinds(&answers) {
            made.extend(create_directory(&dir.join("agents").join(&kind))?);
        }
        for instance in &instances {
            made.extend(create_directory(&dir.join(templates::work_dir(instance)))?);
        }
        for (relative, text) in &files {
            let path = dir.join(relative);
            let temporary = stage_file(&path, text)?;
            staged.push((temporary, path));
        }
        Ok(())
    })();
    if let Err(error) = prepared {
        for (temporary, _) in &staged {
            let _ = std::fs::remove_file(temporary);
        }
        for created in made.iter().rev() {
            let _ = std::fs::remove_dir(created);
        }
        return Err(error.context("nothing was written"));
    }
    for (temporary, path) in &staged {
        std::fs::rename(temporary, path)
            .with_context(|| format!("moving {} into place", path.display()))?;
        say!("wrote {}", path.display());
    }
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    say!(
        "made {} working folder{} under {}",
        instances.len(),
        if instances.len() == 1 { "" } else { "s" },
        dir.join("work").display()
    );
    if as_root {
        for blocked in closed_ancestors(dir) {
            warn!(
                "warning: {} is closed to other users: the agents' users cannot reach their files\n  hint: chmod o+x {}",
                blocked.display(),
                blocked.display()
            );
        }
    }

    if as_root && !system_python() {
        warn!(
            "warning: no python3 in {}: the agents' users cannot run root's own\n  hint: install python3 system-wide (apt-get install python3), or set env.PATH in [defaults]",
            templates::SYSTEM_PATH
        );
    }

    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", shell_word(&dir.display().to_string()))
    };
    let steps = [
        (
            format!("{cd}roster up -f roster.toml"),
            "start the daemon and the agents",
        ),
        (
            "roster status".to_owned(),
            "every agent running and healthy?",
        ),
        ("roster logs -f".to_owned(), "one line per unit of work"),
        ("roster down".to_owned(), "stop them gracefully"),
    ];
    let width = steps.iter().map(|(step, _)| step.len()).max().unwrap_or(0);
    say!("");
    say!("Next steps:");
    for (step, why) in &steps {
        say!("  {step:width$}   # {why}");
    }
    let kinds = plan::kinds(&answers);
    say!(
        "Then put the real work into do_one_unit() in {}.",
        kinds
            .iter()
            .map(|kind| templates::agent_file(kind))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if recommendation.pattern == Pattern::MultiTenant && !as_root {
        say!(
            "To give each tenant its own user, run roster (and roster init) as root: the config then sets user = \"tenant-{{name}}\"."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether nothing listens on `port` on 127.0.0.1 now (a bind test): an
/// agent given a taken port would crash-loop on it.
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The first symbolic link among the existing directories of `relatives`
/// (each a path below `dir`, checked component by component).
fn link_below(dir: &Path, relatives: &[PathBuf]) -> Option<PathBuf> {
    relatives.iter().find_map(|relative| {
        let mut path = dir.to_path_buf();
        relative
            .components()
            .filter(|component| !matches!(component, std::path::Component::CurDir))
            .find_map(|component| {
                path.push(component);
                path.symlink_metadata()
                    .is_ok_and(|meta| meta.file_type().is_symlink())
                    .then(|| path.clone())
            })
    })
}

/// Creates `path` (and missing parents) as 0755: the agents' users read
/// their code through it. An existing directory keeps its mode: roster
/// gives an instance's folder to its user (0700). Returns the directories
/// it created, outermost first.
fn create_directory(path: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut walk = Some(path);
    while let Some(current) = walk {
        if current.as_os_str().is_empty() || current.symlink_metadata().is_ok() {
            break;
        }
        missing.push(current.to_path_buf());
        walk = current.parent();
    }
    missing.reverse();
    for created in &missing {
        std::fs::create_dir(created).with_context(|| format!("creating {}", created.display()))?;
        std::fs::set_permissions(created, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", created.display()))?;
    }
    Ok(missing)
}

/// Writes `text` as a 0644 file beside `path`, synced, for a rename into
/// place (a link at `path` is then replaced, never followed); returns the
/// temporary file's path.
fn stage_file(path: &Path, text: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.roster-init.tmp"));
    let _ = std::fs::remove_file(&temporary);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("writing {}", path.display()));
    }
    Ok(temporary)
}

/// Whether the system's PATH (the one agents of their own users get) has
/// a python3 anyone may run.
fn system_python() -> bool {
    templates::SYSTEM_PATH.split(':').any(|folder| {
        std::fs::metadata(Path::new(folder).join("python3"))
            .is_ok_and(|metadata| metadata.is_file() && metadata.mode() & 0o001 != 0)
    })
}

/// `dir` and its ancestors that other users cannot pass through.
fn closed_ancestors(dir: &Path) -> Vec<PathBuf> {
    let Ok(absolute) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    absolute
        .ancestors()
        .filter(|path| std::fs::metadata(path).is_ok_and(|metadata| metadata.mode() & 0o001 == 0))
        .map(Path::to_path_buf)
        .collect()
}

/// `word` as one shell word.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-+:@%".contains(&byte))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_answer_is_asked_again_and_empty_takes_the_default() {
        let mut input = std::io::Cursor::new("three\n0\n3\n\n".as_bytes());
        let mut output = Vec::new();
        let agents = ask(
            &mut input,
            &mut output,
            "How many kinds of agent?",
            "1",
            parse_agents_arg,
        )
        .expect("answered");
        assert_eq!(agents, 3);
        let text = String::from_utf8(output).expect("utf-8");
        assert_eq!(text.matches("How many kinds of agent? [1]: ").count(), 3);
        assert!(
            text.contains("\"three\" is not a whole number; try again"),
            "{text}"
        );
        assert!(text.contains("it must be at least 1; try again"), "{text}");
        let mut output = Vec::new();
        let default = ask(&mut input, &mut output, "Q?", "99.9", plan::parse_uptime);
        assert_eq!(default.expect("the default"), 99.9);
        let mut output = Vec::new();
        assert!(ask(&mut input, &mut output, "Q?", "1", parse_agents_arg).is_err());
    }

    #[test]
    fn flags_answer_without_asking() {
        let options = Options {
            agents: Some(2),
            customers: Some(3),
            ..Options::default()
        };
        // The names (given two, then one too few), servers, requests,
        // uptime and memory are still asked.
        let mut input = std::io::Cursor::new("triage\ntriage, billing\n\n\n\n\n".as_bytes());
        let mut output = Vec::new();
        let answers = gather(
            &options,
            &Answers::defaults(2 << 30),
            Some((&mut input, &mut output)),
        )
        .expect("answers");
        assert_eq!((answers.agents, answers.customers), (2, 3));
        assert_eq!(answers.names, ["triage", "billing"]);
        let text = String::from_utf8(output).expect("utf-8");
        assert!(!text.contains("kinds of agent"), "{text}");
        assert!(
            text.contains("Their names, comma-separated? [worker1,worker2]: "),
            "{text}"
        );
        assert!(text.contains("2 names, please; try again"), "{text}");
        assert!(text.contains("The server's memory? [2GiB]: "), "{text}");
        // --kinds answers the count and the names.
        let named = Options {
            kinds: Some(Kinds(vec!["support".into()])),
            ..Options::default()
        };
        let mut input = std::io::Cursor::new("\n\n\n\n\n".as_bytes());
        let mut output = Vec::new();
        let answers = gather(
            &named,
            &Answers::defaults(2 << 30),
            Some((&mut input, &mut output)),
        )
        .expect("answers");
        assert_eq!(
            (answers.agents, answers.names.clone()),
            (1, vec!["support".to_owned()])
        );
        let text = String::from_utf8(output).expect("utf-8");
        assert!(!text.contains("name"), "{text}");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/tmp/project"), "/tmp/project");
        assert_eq!(shell_word("my project"), "'my project'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
