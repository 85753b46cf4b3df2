//! Redis 7 ACL users, kept as replicated state: the table of users
//! ([`Users`]) lives in the store, changes only by log entries, and is the
//! same on every node; each node publishes what it has applied
//! ([`SharedUsers`]) for its connections to check their commands against.
//!
//! Pure: parsing rules ([`rules`]), the command table and its categories
//! ([`commands`]), password hashes ([`password`]), one user's permissions
//! ([`user`]) and the table's binary form ([`codec`]).
//!
//! A new cluster's table is *uninitialized*: the first leader proposes the
//! init entry (the default user from its `--requirepass`); until a node has
//! applied it, the node enforces its own `--requirepass` if it has one
//! ([`View::Local`]) and otherwise serves nothing ([`View::Unknown`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

pub mod codec;
pub mod commands;
pub mod password;
pub mod rules;
pub mod user;

pub use password::PasswordHash;
pub use rules::{Rule, RuleError};
pub use user::{Denied, User};

/// The name of the user every connection starts as.
pub const DEFAULT_USER: &[u8] = b"default";

/// The most users a cluster may have.
pub const MAX_USERS: usize = 10_000;

/// The most bytes the users may take in all ([`User::size_bytes`]): the
/// table lives in every node's memory and snapshot, and a change that
/// would make it larger is refused (the same way on every node).
pub const MAX_USERS_BYTES: usize = 64 << 20;

/// The serial of the default user of [`Users::local`], which no user of a
/// cluster's table has.
const LOCAL_SERIAL: u64 = u64::MAX;

/// Why an ACL change was refused; the text is the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A rule of ACL SETUSER (`modifier`, as given) is wrong.
    #[error("ERR Error in ACL SETUSER modifier '{modifier}': {error}")]
    Modifier {
        /// The rule as given.
        modifier: String,
        /// What is wrong with it.
        error: RuleError,
    },
    /// A user name with white space or NUL.
    #[error("ERR Usernames can't contain spaces or null characters")]
    BadUserName,
    /// ACL DELUSER default.
    #[error("ERR The 'default' user cannot be removed")]
    DefaultUser,
    /// One user more than [`MAX_USERS`].
    #[error("ERR too many users: a cluster has at most {MAX_USERS}")]
    TooManyUsers,
    /// A change that would make the users take more than
    /// [`MAX_USERS_BYTES`].
    #[error(
        "ERR the users would take {bytes} bytes, more than the limit of {MAX_USERS_BYTES} bytes"
    )]
    TooLarge {
        /// What the table would take.
        bytes: usize,
    },
    /// A change before the init entry.
    #[error("LOADING the cluster's users are not initialized yet; retry in a moment")]
    NotInitialized,
}

impl AclError {
    /// The error for `rule` (as given) refused with `error`.
    pub fn modifier(rule: &[u8], error: RuleError) -> AclError {
        AclError::Modifier {
            modifier: String::from_utf8_lossy(rule).into_owned(),
            error,
        }
    }
}

/// The table of users, by name (in byte order, as `ACL LIST` shows them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    /// False until the init entry is applied: then the default user exists
    /// (and always will).
    initialized: bool,
    /// Above the serial of every user the table ever had.
    next_serial: u64,
    users: BTreeMap<Bytes, User>,
}

impl Users {
    /// The default user alone with `password` and every permission: what a
    /// node enforces from its own `--requirepass` before it has the
    /// cluster's users.
    pub fn local(password: PasswordHash) -> Users {
        let mut u = Users::default();
        let default = User::default_user(Some(password), LOCAL_SERIAL);
        u.users.insert(default.name().clone(), default);
        u.initialized = true;
        u
    }

