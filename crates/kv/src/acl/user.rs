//! One user: whether it is on, its password hashes, the keys, channels and
//! commands it may use; how rules change it, how `ACL LIST` describes it,
//! and whether it may run a request.

use bytes::Bytes;

use super::commands::{CommandSet, COMMANDS};
use super::password::PasswordHash;
use super::rules::{describe_commands, CommandRule, Rule, RuleError, MAX_ITEMS_PER_USER};
use crate::store::glob_match;

/// Why a user may not run a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Its command rules do not allow the command.
    Command,
    /// A key argument (this index in the request) matches none of its key
    /// patterns.
    Key(usize),
}

/// A user of the ACL table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub(super) name: Bytes,
    /// Unique among the users a table ever had: a connection authenticated
    /// as a user that was deleted and made again is not one of its.
    pub(super) serial: u64,
    pub(super) enabled: bool,
    /// Any password works (and `passwords` is empty).
    pub(super) nopass: bool,
    /// No two alike; at most [`MAX_ITEMS_PER_USER`].
    pub(super) passwords: Vec<PasswordHash>,
    /// `~*`: every key (and `key_patterns` is empty).
    pub(super) all_keys: bool,
    /// No two alike, none `*`; at most [`MAX_ITEMS_PER_USER`].
    pub(super) key_patterns: Vec<Bytes>,
    /// `&*` (and `channel_patterns` is empty).
    pub(super) all_channels: bool,
    /// No two alike; at most [`MAX_ITEMS_PER_USER`].
    pub(super) channel_patterns: Vec<Bytes>,
    /// The command rules start from `+@all` (else from `-@all`).
    pub(super) all_commands: bool,
    /// The rules after the base, at most one per target.
    pub(super) command_rules: Vec<CommandRule>,
    /// The commands allowed (indexes in [`COMMANDS`]): always the base
    /// and `command_rules` applied in order.
    pub(super) allowed: CommandSet,
}

impl User {
    /// About what the user takes in memory and in a snapshot: its name,
    /// patterns, password hashes and command rules.
    pub fn size_bytes(&self) -> usize {
        const ITEM: usize = 16;
        self.name.len()
            + self.passwords.len() * std::mem::size_of::<PasswordHash>()
            + self
                .key_patterns
                .iter()
                .chain(&self.channel_patterns)
                .map(|p| p.len() + ITEM)
                .sum::<usize>()
            + self.command_rules.len() * ITEM
    }

    /// A new user as Redis 7 makes one: off, no password, no key, no
    /// channel, no command.
    pub fn new(name: Bytes, serial: u64) -> User {
        User {
            name,
            serial,
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            all_keys: false,
            key_patterns: Vec::new(),
            all_channels: false,
            channel_patterns: Vec::new(),
            all_commands: false,
            command_rules: Vec::new(),
            allowed: CommandSet::NONE,
        }
    }

    /// The default user of a new cluster: `on ~* &* +@all`, with this
    /// password, or `nopass` without one.
    pub fn default_user(password: Option<PasswordHash>, serial: u64) -> User {
        let mut u = User::new(Bytes::from_static(b"default"), serial);
        u.enabled = true;
        u.all_keys = true;
        u.all_channels = true;
        u.all_commands = true;
        u.allowed = CommandSet::all();
        match password {
            Some(h) => u.passwords.push(h),
            None => u.nopass = true,
        }
        u
    }

    /// The user's name.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// See the field of that name.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// `on`.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// `nopass`.
    pub fn is_nopass(&self) -> bool {
        self.nopass
    }

    /// Whether `password` (its hash) lets one authenticate as this user:
    /// it is on, and `nopass` or the hash is one of its passwords.
    pub fn accepts(&self, password: &PasswordHash) -> bool {
        // Every hash is compared, whichever matches.
        let matched = self
            .passwords
            .iter()
            .fold(false, |m, h| h.matches(password) | m);
        self.enabled && (self.nopass || matched)
    }

