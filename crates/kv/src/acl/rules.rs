//! The rules of `ACL SETUSER`, parsed from their Redis 7 syntax. A rule
//! holds no plaintext: `>password` and `<password` become the hash of the
//! password as they are parsed, so that what is proposed to the log (the
//! rule's [`Rule::text`]) is `#<hash>` or `!<hash>`.

use bytes::Bytes;

use super::commands::{self, CommandSet, CATEGORIES, COMMANDS};
use super::password::PasswordHash;

/// Why a rule was refused; the texts are Redis 7's (after "Error in ACL
/// SETUSER modifier '...': "), except for the empty password, which Redis
/// accepts and raft-kv does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not a rule (or a pattern with spaces).
    #[error("Syntax error")]
    Syntax,
    /// `+name`, `-name`, `+@name` or `-@name` names no command or category.
    #[error("Unknown command or category name in ACL")]
    UnknownName,
    /// `~pattern` after `allkeys` (or `~*`).
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    KeyPatternAfterAllKeys,
    /// `&pattern` after `allchannels` (or `&*`).
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    ChannelPatternAfterAllChannels,
    /// `<password` or `!hash` for a password the user does not have.
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    /// `#hash` or `!hash` that is not 64 lower-case hex digits.
    #[error(
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
    )]
    BadHash,
    /// `>` alone, or the hash of the empty password.
    #[error("empty passwords are not allowed: use nopass for a user who needs no password")]
    EmptyPassword,
    /// More passwords or patterns than a user may have.
    #[error("a user has at most {MAX_ITEMS_PER_USER} passwords, key patterns and channel patterns of each kind")]
    TooMany,
}

/// The most passwords, key patterns or channel patterns one user may have.
pub const MAX_ITEMS_PER_USER: usize = 1024;

/// What a `+`/`-` command rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A command or subcommand: its index in [`COMMANDS`]. A container
    /// takes its subcommands along.
    Command(usize),
    /// A category: its index in [`CATEGORIES`].
    Category(usize),
}

/// `+target` (allow) or `-target` (deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRule {
    /// True for `+`.
    pub allow: bool,
    /// What it applies to.
    pub target: Target,
}

impl CommandRule {
    /// The commands it applies to, as a set of [`COMMANDS`] indexes.
    pub fn mask(&self) -> CommandSet {
        match self.target {
            Target::Command(i) => std::iter::once(i).chain(commands::subcommands(i)).collect(),
            Target::Category(c) => COMMANDS
                .iter()
                .enumerate()
                .filter(|(_, spec)| spec.categories & (1 << c) != 0)
                .map(|(i, _)| i)
                .collect(),
        }
    }

    fn text(&self) -> String {
        let sign = if self.allow { '+' } else { '-' };
        match self.target {
            Target::Command(i) => format!("{sign}{}", COMMANDS[i].name),
            Target::Category(c) => format!("{sign}@{}", CATEGORIES[c]),
        }
    }
}

/// One rule of `ACL SETUSER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `on`: the user may authenticate.
    On,
    /// `off`: it may not (and its connections are closed).
    Off,
    /// `nopass`: any password works; the passwords are forgotten.
    NoPass,
    /// `resetpass`: no password, and not `nopass`.
    ResetPass,
    /// `>password` or `#hash`.
    AddPassword(PasswordHash),
    /// `<password` or `!hash`.
    RemovePassword(PasswordHash),
    /// `allkeys` or `~*`.
    AllKeys,
    /// `resetkeys`.
    ResetKeys,
    /// `~pattern`.
    KeyPattern(Bytes),
    /// `allchannels` or `&*` (kept and shown; raft-kv has no pub/sub).
    AllChannels,
    /// `resetchannels`.
    ResetChannels,
    /// `&pattern`.
    ChannelPattern(Bytes),
    /// `allcommands` or `+@all`.
    AllCommands,
    /// `nocommands` or `-@all`.
    NoCommands,
    /// `+command`, `-command`, `+@category`, `-@category`.
    Commands(CommandRule),
    /// `reset`: as a new user (resetpass resetkeys resetchannels off -@all).
    Reset,
}

/// Redis's `ACLStringHasSpaces`: white space or NUL.
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | 0))
}

