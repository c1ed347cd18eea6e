//! Integration tests: the real `roster` binary, real child processes, a temp
//! home each. One module per area: issue #2 (lifecycle, restart, stopping, logs,
//! journal, config, scale) and issue #6 (faults_*: promises kept under faults).

mod add_remove;
mod backup;
mod config;
mod deploy;
mod deploy_faults;
mod deploy_lossless;
mod describe;
mod diagnose;
mod example;
mod faults_flood;
mod faults_home;
mod faults_logs;
mod faults_loop;
mod fleet_apply;
mod fleet_deploy;
mod fleet_export;
mod fleet_hosts;
mod fleet_ops;
mod fleet_status;
mod footprint;
mod hardening;
mod health;
mod init;
mod install;
mod instances;
mod journal;
mod lifecycle;
mod logs;
mod metrics;
mod notify;
mod recover;
mod restart;
mod scale;
mod secrets;
mod stderr_log;
mod stopping;
mod surfaces;
mod top;
mod util;
mod watch;
mod watch_paths;
mod web;
mod web_tokens;