    /// Whether the init entry has been applied.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// The user named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&User> {
        self.users.get(name)
    }

    /// The users in name order.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True with no user (before the init entry).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Applies the init entry: the first makes the default user (`on ~* &*
    /// +@all`, with `password` or `nopass`) and returns true; any later
    /// one changes nothing and returns false.
    pub fn init(&mut self, password: Option<PasswordHash>) -> bool {
        if self.initialized {
            return false;
        }
        let serial = self.take_serial();
        let default = User::default_user(password, serial);
        self.users.insert(default.name().clone(), default);
        self.initialized = true;
        true
    }

    fn take_serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }

    /// ACL SETUSER: creates `name` if needed and applies `rules` (each as
    /// [`Rule::parse`] reads it) in order, all or none.
    pub fn set_user<'a>(
        &mut self,
        name: &[u8],
        rules: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), AclError> {
        if !self.initialized {
            return Err(AclError::NotInitialized);
        }
        if rules::has_spaces(name) {
            return Err(AclError::BadUserName);
        }
        let existing = self.users.get(name);
        if existing.is_none() && self.users.len() >= MAX_USERS {
            return Err(AclError::TooManyUsers);
        }
        let mut user = match existing {
            Some(u) => u.clone(),
            None => User::new(Bytes::copy_from_slice(name), self.next_serial),
        };
        for text in rules {
            if text.is_empty() {
                continue; // As in Redis: an empty rule does nothing.
            }
            Rule::parse(text)
                .and_then(|rule| user.apply(&rule))
                .map_err(|e| AclError::modifier(text, e))?;
        }
        let others: usize = self
            .users
            .values()
            .filter(|u| u.name().as_ref() != name)
            .map(User::size_bytes)
            .sum();
        let bytes = others + user.size_bytes();
        if bytes > MAX_USERS_BYTES {
            return Err(AclError::TooLarge { bytes });
        }
        if existing.is_none() {
            self.take_serial();
        }
        self.users.insert(user.name().clone(), user);
        Ok(())
    }

    /// ACL DELUSER: removes the users named (the default user cannot be);
    /// returns how many existed.
    pub fn del_users<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a [u8]> + Clone,
    ) -> Result<usize, AclError> {
        if !self.initialized {
            return Err(AclError::NotInitialized);
        }
        if names.clone().into_iter().any(|n| n == DEFAULT_USER) {
            return Err(AclError::DefaultUser);
        }
        Ok(names
            .into_iter()
            .filter(|n| self.users.remove(*n).is_some())
            .count())
    }

    /// The user `name` if `password` lets one authenticate as it.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<&User> {
        let hash = PasswordHash::of(password);
        self.users.get(name).filter(|u| u.accepts(&hash))
    }
}

/// What a node knows of its users: the cluster's table once it has applied
/// the init entry, else the table of its own `--requirepass`, if any.
#[derive(Debug, Clone)]
pub enum View {
    /// The cluster's table, as this node has applied it.
    Cluster(Arc<Users>),
    /// The node's `--requirepass`, until it has the cluster's users.
    Local(Arc<Users>),
    /// Neither: the node must serve nothing yet.
    Unknown,
}

impl View {
    /// The users of this view.
    pub fn users(&self) -> Option<&Users> {
        match self {
            View::Cluster(u) | View::Local(u) => Some(u),
            View::Unknown => None,
        }
    }
}

/// The users a node has applied, published by its store after every
/// change, read by its connections for every command (a read lock held
/// for the copy of an `Arc`, never across an await).
#[derive(Debug)]
pub struct SharedUsers {
    cluster: RwLock<Arc<Users>>,
    local: Option<Arc<Users>>,
}

impl SharedUsers {
    /// Nothing applied yet; `local_password` is the node's own
    /// `--requirepass` (its hash).
    pub fn new(local_password: Option<PasswordHash>) -> SharedUsers {
        SharedUsers {
            cluster: RwLock::new(Arc::new(Users::default())),
            local: local_password.map(|p| Arc::new(Users::local(p))),
        }
    }

    /// The store applied a change (or restored a snapshot).
    pub fn publish(&self, users: Users) {
        let mut slot = self.cluster.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(users);
    }

    /// What the node enforces now.
    pub fn view(&self) -> View {
        let cluster = self
            .cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if cluster.is_initialized() {
            View::Cluster(cluster)
        } else if let Some(local) = &self.local {
            View::Local(local.clone())
        } else {
            View::Unknown
        }
    }

