//! Integration tests: the real `roster` binary, real child processes, a temp
//! home each. One module per area of issue #2.

mod config;
mod example;
mod faults_home;
mod journal;
mod lifecycle;
mod logs;
mod restart;
mod scale;
mod stopping;
mod util;