/// A rule's serde form (in log entries) is its [`Rule::text`]; it is
/// parsed back when decoded.
impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.text())
    }
}

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let text = <&[u8]>::deserialize(d)?;
        Rule::parse(text).map_err(|e| {
            crate::store::refuse(format_args!(
                "ACL rule '{}': {e}",
                String::from_utf8_lossy(text)
            ))
        })
    }
}

impl Rule {
    /// Parses one rule (keywords, command and category names are
    /// case-insensitive, as in Redis). A password is hashed here.
    pub fn parse(op: &[u8]) -> Result<Rule, RuleError> {
        let keyword = |k: &str| op.eq_ignore_ascii_case(k.as_bytes());
        let fixed = [
            ("on", Rule::On),
            ("off", Rule::Off),
            ("nopass", Rule::NoPass),
            ("resetpass", Rule::ResetPass),
            ("allkeys", Rule::AllKeys),
            ("~*", Rule::AllKeys),
            ("resetkeys", Rule::ResetKeys),
            ("allchannels", Rule::AllChannels),
            ("&*", Rule::AllChannels),
            ("resetchannels", Rule::ResetChannels),
            ("allcommands", Rule::AllCommands),
            ("+@all", Rule::AllCommands),
            ("nocommands", Rule::NoCommands),
            ("-@all", Rule::NoCommands),
            ("reset", Rule::Reset),
        ];
        if let Some((_, rule)) = fixed.into_iter().find(|(k, _)| keyword(k)) {
            return Ok(rule);
        }
        let Some((&first, rest)) = op.split_first() else {
            return Err(RuleError::Syntax);
        };
        let hash = |hex: &[u8]| PasswordHash::from_hex(hex).ok_or(RuleError::BadHash);
        let pattern = |p: &[u8]| {
            if has_spaces(p) {
                Err(RuleError::Syntax)
            } else {
                Ok(Bytes::copy_from_slice(p))
            }
        };
        let rule = match first {
            b'>' if rest.is_empty() => return Err(RuleError::EmptyPassword),
            b'>' => Rule::AddPassword(PasswordHash::of(rest)),
            b'#' => {
                let h = hash(rest)?;
                if h.is_of_empty_password() {
                    return Err(RuleError::EmptyPassword);
                }
                Rule::AddPassword(h)
            }
            b'<' => Rule::RemovePassword(PasswordHash::of(rest)),
            b'!' => Rule::RemovePassword(hash(rest)?),
            b'~' => Rule::KeyPattern(pattern(rest)?),
            b'&' => Rule::ChannelPattern(pattern(rest)?),
            b'+' | b'-' => {
                let target = match rest.strip_prefix(b"@") {
                    Some(cat) => {
                        Target::Category(commands::category(cat).ok_or(RuleError::UnknownName)?)
                    }
                    None => {
                        Target::Command(commands::index_of(rest).ok_or(RuleError::UnknownName)?)
                    }
                };
                Rule::Commands(CommandRule {
                    allow: first == b'+',
                    target,
                })
            }
            _ => return Err(RuleError::Syntax),
        };
        Ok(rule)
    }

    /// The rule as it is replicated: parsing it gives it back, and it holds
    /// no plaintext password.
    pub fn text(&self) -> Bytes {
        let fixed = |s: &'static str| Bytes::from_static(s.as_bytes());
        let prefixed = |c: u8, p: &[u8]| {
            let mut v = Vec::with_capacity(1 + p.len());
            v.push(c);
            v.extend_from_slice(p);
            Bytes::from(v)
        };
        match self {
            Rule::On => fixed("on"),
            Rule::Off => fixed("off"),
            Rule::NoPass => fixed("nopass"),
            Rule::ResetPass => fixed("resetpass"),
            Rule::AddPassword(h) => Bytes::from(format!("#{}", h.to_hex())),
            Rule::RemovePassword(h) => Bytes::from(format!("!{}", h.to_hex())),
            Rule::AllKeys => fixed("allkeys"),
            Rule::ResetKeys => fixed("resetkeys"),
            Rule::KeyPattern(p) => prefixed(b'~', p),
            Rule::AllChannels => fixed("allchannels"),
            Rule::ResetChannels => fixed("resetchannels"),
            Rule::ChannelPattern(p) => prefixed(b'&', p),
            Rule::AllCommands => fixed("allcommands"),
            Rule::NoCommands => fixed("nocommands"),
            Rule::Commands(r) => Bytes::from(r.text()),
            Rule::Reset => fixed("reset"),
        }
    }
}

