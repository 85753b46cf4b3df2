//! The ACL users as replicated state: ACL SETUSER, ACL DELUSER and the
//! init entry are writes like the others, applied in log order on every
//! node; after each the table is published to the node's connections.

use bytes::BytesMut;

use super::KvStore;
use crate::acl::{PasswordHash, Rule};
use crate::frame::{put_error, put_int, put_simple};

impl KvStore {
    /// Publishes the users to the node's connections (if it has any).
    pub(super) fn publish_users(&self) {
        if let Some(shared) = &self.publish.0 {
            shared.publish(self.users.clone());
        }
    }

    /// `ACL SETUSER name rule...`: `+OK`, or the error and nothing changed.
    /// The rules are applied as their text, as `ACL SETUSER` would be sent.
    pub(super) fn write_acl_setuser(&mut self, name: &[u8], rules: &[Rule], out: &mut BytesMut) {
        let texts: Vec<_> = rules.iter().map(Rule::text).collect();
        match self.users.set_user(name, texts.iter().map(|t| &t[..])) {
            Ok(()) => put_simple(out, "OK"),
            Err(e) => put_error(out, &e.to_string()),
        }
        self.publish_users();
    }

    /// `ACL DELUSER name...`: the number of users removed.
    pub(super) fn write_acl_deluser(&mut self, names: &[&[u8]], out: &mut BytesMut) {
        match self.users.del_users(names.iter().copied()) {
            Ok(n) => put_int(out, n as i64),
            Err(e) => put_error(out, &e.to_string()),
        }
        self.publish_users();
    }

    /// The init entry: `:1` if it made the default user, `:0` if one was
    /// made already.
    pub(super) fn write_acl_init(&mut self, password: Option<PasswordHash>, out: &mut BytesMut) {
        put_int(out, i64::from(self.users.init(password)));
        self.publish_users();
    }
}
