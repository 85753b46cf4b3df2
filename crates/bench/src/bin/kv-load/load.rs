//! The closed loop: connections that each send one request, wait for its
//! answer, check it, and send the next, until the run's end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{etcd, resp};

/// How to talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SET and GET over RESP (raft-kv, redis-server).
    Resp,
    /// put and range over etcd's HTTP/JSON gateway.
    Etcd,
}

/// What every request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Write the key's value.
    Write,
    /// Read the key and check that it holds its value.
    Read,
}

/// What the connections share.
pub struct Target {
    /// The server's address, `host:port`.
    pub addr: String,
    /// How to talk to it.
    pub protocol: Protocol,
    /// Keys are `k0` .. `k{keyspace - 1}`.
    pub keyspace: u64,
    /// Bytes in every value.
    pub value_size: usize,
    /// Longest wait for a connection or an answer.
    pub timeout: Duration,
}

/// The key number `n`.
fn key(out: &mut Vec<u8>, n: u64) {
    out.clear();
    out.push(b'k');
    out.extend_from_slice(n.to_string().as_bytes());
}

/// The value that key number `n` holds: its name, then filler, `size`
/// bytes in all (a read can tell whose value it got).
pub fn value(out: &mut Vec<u8>, n: u64, size: usize) {
    out.clear();
    out.extend_from_slice(format!("k{n}=").as_bytes());
    out.resize(size.max(out.len()), b'v');
    out.truncate(size);
}

/// One connection to the server, with its buffers.
pub struct Conn {
    stream: TcpStream,
    target: Arc<Target>,
    request: Vec<u8>,
    reply: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    expected: Vec<u8>,
}

