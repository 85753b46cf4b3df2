//! Founding the cluster's users: while the user table a node has applied
//! is uninitialized, the node, whenever it leads, proposes the init entry
//! (the default user with the hash of its own `--requirepass`, or
//! `nopass`). The first init applied wins, on every node; later ones
//! change nothing. Once the node has the cluster's users it checks its
//! own `--requirepass` against them, warns if they disagree, and stops.

use std::sync::Arc;
use std::time::Duration;

use raft_node::{Event, Node, Role};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::acl::{PasswordHash, SharedUsers, DEFAULT_USER};
use crate::store::{encode_writes, Write};

/// How often the task looks again without an event (a proposal that
/// failed is retried then).
const RECHECK_INTERVAL_MS: u64 = 500;

/// Runs until the node has applied the init entry, or `shutdown` turns
/// true. `password` is the hash of the node's `--requirepass`.
pub async fn run(
    node: Node,
    users: Arc<SharedUsers>,
    password: Option<PasswordHash>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Subscribed before the first look: no leadership change is missed.
    let mut events = node.subscribe();
    // The role the latest event told (it comes before the node's published
    // status says so); `None`: ask the node.
    let mut role_told: Option<Role> = None;
    loop {
        let applied = users.cluster();
        if applied.is_initialized() {
            let default = applied.get(DEFAULT_USER);
            if let Some(p) = password {
                if !default.is_some_and(|d| d.accepts(&p)) {
                    warn!(
                        "this node's --requirepass is not the password of the cluster's default user: \
                         the cluster's users decide (--requirepass only matters when a cluster is created; \
                         change users with ACL SETUSER)"
                    );
                }
            }
            debug!("the cluster's users are known");
            return;
        }
        if role_told.unwrap_or_else(|| node.role()) == Role::Leader {
            match node
                .command(encode_writes(&[Write::AclInit { password }]))
                .await
            {
                Ok(reply) if reply.as_ref() == b":1\r\n" => info!(
                    with_password = password.is_some(),
                    "founded the cluster's users: the default user"
                ),
                Ok(_) => {}
                Err(e) => debug!(error = %e, "the users' init entry did not commit; retrying"),
            }
            if users.cluster().is_initialized() {
                continue;
            }
        }
        tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Event::RoleChanged { role, .. }) => role_told = Some(role),
                // Events were missed: the node's status is the better guess.
                Some(Event::Warning(_)) => role_told = None,
                Some(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(RECHECK_INTERVAL_MS)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
