//! `roster backup`, `roster restore` and `roster backup verify` (issue
//! #17): `create` writes an archive, `archive` reads and checks one,
//! `restore` restores a checked one into an empty home, `verify` drills a
//! restore into a scratch home.

pub mod archive;
pub mod create;
pub mod restore;
pub mod verify;
