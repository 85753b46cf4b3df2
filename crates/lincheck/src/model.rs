//! The data model: operations on a key-value store whose keys are independent
//! registers, and the sequential specification of one register.

use std::fmt;

/// A key of the store. Every key is an independent register.
pub type Key = u64;

/// A value stored under a key.
pub type Value = u64;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the current value of the key.
    Read,
    /// Overwrite the value of the key.
    Write(Value),
    /// Compare-and-set: if the current value equals `expected` (`None` meaning
    /// "the key is absent"), set it to `new`; otherwise leave it unchanged.
    Cas {
        /// The value the key must currently hold (`None` = absent) for the swap to happen.
        expected: Option<Value>,
        /// The value stored if the comparison succeeds.
        new: Value,
    },
    /// The expiry of the value `v` written with a time to live (`SET k v PX
    /// ms`): if the register holds `v`, it becomes absent; otherwise it is
    /// unchanged. Never acknowledged: a history records it as an open
    /// operation invoked when the expiring write was, so it may take effect
    /// at any instant after that (while the key still holds `v`), or never.
    /// With unique values per write, it can only remove the value of the
    /// write it belongs to. A reply to it makes the history malformed.
    Expire(Value),
}

impl Input {
    /// The sequential specification of a register: applies this input to the
    /// register's current value `state` (`None` = absent) and returns the new
    /// value and the output a correct register would reply with.
    ///
    /// ```
    /// use raft_lincheck::{Input, Output};
    /// assert_eq!(Input::Read.apply(Some(3)), (Some(3), Output::Read(Some(3))));
    /// assert_eq!(Input::Write(4).apply(None), (Some(4), Output::Write));
    /// let cas = Input::Cas { expected: None, new: 1 };
    /// assert_eq!(cas.apply(None), (Some(1), Output::Cas(true)));
    /// assert_eq!(cas.apply(Some(2)), (Some(2), Output::Cas(false)));
    /// assert_eq!(Input::Expire(5).apply(Some(5)).0, None);
    /// assert_eq!(Input::Expire(5).apply(Some(6)).0, Some(6));
    /// ```
    ///
    /// An expiry has no reply; its output ([`Output::Write`]) is never
    /// compared with anything.
    #[inline]
    pub fn apply(self, state: Option<Value>) -> (Option<Value>, Output) {
        match self {
            Input::Read => (state, Output::Read(state)),
            Input::Write(v) => (Some(v), Output::Write),
            Input::Cas { expected, new } => {
                if state == expected {
                    (Some(new), Output::Cas(true))
                } else {
                    (state, Output::Cas(false))
                }
            }
            Input::Expire(v) if state == Some(v) => (None, Output::Write),
            Input::Expire(_) => (state, Output::Write),
        }
    }

    /// Whether `output` is of the kind this input produces (a read reply for
    /// a read, and so on). Does not check the replied value. An expiry
    /// accepts no reply at all.
    pub fn accepts(self, output: Output) -> bool {
        matches!(
            (self, output),
            (Input::Read, Output::Read(_))
                | (Input::Write(_), Output::Write)
                | (Input::Cas { .. }, Output::Cas(_))
        )
    }
}

/// What the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// The value read (`None` = the key was absent).
    Read(Option<Value>),
    /// The write was acknowledged.
    Write,
    /// Whether the compare-and-set succeeded.
    Cas(bool),
}

/// One client operation on one key, with its real-time interval.
///
/// An operation with a reply (`ret: Some(..)`) must take effect atomically at
/// some instant between `call` and its return time, and its output must match
/// the register's specification at that instant. An operation without a reply
/// (`ret: None`: the client timed out, the node crashed, ...) may take effect at
/// any instant after `call`, or never.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client that issued the operation (only used in reports).
    pub client: u64,
    /// The key the operation is about.
    pub key: Key,
    /// What the client asked for.
    pub input: Input,
    /// Invocation time (any monotonic unit, e.g. simulated microseconds).
    pub call: u64,
    /// Completion time and result; `None` = open forever (timed out).
    pub ret: Option<(u64, Output)>,
}

impl Operation {
    /// An operation that completed at time `ret` with `output`.
    pub fn completed(
        client: u64,
        key: Key,
        input: Input,
        call: u64,
        ret: u64,
        output: Output,
    ) -> Self {
        Operation {
            client,
            key,
            input,
            call,
            ret: Some((ret, output)),
        }
    }

    /// An operation that never got a reply (open forever).
    pub fn open(client: u64, key: Key, input: Input, call: u64) -> Self {
        Operation {
            client,
            key,
            input,
            call,
            ret: None,
        }
    }

    /// Whether the operation never got a reply.
    pub fn is_open(&self) -> bool {
        self.ret.is_none()
    }

    /// The completion time, if any.
    pub fn ret_time(&self) -> Option<u64> {
        self.ret.map(|(t, _)| t)
    }

    /// The reply, if any.
    pub fn output(&self) -> Option<Output> {
        self.ret.map(|(_, o)| o)
    }
}

/// Formats an optional register value as `absent` or the number.
pub(crate) struct ShowValue(pub Option<Value>);

impl fmt::Display for ShowValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("absent"),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Input::Read => f.write_str("read"),
            Input::Write(v) => write!(f, "write({v})"),
            Input::Cas { expected, new } => write!(f, "cas({} -> {new})", ShowValue(expected)),
            Input::Expire(v) => write!(f, "expire({v})"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Output::Read(v) => write!(f, "{}", ShowValue(v)),
            Output::Write => f.write_str("ok"),
            Output::Cas(true) => f.write_str("ok"),
            Output::Cas(false) => f.write_str("failed"),
        }
    }
}

impl fmt::Display for Operation {
    /// Renders e.g. `client 3 key 7 [10, 25] cas(absent -> 4) -> ok` or
    /// `client 1 key 7 [12, open] write(5) -> no reply`; an expiry renders as
    /// `client 1 key 7 [12, open] expire(5) -> at any time, or never`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} key {} [{}, ",
            self.client, self.key, self.call
        )?;
        match self.ret {
            Some((t, out)) => write!(f, "{t}] {} -> {out}", self.input),
            None => write!(f, "open] {} -> {}", self.input, no_reply(self.input)),
        }
    }
}

/// What an operation without a reply is shown with.
pub(crate) fn no_reply(input: Input) -> &'static str {
    match input {
        Input::Read => "no reply (ignored)",
        Input::Expire(_) => "at any time, or never",
        _ => "no reply",
    }
}
