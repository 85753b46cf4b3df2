//! The descriptors a server may open, and how many client connections fit
//! in them.
//!
//! At start the soft limit on open descriptors is raised to the hard limit
//! (as Redis does), then `--max-connections` is capped so that clients can
//! never take the descriptors the node needs for itself: its files and
//! listeners, its peers' connections, the admin endpoint's requests. A
//! client connection beyond the cap is refused with `-ERR max number of
//! clients reached`; a node whose clients used every descriptor could not
//! reconnect to its peers and would fall behind.

use tracing::{info, warn};

use crate::config::Settings;

/// Descriptors kept for the node itself: standard streams, listeners, the
/// data directory's lock, log segments, snapshot and spool files, the
/// runtime's own (about 20 in all), the connections to and from each peer
/// and the one that forwards to the leader (3 a peer: a cluster of 9 nodes
/// takes 24), and room for reconnections.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// Descriptors kept for the admin endpoint when there is one: the
/// connections it serves at once and as many it is answering 503.
pub const ADMIN_DESCRIPTORS: usize = 2 * crate::admin::MAX_CONNECTIONS;

/// The descriptors kept for everything but clients under `settings`.
pub fn reserved(settings: &Settings) -> usize {
    RESERVED_DESCRIPTORS
        + if settings.admin_addr.is_some() {
            ADMIN_DESCRIPTORS
        } else {
            0
        }
}

/// How many client connections fit under a descriptor limit of `limit` with
/// `reserved` kept: `None` if none do.
pub fn clients_that_fit(limit: usize, reserved: usize) -> Option<usize> {
    limit.checked_sub(reserved).filter(|&n| n > 0)
}

/// Raises the descriptor limit (see [`raise_descriptor_limit`]) and lowers
/// `settings.max_connections` to what fits under it, with a warning if the
/// flag asked for more; says what it decided in one info line. Fails if no
/// client connection fits at all.
pub fn fit_connections(settings: &mut Settings) -> Result<(), String> {
    let reserved = reserved(settings);
    let wanted = settings.max_connections.saturating_add(reserved);
    let Some(limit) = raise_descriptor_limit(wanted) else {
        info!(
            "descriptor limit unlimited: up to {} client connections",
            settings.max_connections
        );
        return Ok(());
    };
    let Some(fit) = clients_that_fit(limit, reserved) else {
        return Err(format!(
            "the descriptor limit {limit} leaves no room for clients: {reserved} descriptors are kept for peers, files and the admin endpoint; raise it (ulimit -n)"
        ));
    };
    if settings.max_connections > fit {
        if settings.max_connections_given {
            warn!(
                "--max-connections {} does not fit the descriptor limit {limit} ({reserved} are kept for peers, files and the admin endpoint): lowered to {fit}; raise the limit (ulimit -n) for more",
                settings.max_connections
            );
        }
        settings.max_connections = fit;
    }
    info!(
        "descriptor limit {limit}: up to {} client connections",
        settings.max_connections
    );
    Ok(())
}

/// Raises the soft limit on open descriptors (RLIMIT_NOFILE) to the hard
/// limit (to `wanted` if the hard limit is unlimited) and returns the soft
/// limit in force; `None` if it is unlimited (or not known on this
/// platform). If raising fails, the limit stays as it was, with a warning.
pub fn raise_descriptor_limit(wanted: usize) -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            warn!(error = %std::io::Error::last_os_error(), "cannot read the descriptor limit");
            return None;
        }
        if limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            libc::rlim_t::try_from(wanted)
                .unwrap_or(libc::RLIM_INFINITY)
                .max(limit.rlim_cur)
        } else {
            limit.rlim_max
        };
        if target > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we pass.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = target;
            } else {
                warn!(
                    error = %std::io::Error::last_os_error(),
                    "cannot raise the descriptor limit from {} to {target}",
                    limit.rlim_cur
                );
            }
        }
        Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    {
        let _ = wanted;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_what_the_reserve_leaves() {
        assert_eq!(clients_that_fit(1024, RESERVED_DESCRIPTORS), Some(960));
        assert_eq!(clients_that_fit(128, 64), Some(64));
        assert_eq!(clients_that_fit(64, 64), None);
        assert_eq!(clients_that_fit(10, 64), None);
    }

    #[test]
    fn the_admin_endpoint_has_descriptors_of_its_own() {
        let mut s = crate::config::ServeArgs {
            insecure: true,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(reserved(&s), 64);
        s.admin_addr = Some("127.0.0.1:8001".into());
        assert_eq!(reserved(&s), 64 + 128);
    }

    #[cfg(unix)]
    #[test]
    fn raising_never_lowers_the_limit() {
        let before = raise_descriptor_limit(0);
        let after = raise_descriptor_limit(0);
        assert_eq!(before, after, "raised to the hard limit once and for all");
    }
}