impl Conn {
    /// Connects to the target.
    pub async fn open(target: Arc<Target>) -> Result<Conn, String> {
        let stream = tokio::time::timeout(target.timeout, TcpStream::connect(&target.addr))
            .await
            .map_err(|_| format!("connecting to {}: timed out", target.addr))?
            .map_err(|e| format!("connecting to {}: {e}", target.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(Conn {
            stream,
            target,
            request: Vec::with_capacity(512),
            reply: Vec::with_capacity(4096),
            key: Vec::with_capacity(24),
            value: Vec::with_capacity(128),
            expected: Vec::with_capacity(192),
        })
    }

    /// Sends one request about key number `n`, waits for its answer (up to
    /// the target's timeout) and checks it.
    pub async fn call(&mut self, op: Op, n: u64) -> Result<(), String> {
        let timeout = self.target.timeout;
        match tokio::time::timeout(timeout, self.exchange(op, n)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn exchange(&mut self, op: Op, n: u64) -> Result<(), String> {
        key(&mut self.key, n);
        value(&mut self.value, n, self.target.value_size);
        self.request.clear();
        match (self.target.protocol, op) {
            (Protocol::Resp, Op::Write) => {
                resp::encode_set(&mut self.request, &self.key, &self.value)
            }
            (Protocol::Resp, Op::Read) => resp::encode_get(&mut self.request, &self.key),
            (Protocol::Etcd, Op::Write) => {
                etcd::encode_put(&mut self.request, &self.target.addr, &self.key, &self.value)
            }
            (Protocol::Etcd, Op::Read) => {
                etcd::encode_range(&mut self.request, &self.target.addr, &self.key);
                self.expected.clear();
                etcd::base64(&mut self.expected, &self.value);
            }
        }
        self.stream
            .write_all(&self.request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        loop {
            if let Some((len, result)) = self.answer(op)? {
                self.reply.drain(..len);
                if !self.reply.is_empty() {
                    return Err(format!(
                        "bytes after the answer: {}",
                        resp::show(&self.reply)
                    ));
                }
                return result;
            }
            self.reply.reserve(4096);
            let read = self
                .stream
                .read_buf(&mut self.reply)
                .await
                .map_err(|e| format!("receiving: {e}"))?;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
        }
    }

    /// The answer in the read buffer, if it is all there. `Err` if the
    /// bytes are not an answer at all.
    fn answer(&self, op: Op) -> Result<Option<Answer>, String> {
        match self.target.protocol {
            Protocol::Resp => Ok(resp::parse(&self.reply)?.map(|(reply, len)| {
                let check = match op {
                    Op::Write => resp::check_set(&reply),
                    Op::Read => resp::check_get(&reply, &self.value),
                };
                (len, check)
            })),
            Protocol::Etcd => Ok(etcd::parse(&self.reply)?.map(|r| {
                let body = &self.reply[r.body];
                let check = match op {
                    Op::Write => etcd::check_put(r.status, body),
                    Op::Read => etcd::check_range(r.status, body, &self.expected),
                };
                (r.len, check)
            })),
        }
    }
}

/// A whole answer: its length in bytes, and whether it is the right one.
type Answer = (usize, Result<(), String>);

/// What one connection did.
#[derive(Default)]
pub struct Report {
    /// Latency (ns, saturated) of every request answered inside the window.
    pub samples: Vec<u32>,
    /// Requests that failed, over the whole run (warm-up included).
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
}

impl Report {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// A small, fast, seeded generator of key numbers (xorshift64*).
struct Keys(u64);

impl Keys {
    fn new(seed: u64) -> Keys {
        Keys(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// Runs one closed-loop connection: requests on random keys until
/// `until`; answers that arrive in `[from, until)` are counted. After a
/// failure the connection is replaced (its stream may be out of step).
pub async fn client(
    target: Arc<Target>,
    op: Op,
    seed: u64,
    from: Instant,
    until: Instant,
) -> Report {
    let mut report = Report::default();
    let mut keys = Keys::new(seed);
    let mut conn: Option<Conn> = None;
    while Instant::now() < until {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(target.clone()).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    report.fail(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let n = keys.next(target.keyspace);
        let t0 = Instant::now();
        let result = c.call(op, n).await;
        let t1 = Instant::now();
        match result {
            Ok(()) if t1 >= from && t1 < until => {
                let nanos = (t1 - t0).as_nanos();
                report
                    .samples
                    .push(u32::try_from(nanos).unwrap_or(u32::MAX));
            }
            Ok(()) => {}
            Err(e) => {
                report.fail(e);
                conn = None;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    report
}

/// Writes every key of the keyspace once, over `connections` connections;
/// stops at the first failure.
pub async fn fill(target: Arc<Target>, connections: u64) -> Result<(), String> {
    let connections = connections.clamp(1, target.keyspace.max(1));
    let mut tasks = Vec::new();
    for first in 0..connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(target.clone()).await?;
            let mut n = first;
            while n < target.keyspace {
                conn.call(Op::Write, n)
                    .await
                    .map_err(|e| format!("writing k{n}: {e}"))?;
                n += connections;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| format!("a fill task failed: {e}"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn a_value_starts_with_its_key_and_has_the_size_asked_for() {
        let mut v = Vec::new();
        value(&mut v, 42, 10);
        assert_eq!(v, b"k42=vvvvvv");
        value(&mut v, 123456, 4);
        assert_eq!(v, b"k123");
    }

    #[test]
    fn keys_are_spread_over_the_whole_keyspace() {
        let mut keys = Keys::new(7);
        let mut seen = [false; 16];
        for _ in 0..1000 {
            seen[keys.next(16) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    /// A server that reads whatever comes and answers every read with
    /// `answer`.
    async fn server(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn call(answer: &'static [u8], protocol: Protocol, op: Op) -> Result<(), String> {
        let target = Arc::new(Target {
            addr: server(answer).await,
            protocol,
            keyspace: 1,
            value_size: 8,
            timeout: Duration::from_secs(5),
        });
        let mut conn = Conn::open(target).await?;
        conn.call(op, 0).await
    }

    #[tokio::test]
    async fn right_answers_pass_and_wrong_ones_are_reported() {
        use Op::*;
        use Protocol::*;
        assert_eq!(call(b"+OK\r\n", Resp, Write).await, Ok(()));
        assert_eq!(call(b"$8\r\nk0=vvvvv\r\n", Resp, Read).await, Ok(()));
        let wrong = call(b"$8\r\nk1=vvvvv\r\n", Resp, Read).await.unwrap_err();
        assert!(wrong.contains("wrong value"), "{wrong}");
        let refused = call(b"-ERR not the leader\r\n", Resp, Write)
            .await
            .unwrap_err();
        assert!(refused.contains("not the leader"), "{refused}");
        let extra = call(b"+OK\r\n+OK\r\n", Resp, Write).await.unwrap_err();
        assert!(extra.contains("after the answer"), "{extra}");
        let http = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"header\":1";
        assert!(call(http, Resp, Write).await.is_err());
        assert_eq!(call(http, Etcd, Write).await, Ok(()));
        let range = b"HTTP/1.1 200 OK\r\nContent-Length: 45\r\n\r\n{\"header\":{},\"kvs\":[{\"value\":\"azA9dnZ2dnY=\"}]";
        assert_eq!(call(range, Etcd, Read).await, Ok(()));
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
        assert!(call(busy, Etcd, Write).await.unwrap_err().contains("503"));
    }

    #[tokio::test]
    async fn a_closed_loop_against_a_wrong_server_counts_every_failure() {
        let target = Arc::new(Target {
            addr: server(b"-ERR no\r\n").await,
            protocol: Protocol::Resp,
            keyspace: 100,
            value_size: 100,
            timeout: Duration::from_secs(5),
        });
        let now = Instant::now();
        let report = client(target, Op::Write, 1, now, now + Duration::from_millis(200)).await;
        assert!(report.samples.is_empty());
        assert!(report.errors > 0);
        assert_eq!(
            report.first_error.as_deref(),
            Some("SET: error reply -\"ERR no\"")
        );
    }
}
