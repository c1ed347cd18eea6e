//! The exact text of config errors, every kind of key error in every
//! table: the checker may be reorganised, but what users read (message,
//! FILE:LINE:COL and hint) stays byte for byte the same.

use std::path::Path;

use super::parse;

fn rendered(text: &str) -> String {
    parse("roster.toml", text, Path::new("/srv/app"))
        .expect_err("the file has mistakes")
        .to_string()
}

/// Every kind of mistake in an agent's plain keys: unknown (with and without
/// a suggestion), wrong type, bad duration, bad size, out of range, unknown
/// signal and policy.
#[test]
fn every_kind_of_agent_key_error_is_pinned() {
    let text = r#"[agents.a]
command = "true"
restart_dealy = "1s"
zzz = 1
restart_delay = 5
stop_timeout = "soon"
crash_loop = 1001
crash_window = "1x"
tasks_max = "many"
allow_root = "yes"
memory_max = "lots"
nofile = 8
failed_retry = "later"
stop_signal = 15
drain_signal = "SIGNOPE"
restart = "sometimes"
ready_after = "-1s"
stable_after = ""
backoff_max = true
drain_timeout = "1d"
create_user = 0
"#;
    let expected = r#"roster.toml:3:1: unknown key `restart_dealy` in agent `a`
  hint: did you mean `restart_delay`?
roster.toml:4:1: unknown key `zzz` in agent `a`
  hint: known keys here: command, cwd, env, restart, restart_delay, backoff_max, stop_signal, stop_timeout, ready_after, stable_after, crash_loop, crash_window, failed_retry, health, drain_signal, drain_timeout, watch, metrics, deploy, listen, user, group, allow_root, create_user, memory_max, cpu_quota, tasks_max, nofile, env_file, tenant, stderr, watch_paths, instances
roster.toml:5:17: `restart_delay` must be a string
roster.toml:6:16: bad duration for `stop_timeout`: expected a number at "soon"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:7:14: `crash_loop` is 1001; it must be between 0 and 1000
roster.toml:8:16: bad duration for `crash_window`: unknown unit "x"; use ms, s, m, h or d
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:9:13: `tasks_max` must be a whole number
roster.toml:10:14: `allow_root` must be true or false
roster.toml:11:14: bad size for `memory_max`: "lots" does not start with a number
  hint: write e.g. "512KiB", "10MiB" or "1GiB"
roster.toml:12:10: `nofile` is 8; it must be between 16 and 1073741824
roster.toml:13:16: bad duration for `failed_retry`: expected a number at "later"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:14:15: `stop_signal` must be a string
roster.toml:15:16: unknown signal "SIGNOPE"
  hint: use one of SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH
roster.toml:16:11: unknown restart policy "sometimes"
  hint: use "always", "on-failure" or "never"
roster.toml:17:15: bad duration for `ready_after`: expected a number at "-1s"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:18:16: bad duration for `stable_after`: the duration is empty
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:19:15: `backoff_max` must be a string
roster.toml:21:15: `create_user` must be true or false"#;
    assert_eq!(rendered(text), expected);
}