/// The `+@all`/`-@all` base and the command rules after it, kept as Redis
/// 7.2 keeps them: a later rule on the same target replaces an earlier one.
pub(crate) fn describe_commands(all: bool, rules: &[CommandRule]) -> String {
    let mut s = String::from(if all { "+@all" } else { "-@all" });
    for r in rules {
        s.push(' ');
        s.push_str(&r.text());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Rule, RuleError> {
        Rule::parse(s.as_bytes())
    }

    #[test]
    fn keywords_are_case_insensitive_and_have_aliases() {
        assert_eq!(p("ON"), Ok(Rule::On));
        assert_eq!(p("off"), Ok(Rule::Off));
        assert_eq!(p("~*"), Ok(Rule::AllKeys));
        assert_eq!(p("AllKeys"), Ok(Rule::AllKeys));
        assert_eq!(p("&*"), Ok(Rule::AllChannels));
        assert_eq!(p("+@ALL"), Ok(Rule::AllCommands));
        assert_eq!(p("nocommands"), Ok(Rule::NoCommands));
        assert_eq!(p("reset"), Ok(Rule::Reset));
    }

    #[test]
    fn passwords_are_hashed_as_they_are_parsed() {
        let h = PasswordHash::of(b"s3cret");
        assert_eq!(p(">s3cret"), Ok(Rule::AddPassword(h)));
        assert_eq!(p("<s3cret"), Ok(Rule::RemovePassword(h)));
        let text = p(">s3cret").unwrap().text();
        assert_eq!(&text[..], format!("#{}", h.to_hex()).as_bytes());
        assert!(!text.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(Rule::parse(&text), Ok(Rule::AddPassword(h)));
        let text = p("<s3cret").unwrap().text();
        assert_eq!(Rule::parse(&text), Ok(Rule::RemovePassword(h)));
        assert_eq!(p("#abc"), Err(RuleError::BadHash));
        assert_eq!(
            p(&format!("!{}", h.to_hex().to_uppercase())),
            Err(RuleError::BadHash)
        );
    }

    #[test]
    fn the_empty_password_is_refused() {
        assert_eq!(p(">"), Err(RuleError::EmptyPassword));
        let empty = PasswordHash::of(b"").to_hex();
        assert_eq!(p(&format!("#{empty}")), Err(RuleError::EmptyPassword));
        // Removing it is harmless.
        assert!(p("<").is_ok());
    }

    #[test]
    fn commands_and_categories_by_name() {
        let get = commands::index_of(b"get").unwrap();
        assert_eq!(
            p("+GET"),
            Ok(Rule::Commands(CommandRule {
                allow: true,
                target: Target::Command(get)
            }))
        );
        assert_eq!(
            p("-@Admin"),
            Ok(Rule::Commands(CommandRule {
                allow: false,
                target: Target::Category(13)
            }))
        );
        assert!(p("+acl|whoami").is_ok());
        assert_eq!(p("+bzpopmin"), Err(RuleError::UnknownName));
        assert_eq!(p("+@nosuch"), Err(RuleError::UnknownName));
        assert_eq!(p("+select|0"), Err(RuleError::UnknownName));
        for text in [
            "+get",
            "-@admin",
            "+acl|whoami",
            "~app:*",
            "&news",
            "allkeys",
        ] {
            assert_eq!(&p(text).unwrap().text()[..], text.as_bytes());
        }
    }

    #[test]
    fn syntax_errors() {
        for bad in ["", "foo", "~a b", "&a\tb", "%R~k", "(~* +get)", "~a\0"] {
            assert_eq!(p(bad), Err(RuleError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn a_container_rule_takes_its_subcommands() {
        let acl = commands::index_of(b"acl").unwrap();
        let rule = CommandRule {
            allow: true,
            target: Target::Command(acl),
        };
        assert_eq!(rule.mask().len(), 10);
        let admin = CommandRule {
            allow: true,
            target: Target::Category(commands::category(b"admin").unwrap()),
        };
        let setuser = commands::index_of(b"acl|setuser").unwrap();
        let whoami = commands::index_of(b"acl|whoami").unwrap();
        assert!(admin.mask().contains(setuser));
        assert!(!admin.mask().contains(whoami));
        assert!(!admin.mask().contains(acl), "containers have no category");
    }
}
