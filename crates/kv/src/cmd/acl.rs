//! The ACL command: SETUSER and DELUSER go through the log (the rules
//! with their passwords already hashed); LIST, USERS, GETUSER, WHOAMI,
//! CAT, DRYRUN and HELP are answered from the users this node has applied.

use bytes::{Bytes, BytesMut};

use super::{Command, Local};
use crate::acl::commands::{self, COMMANDS};
use crate::acl::{self, Denied, Rule, View};
use crate::context::Context;
use crate::frame::{put_array, put_bulk, put_error, put_null, put_simple};
use crate::store::{encode_reads, Write};

/// An ACL subcommand answered by this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclLocal {
    /// `ACL LIST`
    List,
    /// `ACL USERS`
    Users,
    /// `ACL GETUSER name`
    GetUser(Bytes),
    /// `ACL WHOAMI`
    WhoAmI,
    /// `ACL CAT [category]`
    Cat(Option<Bytes>),
    /// `ACL DRYRUN user command [arg...]`
    DryRun {
        /// The user.
        user: Bytes,
        /// The command and its arguments.
        command: Vec<Bytes>,
    },
    /// `ACL HELP`
    Help,
}

fn refused(e: String) -> Command {
    Command::Refused(e)
}

/// Parses `ACL subcommand args...` (`args` after the command name).
pub fn parse(args: &[Bytes]) -> Command {
    let Some(sub) = args.first() else {
        return refused(super::arity_error("acl"));
    };
    let sub_lower = sub.to_ascii_lowercase();
    let rest = &args[1..];
    let n = args.len() + 1;
    // Arity as Redis 7 checks it for the subcommand: before AUTH.
    if let Some(i) = commands::index_of(&[&b"acl|"[..], &sub_lower[..]].concat()) {
        if !COMMANDS[i].arity_ok(n) {
            return refused(super::arity_error(COMMANDS[i].name));
        }
    }
    let local = |l: AclLocal| Command::Local(Local::Acl(l));
    match sub_lower.as_slice() {
        b"setuser" => parse_setuser(&rest[0], &rest[1..]),
        b"deluser" => {
            if rest.iter().any(|n| n.as_ref() == acl::DEFAULT_USER) {
                return Command::Invalid(acl::AclError::DefaultUser.to_string());
            }
            Command::Write(Write::AclDelUser {
                names: rest.to_vec(),
            })
        }
        b"getuser" => local(AclLocal::GetUser(rest[0].clone())),
        b"list" => local(AclLocal::List),
        b"users" => local(AclLocal::Users),
        b"whoami" => local(AclLocal::WhoAmI),
        b"cat" if rest.len() <= 1 => local(AclLocal::Cat(rest.first().cloned())),
        b"cat" => refused(super::arity_error("acl|cat")),
        b"dryrun" => local(AclLocal::DryRun {
            user: rest[0].clone(),
            command: rest[1..].to_vec(),
        }),
        b"help" => local(AclLocal::Help),
        b"save" | b"load" => Command::Invalid(
            "ERR raft-kv keeps its users in the replicated log, on every node: ACL SAVE and ACL LOAD have nothing to do"
                .into(),
        ),
        b"log" => Command::Invalid(
            "ERR raft-kv keeps no ACL log: INFO stats counts the denials (acl_access_denied_*)"
                .into(),
        ),
        _ => refused(format!(
            "ERR unknown subcommand '{}'. Try ACL HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        )),
    }
}

fn parse_setuser(name: &Bytes, rules: &[Bytes]) -> Command {
    if acl::rules::has_spaces(name) {
        return Command::Invalid(acl::AclError::BadUserName.to_string());
    }
    let mut parsed = Vec::with_capacity(rules.len());
    for r in rules.iter().filter(|r| !r.is_empty()) {
        match Rule::parse(r) {
            Ok(rule) => parsed.push(rule),
            Err(e) => return Command::Invalid(acl::AclError::modifier(r, e).to_string()),
        }
    }
    Command::Write(Write::AclSetUser {
        name: name.clone(),
        rules: parsed,
    })
}

/// The name a connection is authenticated as, if any.
fn whoami(auth: &acl::Auth) -> Option<Bytes> {
    match auth {
        acl::Auth::User { name, .. } => Some(name.clone()),
        acl::Auth::Provisional(_) => Some(Bytes::from_static(acl::DEFAULT_USER)),
        acl::Auth::Pending | acl::Auth::Anonymous => None,
    }
}

const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "LIST",
    "    Show users details in config file format.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Print this help.",
];

/// Runs an ACL subcommand answered by this server and writes its reply.
/// LIST, USERS and GETUSER first wait until this node has applied every
/// change committed before (a linearizable read), unless the connection
/// asked for local reads.
pub async fn run(
    sub: AclLocal,
    auth: &acl::Auth,
    local_reads: bool,
    ctx: &Context,
    out: &mut BytesMut,
) {
    if matches!(sub, AclLocal::List | AclLocal::Users | AclLocal::GetUser(_)) && !local_reads {
        if let Err(e) = ctx.node.read(encode_reads(&[])).await {
            return put_error(
                out,
                &crate::server::error_reply(&e, ctx.node.leader().as_ref()),
            );
        }
    }
    let view = ctx.acl.view();
    let Some(users) = view.users() else {
        return put_error(out, crate::server::LOADING);
    };
    match sub {
        AclLocal::List => {
            put_array(out, users.len());
            for u in users.iter() {
                put_bulk(out, &u.describe());
            }
        }
        AclLocal::Users => {
            put_array(out, users.len());
            for u in users.iter() {
                put_bulk(out, u.name());
            }
        }
        AclLocal::GetUser(name) => match users.get(&name) {
            None => put_null(out),
            Some(u) => {
                put_array(out, 12);
                put_bulk(out, b"flags");
                let flags = u.flags();
                put_array(out, flags.len());
                for f in flags {
                    put_bulk(out, f.as_bytes());
                }
                put_bulk(out, b"passwords");
                let hexes = u.password_hexes();
                put_array(out, hexes.len());
                for h in hexes {
                    put_bulk(out, h.as_bytes());
                }
                put_bulk(out, b"commands");
                put_bulk(out, u.commands_text().as_bytes());
                put_bulk(out, b"keys");
                put_bulk(out, &u.keys_text());
                put_bulk(out, b"channels");
                put_bulk(out, &u.channels_text());
                put_bulk(out, b"selectors");
                put_array(out, 0);
            }
        },
        AclLocal::WhoAmI => match whoami(auth) {
            Some(name) => put_bulk(out, &name),
            None => put_null(out),
        },
        AclLocal::Cat(None) => {
            put_array(out, commands::CATEGORIES.len());
            for c in commands::CATEGORIES {
                put_bulk(out, c.as_bytes());
            }
        }
        AclLocal::Cat(Some(name)) => match commands::category(&name) {
            None => put_error(
                out,
                &format!(
                    "ERR Unknown category '{}'",
                    String::from_utf8_lossy(&name[..name.len().min(128)])
                ),
            ),
            Some(c) => {
                let names: Vec<&str> = COMMANDS
                    .iter()
                    .filter(|spec| spec.categories & (1 << c) != 0)
                    .map(|spec| spec.name)
                    .collect();
                put_array(out, names.len());
                for n in names {
                    put_bulk(out, n.as_bytes());
                }
            }
        },
        AclLocal::DryRun { user, command } => dry_run(&view, &user, &command, out),
        AclLocal::Help => {
            put_array(out, HELP.len());
            for line in HELP {
                put_simple(out, line);
            }
        }
    }
}

fn dry_run(view: &View, user: &[u8], command: &[Bytes], out: &mut BytesMut) {
    let lossy = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(128)]).into_owned();
    let Some(u) = view.users().and_then(|users| users.get(user)) else {
        return put_error(out, &format!("ERR User '{}' not found", lossy(user)));
    };
    let Some(spec) = commands::lookup(command) else {
        return put_error(
            out,
            &format!("ERR Command '{}' not found", lossy(&command[0])),
        );
    };
    if !COMMANDS[spec].arity_ok(command.len()) {
        return put_error(out, &super::arity_error(COMMANDS[spec].name));
    }
    match u.check(spec, command) {
        Ok(()) => put_simple(out, "OK"),
        Err(Denied::Command) => put_bulk(
            out,
            format!(
                "User {} has no permissions to run the '{}' command",
                lossy(u.name()),
                COMMANDS[spec].name
            )
            .as_bytes(),
        ),
        Err(Denied::Key(i)) => put_bulk(
            out,
            format!("No permissions to access the '{}' key", lossy(&command[i])).as_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Command {
        let args: Vec<Bytes> = s
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        parse(&args)
    }

    #[test]
    fn setuser_hashes_passwords_before_they_are_proposed() {
        let Command::Write(w) = p("SETUSER alice on >s3cret ~app:* +@read") else {
            panic!("a write")
        };
        let entry = crate::store::encode_writes(&[w]);
        assert!(!entry.windows(6).any(|x| x == b"s3cret"));
        let hex = acl::PasswordHash::of(b"s3cret").to_hex();
        assert!(entry.windows(64).any(|x| x == hex.as_bytes()));
    }

    #[test]
    fn errors_are_worded_like_redis() {
        assert_eq!(
            p("SETUSER alice foo"),
            Command::Invalid("ERR Error in ACL SETUSER modifier 'foo': Syntax error".into())
        );
        assert!(
            matches!(p("SETUSER x >"), Command::Invalid(e) if e.contains("empty passwords are not allowed"))
        );
        assert_eq!(
            p("DELUSER bob default"),
            Command::Invalid("ERR The 'default' user cannot be removed".into())
        );
        assert_eq!(
            p("SETUSER"),
            Command::Refused("ERR wrong number of arguments for 'acl|setuser' command".into())
        );
        assert_eq!(
            p("WHOAMI me"),
            Command::Refused("ERR wrong number of arguments for 'acl|whoami' command".into())
        );
        assert_eq!(
            p("FROB"),
            Command::Refused("ERR unknown subcommand 'FROB'. Try ACL HELP.".into())
        );
        assert_eq!(
            p("cat read"),
            Command::Local(Local::Acl(AclLocal::Cat(Some("read".into()))))
        );
        assert!(
            matches!(p("SETUSER bob"), Command::Write(Write::AclSetUser { rules, .. }) if rules.is_empty())
        );
    }
}