    /// Applies one rule. On error the user may be half changed: apply
    /// rules to a copy (as [`super::Users::set_user`] does).
    pub fn apply(&mut self, rule: &Rule) -> Result<(), RuleError> {
        let full = |v: usize| {
            if v >= MAX_ITEMS_PER_USER {
                Err(RuleError::TooMany)
            } else {
                Ok(())
            }
        };
        match rule {
            Rule::On => self.enabled = true,
            Rule::Off => self.enabled = false,
            Rule::NoPass => {
                self.nopass = true;
                self.passwords.clear();
            }
            Rule::ResetPass => {
                self.nopass = false;
                self.passwords.clear();
            }
            Rule::AddPassword(h) => {
                if !self.passwords.contains(h) {
                    full(self.passwords.len())?;
                    self.passwords.push(*h);
                }
                self.nopass = false;
            }
            Rule::RemovePassword(h) => match self.passwords.iter().position(|p| p == h) {
                Some(i) => {
                    self.passwords.remove(i);
                }
                None => return Err(RuleError::NoSuchPassword),
            },
            Rule::AllKeys => {
                self.all_keys = true;
                self.key_patterns.clear();
            }
            Rule::ResetKeys => {
                self.all_keys = false;
                self.key_patterns.clear();
            }
            Rule::KeyPattern(p) => {
                if self.all_keys {
                    return Err(RuleError::KeyPatternAfterAllKeys);
                }
                if !self.key_patterns.contains(p) {
                    full(self.key_patterns.len())?;
                    self.key_patterns.push(p.clone());
                }
            }
            Rule::AllChannels => {
                self.all_channels = true;
                self.channel_patterns.clear();
            }
            Rule::ResetChannels => {
                self.all_channels = false;
                self.channel_patterns.clear();
            }
            Rule::ChannelPattern(p) => {
                if self.all_channels {
                    return Err(RuleError::ChannelPatternAfterAllChannels);
                }
                if !self.channel_patterns.contains(p) {
                    full(self.channel_patterns.len())?;
                    self.channel_patterns.push(p.clone());
                }
            }
            Rule::AllCommands | Rule::NoCommands => {
                self.all_commands = *rule == Rule::AllCommands;
                self.command_rules.clear();
                self.recompute();
            }
            Rule::Commands(r) => {
                self.command_rules.retain(|old| old.target != r.target);
                self.command_rules.push(*r);
                self.recompute();
            }
            Rule::Reset => {
                for r in [
                    Rule::ResetPass,
                    Rule::ResetKeys,
                    Rule::ResetChannels,
                    Rule::Off,
                    Rule::NoCommands,
                ] {
                    self.apply(&r)?;
                }
            }
        }
        Ok(())
    }

    /// Rebuilds `allowed` from the base and the command rules.
    pub(super) fn recompute(&mut self) {
        let base = if self.all_commands {
            CommandSet::all()
        } else {
            CommandSet::NONE
        };
        self.allowed = self.command_rules.iter().fold(base, |set, r| {
            if r.allow {
                set.or(r.mask())
            } else {
                set.without(r.mask())
            }
        });
    }

    /// Whether this user may run `args` (the command name first), which
    /// runs as the table entry `spec` ([`super::commands::lookup`]): the
    /// command must be allowed (unless it is `no_auth`, like AUTH), and
    /// every key argument must match a key pattern.
    pub fn check(&self, spec: usize, args: &[Bytes]) -> Result<(), Denied> {
        let Some(command) = COMMANDS.get(spec) else {
            return Err(Denied::Command);
        };
        if !command.is_no_auth() && !self.allowed.contains(spec) {
            return Err(Denied::Command);
        }
        if !self.all_keys {
            for i in command.key_indexes(args) {
                if !self.key_patterns.iter().any(|p| glob_match(p, &args[i])) {
                    return Err(Denied::Key(i));
                }
            }
        }
        Ok(())
    }

