//! `roster export systemd|logrotate` (issue #9 point 6, issue #14 points 6
//! and 13): units for the home in use, programs by absolute path, root
//! agents said, and a logrotate snippet naming the log files roster writes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{have, ok, roster as run_roster, text, verify_unit};
use crate::util::{skip, wait_for, Roster, BIN};

const SECRET_IN_ENV_FILE: &str = "envfile-secret-3f9a";
const SECRET_IN_HOME: &str = "home-secret-77c2";

#[test]
fn exported_units_verify_and_hold_no_secret() {
    let test = "install::export::exported_units_verify_and_hold_no_secret";
    let roster = Roster::new();
    let dir = roster.dir.path();
    roster.write("web.env", &format!("API_KEY={SECRET_IN_ENV_FILE}\n"));
    let secrets = roster.home_path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    std::fs::write(secrets.join("web.env"), format!("TOKEN={SECRET_IN_HOME}\n")).expect("secret");
    let config = roster.config(
        "[log]\nmax_size = \"5MiB\"\nkeep = 4\ncompress = false\n\n\
         [agents.web]\n\
         command = [\"/bin/sh\", \"-c\", \"echo \\\"100% $HOME\\\"; exec sleep 1000\", \"a b\", \";\"]\n\
         user = \"roster-export-t\"\ngroup = \"roster-export-t\"\n\
         memory_max = \"256MiB\"\ncpu_quota = \"150%\"\ntasks_max = 32\nnofile = 1024\n\
         restart = \"on-failure\"\nrestart_delay = \"2s\"\nstop_signal = \"SIGINT\"\nstop_timeout = \"2500ms\"\n\
         env_file = \"web.env\"\n\
         env = { GREETING = \"hi \\\"there\\\" 50% $X\\nExecStartPre=/bin/false\", PLAIN = \"x\" }\n\n\
         [agents.bot]\ncommand = \"sleep 1000\"\nrestart = \"never\"\n",
    );
    let config_arg = config.to_str().expect("utf-8");
    let home_arg = roster.home_path().to_str().expect("utf-8");

    let printed = ok(&["--home", home_arg, "export", "systemd", "-f", config_arg]);
    assert!(printed.contains("# ---- roster-bot.service\n"), "{printed}");
    assert!(printed.contains("# ---- roster-web.service\n"), "{printed}");
    let out = dir.join("units");
    let listed = ok(&[
        "--home",
        home_arg,
        "export",
        "systemd",
        "-f",
        config_arg,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(listed.contains("roster-web.service"), "{listed}");
    let web = std::fs::read_to_string(out.join("roster-web.service")).expect("web unit");
    for text in [&printed, &web] {
        assert!(
            !text.contains(SECRET_IN_ENV_FILE),
            "a secret leaked:\n{text}"
        );
        assert!(!text.contains(SECRET_IN_HOME), "a secret leaked:\n{text}");
    }
    for line in [
        "User=roster-export-t".to_owned(),
        "Group=roster-export-t".to_owned(),
        format!("WorkingDirectory={}", dir.display()),
        "ExecStart=/bin/sh -c \"echo \\\"100%% $$HOME\\\"; exec sleep 1000\" \"a b\" \";\""
            .to_owned(),
        "Environment=\"GREETING=hi \\\"there\\\" 50%% $X\\nExecStartPre=/bin/false\"".to_owned(),
        format!("EnvironmentFile={}/web.env", dir.display()),
        format!("EnvironmentFile=-{home_arg}/secrets/web.env"),
        "Restart=on-failure".to_owned(),
        "RestartSec=2s".to_owned(),
        "KillSignal=SIGINT".to_owned(),
        "TimeoutStopSec=2500ms".to_owned(),
        "MemoryMax=268435456".to_owned(),
        "CPUQuota=150%".to_owned(),
        "TasksMax=32".to_owned(),
        "LimitNOFILE=1024".to_owned(),
        format!("StandardOutput=append:{home_arg}/logs/web.log"),
    ] {
        assert!(web.lines().any(|got| got == line), "{line} missing:\n{web}");
    }
    assert!(
        !web.lines().any(|line| line.starts_with("ExecStartPre")),
        "{web}"
    );
    let bot = std::fs::read_to_string(out.join("roster-bot.service")).expect("bot unit");
    assert!(!bot.contains("User="), "{bot}");
    assert!(bot.lines().any(|line| line == "Restart=no"), "{bot}");
    assert_absolute_program(&bot, "sleep");

    // systemd-analyze does not check that User= exists (systemd 252), so a
    // made-up user keeps this test from creating one.
    for unit in ["roster-web.service", "roster-bot.service"] {
        if verify_unit(&out.join(unit)).is_none() {
            skip(test, "no systemd-analyze: the units were not verified");
            break;
        }
    }
    let journal = ok(&[
        "--home",
        home_arg,
        "export",
        "systemd",
        "-f",
        config_arg,
        "--journal",
    ]);
    assert!(journal.contains("\nStandardOutput=journal\n"), "{journal}");
}

/// The unit's `ExecStart=` runs `name` by an absolute path to an
/// executable file.
fn assert_absolute_program(unit: &str, name: &str) {
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart:\n{unit}"));
    let program = Path::new(exec.split(' ').next().unwrap_or_default());
    assert!(
        program.is_absolute() && program.ends_with(name) && program.is_file(),
        "ExecStart does not name {name} by an absolute path:\n{unit}"
    );
}

/// `roster export systemd` with `args`, as uid/gid 65534 with `env`, in
/// `dir`; None when setpriv is missing.
fn export_as_nobody(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Option<String> {
    if !have("setpriv") {
        return None;
    }
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args)
        .env_remove("ROSTER_HOME")
        .env_remove("XDG_STATE_HOME")
        .current_dir(dir);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("roster as nobody");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    Some(stdout)
}

#[test]
fn exported_units_are_for_the_home_in_use() {
    let test = "install::export::exported_units_are_for_the_home_in_use";
    let roster = Roster::new();
    // systemd-analyze does not check that User= exists, and warns about nobody.
    let config = roster
        .config("[agents.web]\ncommand = [\"/bin/sleep\", \"1000\"]\nuser = \"roster-export-t\"\n");
    let config_arg = config.to_str().expect("utf-8");

    // --home: its secrets and its logs, not /var/lib/roster or /var/log.
    let home = roster.home_path().to_str().expect("utf-8");
    let unit = ok(&["--home", home, "export", "systemd", "-f", config_arg]);
    for line in [
        format!("EnvironmentFile=-{home}/secrets/web.env"),
        format!("StandardOutput=append:{home}/logs/web.log"),
    ] {
        assert!(
            unit.lines().any(|got| got == line),
            "{line} missing:\n{unit}"
        );
    }
    assert!(!unit.contains("/var/"), "{unit}");

    // No --home: the home roster itself would use, here a user's default.
    let world = tempfile::Builder::new()
        .prefix("roster-export-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(
        world.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    std::fs::copy(&config, world.path().join("roster.toml")).expect("config");
    let state = world.path().join("state");
    match export_as_nobody(
        world.path(),
        &["export", "systemd"],
        &[("XDG_STATE_HOME", &state), ("HOME", world.path())],
    ) {
        Some(unit) => {
            let home = state.join("roster");
            for line in [
                format!("EnvironmentFile=-{}/secrets/web.env", home.display()),
                format!("StandardOutput=append:{}/logs/web.log", home.display()),
            ] {
                assert!(
                    unit.lines().any(|got| got == line),
                    "{line} missing:\n{unit}"
                );
            }
        }
        None => skip(
            test,
            "no setpriv: the default home of a user was not checked",
        ),
    }

    // Encrypted secrets: systemd would hand the agent the ciphertext, so the
    // unit does not refer to them, and the export says so.
    let secrets = roster.home_path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    std::fs::write(secrets.join("key"), [7u8; 32]).expect("key");
    let output = run_roster(&["--home", home, "export", "systemd", "-f", config_arg]);
    let (unit, stderr) = text(&output);
    assert!(output.status.success(), "{unit}{stderr}");
    assert!(!unit.contains("EnvironmentFile="), "{unit}");
    assert!(
        stderr.contains("encrypted at rest") && stderr.contains(&format!("{home}/secrets/key")),
        "{stderr}"
    );
    let out = roster.path("units");
    ok(&[
        "--home",
        home,
        "export",
        "systemd",
        "-f",
        config_arg,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    if verify_unit(&out.join("roster-web.service")).is_none() {
        skip(test, "no systemd-analyze: the unit was not verified");
    }
}

#[test]
fn exported_programs_are_absolute_and_root_agents_are_said() {
    let test = "install::export::exported_programs_are_absolute_and_root_agents_are_said";
    let roster = Roster::new();
    let bin = roster.path("bin");
    std::fs::create_dir(&bin).expect("bin");
    let program = bin.join("my-agent");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 1000\n").expect("program");
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let config = roster.config(&format!(
        "[agents.tool]\ncommand = \"my-agent --fast\"\nuser = \"roster-export-t\"\nenv = {{ PATH = \"{}:/usr/bin:/bin\" }}\n\n\
         [agents.plain]\ncommand = \"sleep 1000\"\n",
        bin.display()
    ));
    let config_arg = config.to_str().expect("utf-8");
    let home = roster.home_path().to_str().expect("utf-8");
    let out = roster.path("units");
    let output = run_roster(&[
        "--home",
        home,
        "export",
        "systemd",
        "-f",
        config_arg,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let tool = std::fs::read_to_string(out.join("roster-tool.service")).expect("tool unit");
    let exec = format!("ExecStart={} --fast", program.display());
    assert!(
        tool.lines().any(|line| line == exec),
        "{exec} missing:\n{tool}"
    );
    let plain = std::fs::read_to_string(out.join("roster-plain.service")).expect("plain unit");
    assert_absolute_program(&plain, "sleep");
    // The agent without a user runs as root under its unit: said, with the fix.
    assert!(
        stderr.contains("warning: agent `plain` runs as root under its unit")
            && stderr.contains("set user = "),
        "{stderr}"
    );
    assert!(!stderr.contains("agent `tool` runs as root"), "{stderr}");
    for unit in ["roster-tool.service", "roster-plain.service"] {
        if verify_unit(&out.join(unit)).is_none() {
            skip(test, "no systemd-analyze: the units were not verified");
            break;
        }
    }

    // A program that cannot be found: an error naming it and the PATH
    // searched, and no unit.
    let missing = roster.write(
        "missing.toml",
        "[agents.ghost]\ncommand = \"no-such-agent-t\"\nuser = \"nobody\"\n",
    );
    let output = run_roster(&[
        "--home",
        home,
        "export",
        "systemd",
        "-f",
        missing.to_str().expect("utf-8"),
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("agent `ghost`: no-such-agent-t is not found in PATH (/usr/local/sbin:"),
        "{stderr}"
    );
    assert!(!stdout.contains("ExecStart"), "{stdout}");
}

#[test]
fn the_logrotate_snippet_names_the_log_a_running_agent_writes() {
    let test = "install::export::the_logrotate_snippet_names_the_log_a_running_agent_writes";
    let roster = Roster::new();
    let config = roster.config(
        "[log]\nmax_size = \"5MiB\"\nkeep = 4\ncompress = true\n\n\
         [agents.web]\ncommand = [\"/bin/sh\", \"-c\", \"echo hello from web; exec sleep 1000\"]\nuser = \"nobody\"\n",
    );
    roster.up();
    let log = roster.home_path().join("logs/web.log");
    wait_for(
        "web's first line in its log",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains("hello from web"))
                .then_some(())
        },
    );
    let config_arg = config.to_str().expect("utf-8");
    let home = roster.home_path().to_str().expect("utf-8");
    let snippet = ok(&["--home", home, "export", "logrotate", "-f", config_arg]);
    // Exactly the files, no glob: the one the agent writes.
    let files: Vec<&str> = snippet
        .lines()
        .find_map(|line| line.strip_suffix(" {"))
        .unwrap_or_else(|| panic!("no block:\n{snippet}"))
        .split(' ')
        .map(|quoted| quoted.trim_matches('"'))
        .collect();
    assert_eq!(files, vec![log.to_str().expect("utf-8")], "{snippet}");
    for line in [
        "    maxsize 5242880",
        "    rotate 4",
        "    compress",
        "    delaycompress",
        "    copytruncate",
    ] {
        assert!(
            snippet.lines().any(|got| got == line),
            "{line} missing:\n{snippet}"
        );
    }
    // And the unit exported for the same agent appends to that file.
    let unit = ok(&["--home", home, "export", "systemd", "-f", config_arg]);
    let append = format!("StandardOutput=append:{}", log.display());
    assert!(
        unit.lines().any(|line| line == append),
        "{append} missing:\n{unit}"
    );
    if !have("logrotate") {
        skip(
            test,
            "no logrotate (Debian's logrotate package): the snippet was not checked",
        );
        return;
    }
    let path = roster.write("roster.logrotate", &snippet);
    let state = roster.path("logrotate.state");
    let output = Command::new("logrotate")
        .arg("-d")
        .arg("-s")
        .arg(&state)
        .arg(&path)
        .output()
        .expect("logrotate");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let said = format!("{stdout}{stderr}");
    assert!(
        !said.to_lowercase().contains("error"),
        "logrotate -d found a problem:\n{said}"
    );
    assert!(
        said.contains(&format!("considering log {}", log.display()))
            && !said.contains(&format!("log {} does not exist", log.display())),
        "logrotate -d did not find the agent's log:\n{said}"
    );
}