/// Agent keys read by a function of their own: command, env, cpu_quota,
/// user and group, the sub-tables, sizes below their floor.
#[test]
fn agent_keys_with_their_own_readers_keep_their_messages() {
    let text = r#"[agents.b]
command = ["a", 1]
memory_max = -1
cpu_quota = true
env = 3
health = 1
deploy = 2
listen = 3
metrics = "ftp://x"
watch = 1
user = "bad/user"
group = "-g"
env_file = ""
cwd = ""

[agents.c]
command = "'unclosed"
memory_max = "1KiB"
cpu_quota = "250"
env = { "A=B" = "x", N = 1 }
env_file = 3

[agents.d]
command = 5
nofile = 1073741825
"#;
    let expected = r#"roster.toml:2:17: every element of `command` must be a string
  hint: quote numbers too: ["sleep", "10"]
roster.toml:3:14: `memory_max` must be a size such as "10MiB"
roster.toml:4:13: `cpu_quota` must be a string
roster.toml:5:7: `env` must be a table of strings
  hint: e.g. env = { MODEL = "small" }
roster.toml:6:10: `health` must be a table
  hint: write it as [agents.b.health] with one of http, tcp or exec
roster.toml:7:10: `deploy` must be a table
  hint: write it as [agents.b.deploy]
roster.toml:8:10: `listen` must be a table
  hint: write it as [agents.b.listen] with e.g. http = "127.0.0.1:8080"
roster.toml:9:11: bad metrics URL "ftp://x": the URL must start with http://
  hint: e.g. metrics = "http://127.0.0.1:8001/metrics"
roster.toml:10:9: [[agents.b.watch]] must be an array of tables
  hint: write each rule as its own [[...watch]] table
roster.toml:11:8: bad user "bad/user" for agent `b`
  hint: a user is a number or a name of letters, digits, '.', '_' and '-' (at most 32), not starting with '-'; {name} is replaced by the agent's name
roster.toml:12:9: bad group "-g" for agent `b`
  hint: a group is a number or a name of letters, digits, '.', '_' and '-' (at most 32), not starting with '-'; {name} is replaced by the agent's name
roster.toml:13:12: `env_file` is empty
roster.toml:14:7: `cwd` is empty
  hint: leave it out to use the config file's directory
roster.toml:17:11: `command` cannot be split into words: missing closing quote
  hint: check the quotes, or write the command as an array of strings
roster.toml:18:14: `memory_max` below 1MiB would kill the agent at once
  hint: write e.g. "512MiB"
roster.toml:20:9: "A=B" is not a valid environment variable name
roster.toml:20:26: env `N` must be a string
  hint: quote it: numbers and booleans reach the agent as text anyway
roster.toml:21:12: `env_file` must be a string
roster.toml:24:11: `command` must be a string or an array of strings
  hint: e.g. command = ["python3", "main.py"]
roster.toml:25:10: `nofile` is 1073741825; it must be between 16 and 1073741824"#;
    assert_eq!(rendered(text), expected);
}

/// `[defaults]`: unknown keys (with and without a suggestion) and a bad
/// value, said once though two agents get it. The keys it may set are listed
/// in the order of the agent keys, from the same table.
#[test]
fn defaults_key_errors_are_pinned() {
    let text = r#"[defaults]
restrat = "always"
command = "x"
stop_timeout = 3
cpu_quota = "0%"

[agents.a]
command = "true"

[agents.b]
command = "true"
"#;
    let expected = r#"roster.toml:2:1: unknown key `restrat` in [defaults]
  hint: did you mean `restart`?
roster.toml:3:1: unknown key `command` in [defaults]
  hint: known keys here: env, restart, restart_delay, backoff_max, stop_signal, stop_timeout, ready_after, stable_after, crash_loop, crash_window, failed_retry, health, drain_signal, drain_timeout, watch, user, group, allow_root, create_user, memory_max, cpu_quota, tasks_max, nofile, env_file, stderr
roster.toml:4:16: `stop_timeout` must be a string
roster.toml:5:13: bad cpu_quota: it must be above 0%
  hint: write a percentage of one core, e.g. "50%" or "200%""#;
    assert_eq!(rendered(text), expected);
}

/// The top level, `[log]`, `[metrics]` and `[host]`.
#[test]
fn top_level_log_metrics_and_host_key_errors_are_pinned() {
    let text = r#"agent = 1
[log]
kepp = 3
keep = -1
compress = 1
max_size = true
[metrics]
lisen = "x"
bearer_token_file = 3
[host]
wach = 1
"#;
    let expected = r#"roster.toml:1:1: unknown key `agent` in the top level
  hint: did you mean `agents`?
roster.toml:3:1: unknown key `kepp` in [log]
  hint: did you mean `keep`?
roster.toml:4:8: `keep` is -1; it must be between 0 and 10000
roster.toml:5:12: `compress` must be true or false
roster.toml:6:12: `max_size` must be a size such as "10MiB"
roster.toml:8:1: unknown key `lisen` in [metrics]
  hint: did you mean `listen`?
roster.toml:9:21: `bearer_token_file` must be a string
roster.toml:11:1: unknown key `wach` in [host]
  hint: did you mean `watch`?"#;
    assert_eq!(rendered(text), expected);
}