    /// The cluster's table as applied, initialized or not.
    pub fn cluster(&self) -> Arc<Users> {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Not known yet: a new connection, which is the default user if that
    /// one is `on` and `nopass` once the node knows the cluster's users.
    Pending,
    /// Not authenticated.
    Anonymous,
    /// Authenticated as this user of the cluster's table.
    User {
        /// Its name.
        name: Bytes,
        /// Its serial: a user deleted and made again is another user.
        serial: u64,
    },
    /// Authenticated as the default user with this password by the node's
    /// own `--requirepass`, before the node had the cluster's users: kept
    /// once they arrive only if the cluster's default user takes it.
    Provisional(PasswordHash),
}

/// What a connection may do now ([`resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// The node does not know its users yet.
    Loading,
    /// Not authenticated.
    Anonymous,
    /// Authenticated as this user.
    User(&'a User),
    /// Its user was deleted or turned off (or replaced): close it.
    Closed,
}

/// Who a connection is under `view`, settling `auth` where the view allows.
pub fn resolve<'a>(auth: &mut Auth, view: &'a View) -> Identity<'a> {
    let users = match view {
        View::Unknown => return Identity::Loading,
        View::Local(u) | View::Cluster(u) => u,
    };
    let local = matches!(view, View::Local(_));
    let default = users.get(DEFAULT_USER);
    match auth {
        Auth::Pending if local => Identity::Anonymous,
        Auth::Pending => match default.filter(|d| d.is_enabled() && d.is_nopass()) {
            Some(d) => {
                *auth = Auth::User {
                    name: d.name().clone(),
                    serial: d.serial(),
                };
                Identity::User(d)
            }
            None => {
                *auth = Auth::Anonymous;
                Identity::Anonymous
            }
        },
        Auth::Anonymous => Identity::Anonymous,
        Auth::Provisional(hash) => match default.filter(|d| d.accepts(hash)) {
            Some(d) if local => Identity::User(d),
            Some(d) => {
                *auth = Auth::User {
                    name: d.name().clone(),
                    serial: d.serial(),
                };
                Identity::User(d)
            }
            None => Identity::Closed,
        },
        Auth::User { name, serial } => match users.get(name) {
            Some(u) if u.serial() == *serial && u.is_enabled() => Identity::User(u),
            _ => Identity::Closed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> &[u8] {
        s.as_bytes()
    }

    fn initialized(password: Option<&str>) -> Users {
        let mut u = Users::default();
        assert!(u.init(password.map(|p| PasswordHash::of(p.as_bytes()))));
        u
    }

    #[test]
    fn the_first_init_wins() {
        let mut u = initialized(Some("first"));
        assert!(!u.init(None), "a later init changes nothing");
        assert!(u.authenticate(DEFAULT_USER, b"first").is_some());
        assert!(u.authenticate(DEFAULT_USER, b"").is_none());
        let open = initialized(None);
        assert!(open.authenticate(DEFAULT_USER, b"anything").is_some());
    }

    #[test]
    fn nothing_changes_before_the_init() {
        let mut u = Users::default();
        assert_eq!(
            u.set_user(b"alice", [b("on")]),
            Err(AclError::NotInitialized)
        );
        assert_eq!(u.del_users([b("alice")]), Err(AclError::NotInitialized));
        assert!(u.is_empty());
    }

    #[test]
    fn the_users_cannot_grow_past_their_byte_limit() {
        let mut u = initialized(None);
        // 1 MiB patterns, one per call: the 64th still fits, a few more
        // do not, and what was refused is not kept.
        let mut added = 0;
        let mut refused = None;
        for i in 0..80 {
            let pattern = format!("~{i}:{}", "x".repeat(1 << 20));
            match u.set_user(b"alice", [pattern.as_bytes()]) {
                Ok(()) => added += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("the table grew past its limit");
        assert!(
            matches!(e, AclError::TooLarge { bytes } if bytes > MAX_USERS_BYTES),
            "{e}"
        );
        assert!(e.to_string().contains("more than the limit"), "{e}");
        assert_eq!(added, MAX_USERS_BYTES / ((1 << 20) + 20));
        let total: usize = u.users.values().map(User::size_bytes).sum();
        assert!(total <= MAX_USERS_BYTES);
        // Another user cannot take the room either; removing some makes room.
        let big = format!("~{}", "y".repeat(1 << 20));
        assert!(u.set_user(b"bob", [big.as_bytes()]).is_err());
        u.set_user(b"alice", [b("resetkeys")]).unwrap();
        u.set_user(b"bob", [big.as_bytes()]).unwrap();
    }

    #[test]
    fn set_user_is_all_or_nothing_with_redis_errors() {
        let mut u = initialized(None);
        u.set_user(b"alice", [b("on"), b(">pw"), b("~app:*"), b("+@read")])
            .unwrap();
        let before = u.clone();
        let e = u.set_user(b"alice", [b("off"), b("+nosuch")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
        );
        assert_eq!(u, before, "nothing of a refused SETUSER is kept");
        let e = u.set_user(b"bob", [b("bogus")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR Error in ACL SETUSER modifier 'bogus': Syntax error"
        );
        assert!(u.get(b"bob").is_none(), "a refused SETUSER makes no user");
        assert_eq!(u.set_user(b"a b", [b("on")]), Err(AclError::BadUserName));
        // An empty rule does nothing.
        u.set_user(b"carol", [b("")]).unwrap();
        assert_eq!(
            u.get(b"carol").unwrap().describe(),
            b"user carol off resetchannels -@all"
        );
    }

    #[test]
    fn the_default_user_stays() {
        let mut u = initialized(None);
        u.set_user(b"alice", [b("on")]).unwrap();
        assert_eq!(
            u.del_users([b("alice"), b("default")]),
            Err(AclError::DefaultUser)
        );
        assert!(u.get(b"alice").is_some(), "nothing is deleted then");
        assert_eq!(u.del_users([b("alice"), b("nobody"), b("alice")]), Ok(1));
        assert_eq!(u.len(), 1);
    }

    #[test]
    fn users_are_listed_by_name() {
        let mut u = initialized(None);
        for n in ["zed", "alice", "bob"] {
            u.set_user(n.as_bytes(), std::iter::empty::<&[u8]>())
                .unwrap();
        }
        let names: Vec<&[u8]> = u.iter().map(|u| &u.name()[..]).collect();
        assert_eq!(names, [b("alice"), b("bob"), b("default"), b("zed")]);
    }

    #[test]
    fn a_new_connection_is_the_default_user_when_it_needs_no_password() {
        let view = View::Cluster(Arc::new(initialized(None)));
        let mut auth = Auth::Pending;
        assert!(matches!(resolve(&mut auth, &view), Identity::User(u) if u.name() == "default"));
        assert!(matches!(auth, Auth::User { .. }));
        let view = View::Cluster(Arc::new(initialized(Some("pw"))));
        let mut auth = Auth::Pending;
        assert_eq!(resolve(&mut auth, &view), Identity::Anonymous);
        assert_eq!(auth, Auth::Anonymous);
        assert_eq!(
            resolve(&mut Auth::Pending, &View::Unknown),
            Identity::Loading
        );
    }

    #[test]
    fn a_deleted_disabled_or_remade_user_is_closed() {
        let mut users = initialized(None);
        users.set_user(b"alice", [b("on"), b("nopass")]).unwrap();
        let serial = users.get(b"alice").unwrap().serial();
        let mut auth = Auth::User {
            name: Bytes::from_static(b"alice"),
            serial,
        };
        let view = View::Cluster(Arc::new(users.clone()));
        assert!(matches!(resolve(&mut auth, &view), Identity::User(_)));
        let mut off = users.clone();
        off.set_user(b"alice", [b("off")]).unwrap();
        assert_eq!(
            resolve(&mut auth, &View::Cluster(Arc::new(off))),
            Identity::Closed
        );
        users.del_users([b("alice")]).unwrap();
        assert_eq!(
            resolve(&mut auth.clone(), &View::Cluster(Arc::new(users.clone()))),
            Identity::Closed
        );
        users.set_user(b"alice", [b("on"), b("nopass")]).unwrap();
        assert_ne!(users.get(b"alice").unwrap().serial(), serial);
        assert_eq!(
            resolve(&mut auth, &View::Cluster(Arc::new(users))),
            Identity::Closed
        );
    }

    #[test]
    fn the_local_password_holds_until_the_cluster_decides() {
        let shared = SharedUsers::new(Some(PasswordHash::of(b"local")));
        let view = shared.view();
        assert!(matches!(view, View::Local(_)));
        assert!(view
            .users()
            .unwrap()
            .authenticate(DEFAULT_USER, b"local")
            .is_some());
        let mut auth = Auth::Provisional(PasswordHash::of(b"local"));
        assert!(matches!(resolve(&mut auth, &view), Identity::User(_)));
        // The cluster agrees: the connection goes on as its default user.
        shared.publish(initialized(Some("local")));
        assert!(matches!(
            resolve(&mut auth, &shared.view()),
            Identity::User(_)
        ));
        assert!(matches!(auth, Auth::User { .. }));
        // The cluster disagrees: the connection is closed.
        let mut auth = Auth::Provisional(PasswordHash::of(b"local"));
        shared.publish(initialized(Some("cluster")));
        assert_eq!(resolve(&mut auth, &shared.view()), Identity::Closed);
        // Without a local password, nothing is served before the init.
        assert!(matches!(SharedUsers::new(None).view(), View::Unknown));
    }
}