    /// The flags `ACL GETUSER` shows.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        f
    }

    /// The password hashes, in hex.
    pub fn password_hexes(&self) -> Vec<String> {
        self.passwords.iter().map(PasswordHash::to_hex).collect()
    }

    /// The command rules as `ACL GETUSER` shows them (`+@all -@admin`).
    pub fn commands_text(&self) -> String {
        describe_commands(self.all_commands, &self.command_rules)
    }

    /// The key patterns as `ACL GETUSER` shows them (`~*`, `~a:* ~b:*`).
    pub fn keys_text(&self) -> Vec<u8> {
        if self.all_keys {
            return b"~*".to_vec();
        }
        join(b'~', &self.key_patterns)
    }

    /// The channel patterns as `ACL GETUSER` shows them.
    pub fn channels_text(&self) -> Vec<u8> {
        if self.all_channels {
            return b"&*".to_vec();
        }
        join(b'&', &self.channel_patterns)
    }

    /// The line `ACL LIST` shows: `user <name> on #<hex> ~* &* +@all`.
    pub fn describe(&self) -> Vec<u8> {
        let mut s = b"user ".to_vec();
        s.extend_from_slice(&self.name);
        for f in self.flags() {
            s.push(b' ');
            s.extend_from_slice(f.as_bytes());
        }
        for h in &self.passwords {
            s.extend_from_slice(b" #");
            s.extend_from_slice(h.to_hex().as_bytes());
        }
        if self.all_keys || !self.key_patterns.is_empty() {
            s.push(b' ');
            s.extend_from_slice(&self.keys_text());
        }
        if self.all_channels {
            s.extend_from_slice(b" &*");
        } else {
            s.extend_from_slice(b" resetchannels");
            if !self.channel_patterns.is_empty() {
                s.push(b' ');
                s.extend_from_slice(&self.channels_text());
            }
        }
        s.push(b' ');
        s.extend_from_slice(self.commands_text().as_bytes());
        s
    }
}