/// `[agents.NAME.health]`: out of range, wrong type, below the probe floor,
/// bad duration, unknown key without a close match.
#[test]
fn health_key_errors_are_pinned() {
    let text = r#"[agents.c]
command = "true"
[agents.c.health]
exec = ["true"]
retries = 0
interval = 5
timeout = "50ms"
start_period = "x"
on_failure = 1
cheks = 1
"#;
    let expected = r#"roster.toml:5:11: `retries` is 0; it must be between 1 and 1000
roster.toml:6:12: `interval` must be a string
roster.toml:7:11: `timeout` must be at least 100ms
  hint: a shorter cut fails answers that are merely a little slow; write e.g. timeout = "1s"
roster.toml:8:16: bad duration for `start_period`: expected a number at "x"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:9:14: `on_failure` must be a string
roster.toml:10:1: unknown key `cheks` in [agents.c.health]
  hint: known keys here: http, tcp, exec, interval, timeout, retries, start_period, on_failure"#;
    assert_eq!(rendered(text), expected);
}

/// `[agents.NAME.deploy]`: out of range, zero timeouts, a size below its
/// floor, wrong types, a duration without a unit, unknown key.
#[test]
fn deploy_key_errors_are_pinned() {
    let text = r#"[agents.d]
command = "true"
[agents.d.deploy]
keep = 1
build_timeout = "0s"
max_size = "1KiB"
strategy = 3
smoke_test = 5
verify_for = "1"
ready_timeout = "0s"
smoke_timeout = "x"
stratgy = "restart"
"#;
    let expected = r#"roster.toml:4:8: `keep` is 1; it must be between 2 and 1000
roster.toml:5:17: `build_timeout` must be above 0s
roster.toml:6:12: `max_size` must be at least 1MiB
  hint: it bounds the unpacked size of a release; the default is 1GiB
roster.toml:7:12: `strategy` must be a string
roster.toml:8:14: `command` must be a string or an array of strings
  hint: e.g. command = ["python3", "main.py"]
roster.toml:9:14: bad duration for `verify_for`: 1 has no unit; write e.g. "1s"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:10:17: `ready_timeout` must be above 0s
roster.toml:11:17: bad duration for `smoke_timeout`: expected a number at "x"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:12:1: unknown key `stratgy` in [agents.d.deploy]
  hint: did you mean `strategy`?"#;
    assert_eq!(rendered(text), expected);
}

/// `[[agents.NAME.watch]]`, `[[host.watch]]` and `[[notify]]`.
#[test]
fn watch_and_notify_key_errors_are_pinned() {
    let text = r#"[agents.w]
command = "true"
[[agents.w.watch]]
metric = "cpu_percent"
above = "x"
for = 3
repeat_every = "10ms"
predict = "soon"
actoin = "alert"
[[agents.w.watch]]
metric = "memory_percent"
below = 5
above = 6
within = "0s"
[[host.watch]]
metric = "disk_percent"
above = 1
path = "rel"
[[notify]]
file = 3
timeout = 5
[[notify]]
webhook = "http://127.0.0.1:1/"
bogus = 1
"#;
    let expected = r#"roster.toml:4:10: the `cpu_percent` rule has no threshold
  hint: add above = N (or below = N)
roster.toml:5:9: `above` must be a number
  hint: e.g. above = 85
roster.toml:6:7: `for` must be a string
roster.toml:7:16: `repeat_every` must be at least 1s
roster.toml:8:11: bad duration for `predict`: expected a number at "soon"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
roster.toml:9:1: unknown key `actoin` in [[agents.w.watch]]
  hint: did you mean `action`?
roster.toml:13:1: give one of `above` and `below`, not both
roster.toml:14:10: `within` must be above 0s
roster.toml:16:10: a disk_percent rule needs a `path`
  hint: e.g. path = "/"
roster.toml:18:8: `path` must be absolute
  hint: e.g. path = "/"
roster.toml:20:8: `file` must be a string
roster.toml:21:11: `timeout` must be a string
roster.toml:24:1: unknown key `bogus` in [[notify]] #2
  hint: known keys here: webhook, alertmanager, exec, file, timeout"#;
    assert_eq!(rendered(text), expected);
}

