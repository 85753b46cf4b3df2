//! Conformance kits: checks that any [`crate::Transport`] or
//! [`crate::Persistence`], shipped or third-party, behaves the way the node
//! relies on; [`authentication`] for transports that authenticate nodes and
//! [`durability`] for stores that must survive a power loss.
pub mod authentication;
pub mod durability;
pub mod persistence;
pub mod transport;
