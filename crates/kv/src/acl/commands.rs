//! The command table lives with the commands ([`crate::cmd::table`]);
//! the ACL reads it from here too.

pub use crate::cmd::table::*;