fn join(prefix: u8, patterns: &[Bytes]) -> Vec<u8> {
    let mut s = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        if i > 0 {
            s.push(b' ');
        }
        s.push(prefix);
        s.extend_from_slice(p);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::commands;

    fn user(rules: &str) -> User {
        let mut u = User::new(Bytes::from_static(b"alice"), 1);
        for r in rules.split(' ').filter(|r| !r.is_empty()) {
            u.apply(&Rule::parse(r.as_bytes()).unwrap())
                .unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        u
    }

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn check(u: &User, request: &str) -> Result<(), Denied> {
        let a = args(request);
        u.check(commands::lookup(&a).unwrap(), &a)
    }

    #[test]
    fn a_new_user_can_do_nothing() {
        let u = user("");
        assert_eq!(u.describe(), b"user alice off resetchannels -@all");
        assert!(!u.accepts(&PasswordHash::of(b"")));
        assert_eq!(check(&u, "get k"), Err(Denied::Command));
        // AUTH is for everyone.
        assert_eq!(check(&u, "auth alice pw"), Ok(()));
    }

    #[test]
    fn the_default_user_describes_like_redis() {
        let u = User::default_user(None, 0);
        assert_eq!(u.describe(), b"user default on nopass ~* &* +@all");
        let h = PasswordHash::of(b"pw");
        let u = User::default_user(Some(h), 0);
        assert_eq!(
            String::from_utf8(u.describe()).unwrap(),
            format!("user default on #{} ~* &* +@all", h.to_hex())
        );
        assert!(u.accepts(&h));
        assert!(!u.accepts(&PasswordHash::of(b"PW")));
    }

    #[test]
    fn a_read_only_user() {
        let u = user("on >pw +@read ~*");
        assert_eq!(check(&u, "get k"), Ok(()));
        assert_eq!(check(&u, "mget a b"), Ok(()));
        assert_eq!(check(&u, "keys *"), Ok(()));
        assert_eq!(check(&u, "set k v"), Err(Denied::Command));
        assert_eq!(check(&u, "flushall"), Err(Denied::Command));
        assert_eq!(check(&u, "ping"), Err(Denied::Command));
        assert!(u.accepts(&PasswordHash::of(b"pw")));
        assert_eq!(u.commands_text(), "-@all +@read");
    }

    #[test]
    fn key_patterns_are_checked_for_every_key() {
        let u = user("on +@all ~app:*");
        assert_eq!(check(&u, "get app:1"), Ok(()));
        assert_eq!(check(&u, "get other"), Err(Denied::Key(1)));
        assert_eq!(check(&u, "mset app:1 x other y"), Err(Denied::Key(3)));
        assert_eq!(
            check(&u, "mset app:1 other app:2 y"),
            Ok(()),
            "values are no keys"
        );
        assert_eq!(check(&u, "del app:1 app:2 x"), Err(Denied::Key(3)));
        // Keys counted by an argument: every key it counts.
        assert_eq!(check(&u, "lmpop 2 app:1 app:2 left"), Ok(()));
        assert_eq!(check(&u, "lmpop 2 app:1 secret left"), Err(Denied::Key(3)));
        assert_eq!(
            check(&u, "blmpop 0 2 secret app:1 right count 2"),
            Err(Denied::Key(3))
        );
        assert_eq!(check(&u, "dbsize"), Ok(()));
        let u = user("on +@all resetkeys");
        assert_eq!(check(&u, "get app:1"), Err(Denied::Key(1)));
        assert_eq!(check(&u, "ping"), Ok(()));
        let u = user("on +@all ~a ~b allkeys");
        assert_eq!(check(&u, "get zzz"), Ok(()));
        assert_eq!(u.keys_text(), b"~*");
    }

    #[test]
    fn a_non_admin() {
        let u = user("on nopass ~* +@all -@admin -@dangerous");
        for denied in [
            "raft.leave n1",
            "raft.join n4 127.0.0.1:1",
            "raft.status",
            "flushall",
            "flushdb",
            "keys *",
            "config get maxmemory",
            "info",
            "acl setuser bob",
            "acl list",
        ] {
            assert_eq!(check(&u, denied), Err(Denied::Command), "{denied}");
        }
        for allowed in [
            "get k",
            "set k v",
            "scan 0",
            "acl whoami",
            "acl cat",
            "client id",
            "ping",
        ] {
            assert_eq!(check(&u, allowed), Ok(()), "{allowed}");
        }
        assert_eq!(u.commands_text(), "+@all -@admin -@dangerous");
    }

    #[test]
    fn later_rules_replace_earlier_ones_on_the_same_target() {
        let u = user("+get -get +get +@read -@write -@read");
        assert_eq!(u.commands_text(), "-@all +get -@write -@read");
        // The rules apply in order: -@read comes after +get.
        assert_eq!(check(&u, "get k"), Err(Denied::Command));
        let u = user("+@all -set +set");
        assert_eq!(u.commands_text(), "+@all +set");
        let u = user("+set -@all");
        assert_eq!(u.commands_text(), "-@all");
        let u = user("+acl -acl|setuser");
        assert_eq!(check(&u, "acl whoami"), Ok(()));
        assert_eq!(check(&u, "acl setuser x"), Err(Denied::Command));
        assert_eq!(check(&u, "acl frob"), Ok(()), "the container itself");
    }

    #[test]
    fn rule_errors_depend_on_the_user() {
        let mut u = user("allkeys &*");
        assert_eq!(
            u.apply(&Rule::parse(b"~foo").unwrap()),
            Err(RuleError::KeyPatternAfterAllKeys)
        );
        assert_eq!(
            u.apply(&Rule::parse(b"&foo").unwrap()),
            Err(RuleError::ChannelPatternAfterAllChannels)
        );
        assert_eq!(
            u.apply(&Rule::parse(b"<nope").unwrap()),
            Err(RuleError::NoSuchPassword)
        );
        u.apply(&Rule::parse(b">a").unwrap()).unwrap();
        u.apply(&Rule::parse(b">a").unwrap()).unwrap();
        assert_eq!(u.password_hexes().len(), 1, "a password is kept once");
        u.apply(&Rule::parse(b"<a").unwrap()).unwrap();
        assert!(u.password_hexes().is_empty());
    }

    #[test]
    fn passwords_nopass_resetpass_and_reset() {
        let mut u = user("on >one >two");
        let (one, two) = (PasswordHash::of(b"one"), PasswordHash::of(b"two"));
        assert!(u.accepts(&one) && u.accepts(&two));
        u.apply(&Rule::NoPass).unwrap();
        assert!(u.accepts(&PasswordHash::of(b"anything")));
        assert_eq!(u.flags(), ["on", "nopass"]);
        u.apply(&Rule::AddPassword(one)).unwrap();
        assert!(!u.is_nopass(), "a password clears nopass");
        assert!(!u.accepts(&two));
        u.apply(&Rule::ResetPass).unwrap();
        assert!(!u.accepts(&one));
        let mut u = user("on nopass ~* &* +@all");
        u.apply(&Rule::Reset).unwrap();
        assert_eq!(u, user(""));
        u.apply(&Rule::Off).unwrap();
        assert!(!u.accepts(&one));
    }

    #[test]
    fn too_many_patterns_are_refused() {
        let mut u = user("");
        for i in 0..MAX_ITEMS_PER_USER {
            u.apply(&Rule::KeyPattern(Bytes::from(format!("k{i}"))))
                .unwrap();
        }
        assert_eq!(
            u.apply(&Rule::KeyPattern(Bytes::from_static(b"one-more"))),
            Err(RuleError::TooMany)
        );
        u.apply(&Rule::KeyPattern(Bytes::from_static(b"k0")))
            .unwrap();
    }
}