/// `[web]`: a bad address, an unknown key, a wrong type, a session ttl out
/// of bounds, one TLS file without the other, an empty path.
#[test]
fn web_key_errors_are_pinned() {
    let text = r#"[web]
listen = "localhost:9400"
lisen = 1
insecure_http = "yes"
session_ttl = "10s"
tls_cert = "web.crt"
tls_key = ""
"#;
    let expected = r#"roster.toml:2:10: bad web address "localhost:9400": expected an IP address and a port
  hint: write e.g. "127.0.0.1:9400", "0.0.0.0:9400" (with TLS) or "[::1]:9400"
roster.toml:3:1: unknown key `lisen` in [web]
  hint: did you mean `listen`?
roster.toml:4:17: `insecure_http` must be true or false
roster.toml:5:15: `session_ttl` is 10s; it must be between 1m and 30d
  hint: a login lasts this long whatever happens; e.g. session_ttl = "12h"
roster.toml:6:1: `tls_cert` is set but `tls_key` is not
  hint: HTTPS needs both, e.g. tls_cert = "/etc/roster/web.crt" and tls_key = "/etc/roster/web.key" (PEM files); or neither
roster.toml:7:11: `tls_key` is empty
  hint: name a PEM file, e.g. tls_key = "/etc/roster/web.key""#;
    assert_eq!(rendered(text), expected);
}

/// `[web]` beyond loopback without TLS nor `insecure_http`: refused at the
/// address, with why and the two ways out; `web` that is not a table.
#[test]
fn a_public_dashboard_over_plain_http_is_refused_at_its_address() {
    let text = "[web]\nlisten = \"0.0.0.0:9400\"\nsession_ttl = \"90d\"\n";
    let expected = r#"roster.toml:2:10: the dashboard would listen on 0.0.0.0:9400, beyond loopback, over plain HTTP: tokens and session cookies would cross the network in clear
  hint: set tls_cert and tls_key (PEM files) to serve HTTPS, or insecure_http = true if a proxy in front of it terminates TLS; or listen on 127.0.0.1:9400
roster.toml:3:15: `session_ttl` is 90d; it must be between 1m and 30d
  hint: a login lasts this long whatever happens; e.g. session_ttl = "12h""#;
    assert_eq!(rendered(text), expected);
    let text = "[web]\nlisten = \"192.168.1.10:9400\"\n";
    let expected = r#"roster.toml:2:10: the dashboard would listen on 192.168.1.10:9400, beyond loopback, over plain HTTP: tokens and session cookies would cross the network in clear
  hint: set tls_cert and tls_key (PEM files) to serve HTTPS, or insecure_http = true if a proxy in front of it terminates TLS; or listen on 127.0.0.1:9400"#;
    assert_eq!(rendered(text), expected);
    assert_eq!(
        rendered("web = 1\n"),
        r#"roster.toml:1:7: `web` must be a table
  hint: write it as [web] with listen = "127.0.0.1:9400""#
    );
}

/// `stderr` in `[log]`, `[defaults]` and an agent: a mode that is neither
/// "merge" nor "separate", or not a string; and an agent whose name would
/// take another agent's stderr log.
#[test]
fn stderr_key_errors_and_err_names_are_pinned() {
    let text = r#"[log]
stderr = "split"
[defaults]
stderr = 2
[agents.web]
command = "true"
stderr = "both"
[agents."web.err"]
command = "true"
"#;
    let expected = r#"roster.toml:2:10: unknown stderr mode "split"
  hint: use "merge" (stderr into NAME.log, with stdout) or "separate" (into NAME.err.log)
roster.toml:4:10: `stderr` must be a string
roster.toml:7:10: unknown stderr mode "both"
  hint: use "merge" (stderr into NAME.log, with stdout) or "separate" (into NAME.err.log)
roster.toml:8:9: bad agent name "web.err": the name ends in ".err": web.err.log is where agent `web` writes its stderr with stderr = "separate"
  hint: rename it, e.g. `web-err`: names ending in ".err" are kept for stderr logs"#;
    assert_eq!(rendered(text), expected);
}
