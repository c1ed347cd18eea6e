//! Fleet mode's decisions: many tenants' agents on many hosts from one
//! fleet file. Pure, like the rest of the core: the CLI reads the file,
//! talks SSH and hands over what the hosts run.
//!
//! - `model`: the fleet file (`Fleet`) and a placement (`Placement`);
//! - `parse`, `templates`, `tenants`, `fields`: reading a fleet file with
//!   the config's checker, every problem located `FILE:LINE:COL` at once;
//! - `placeholders`: `{tenant}` `{agent}` `{instance}` `{port}`
//!   `{address}` `{host}`, found and replaced;
//! - `capacity`: a host's `memory` as a number of instances;
//! - `hash`: the stable hashes placement rests on, and digests;
//! - `place`: which host and port each instance gets;
//! - `render`: each host's roster.toml;
//! - `hosted`: a rendered roster.toml read back (instances, digests, ports);
//! - `plan`: the changes from what the hosts run to a placement.

mod capacity;
mod fields;
mod hash;
mod hosted;
mod model;
mod parse;
mod place;
mod placeholders;
mod plan;
mod render;
mod templates;
mod tenants;

#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod place_tests;
#[cfg(test)]
mod render_tests;

pub use capacity::DEFAULT_INSTANCE_MEMORY;
pub use hash::{digest, digest_bytes};
pub use hosted::{previous_placement, read_rendered, HostedConfig};
pub use model::{
    Fleet, Host, Placed, Placement, PortRange, SshSpec, Template, TemplateValue, Tenant,
    DEFAULT_BINARY,
};
pub use parse::parse;
pub use place::{place, place_with, PlacementError};
pub use placeholders::{HOST_PLACEHOLDERS, INSTANCE_PLACEHOLDERS};
pub use plan::{plan, Change, ChangeKind, RunningInstance};
pub use render::render;
