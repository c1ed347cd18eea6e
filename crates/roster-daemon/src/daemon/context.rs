//! What every room of the daemon works with and none owns: the home, the
//! journal, the runtime beside the loop and the loop's inbox.

use std::path::PathBuf;
use std::sync::Arc;

use crate::home::{Home, HomeDir};
use crate::inbox::Inbox;
use crate::journal::Journal;

pub(super) struct Context {
    pub home: Home,
    /// The home as verified at start, held open: what the daemon writes
    /// goes there, never to whatever the path names later.
    pub home_dir: Arc<HomeDir>,
    /// `ROSTER_HOME` as agents and helpers see it.
    pub home_env: PathBuf,
    pub journal: Journal,
    pub runtime: tokio::runtime::Handle,
    pub inbox: Inbox,
}
