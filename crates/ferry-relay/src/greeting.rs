//! The pause before the greeting, as Postfix's postscreen does it: an SMTP
//! client must wait for the server's `220` before it speaks. Spam bots
//! that pipeline their whole dialogue at once talk first; they are told
//! `554 5.5.1` and closed before any session exists. An address that waited
//! is remembered for a while, so applications pay the pause once a day per
//! node, not on every connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Addresses remembered at most: a flood of new addresses cannot grow the
/// map without bound (past it, a new address just waits each time).
const REMEMBERED_MAX: usize = 100_000;

/// What the client did during the pause.
#[derive(Debug, PartialEq, Eq)]
pub enum Pause {
    /// Waited: greet it.
    Waited,
    /// Sent bytes before the greeting.
    SpokeFirst,
    /// Closed the connection (or it failed).
    Gone,
}

/// The pause and the addresses that passed it.
pub struct GreetingPause {
    pause: Duration,
    pass_for: Duration,
    passed: Mutex<HashMap<IpAddr, Instant>>,
}

impl GreetingPause {
    pub fn new(pause: Duration, pass_for: Duration) -> Self {
        GreetingPause {
            pause,
            pass_for,
            passed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a connection from `ip` waits before its greeting.
    pub fn applies_to(&self, ip: IpAddr) -> bool {
        if self.pause.is_zero() {
            return false;
        }
        let passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        passed.get(&ip).is_none_or(|until| *until <= Instant::now())
    }

    /// Waits out the pause, watching for bytes without reading them.
    pub async fn wait(&self, tcp: &TcpStream, ip: IpAddr) -> Pause {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(self.pause, tcp.peek(&mut byte)).await {
            Err(_) => {
                self.remember(ip);
                Pause::Waited
            }
            Ok(Ok(n)) if n > 0 => Pause::SpokeFirst,
            Ok(_) => Pause::Gone,
        }
    }

    fn remember(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if passed.len() >= REMEMBERED_MAX {
            passed.retain(|_, until| *until > now);
        }
        if passed.len() < REMEMBERED_MAX {
            passed.insert(ip, now + self.pass_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, client)
    }

    #[tokio::test]
    async fn a_client_that_talks_first_is_caught_and_one_that_waits_is_remembered() {
        let pause = GreetingPause::new(Duration::from_millis(200), Duration::from_secs(60));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let (server, mut client) = pair().await;
        client.write_all(b"EHLO bot\r\n").await.expect("write");
        assert_eq!(pause.wait(&server, ip).await, Pause::SpokeFirst);
        assert!(pause.applies_to(ip), "a talker is not remembered");

        let (server, _client) = pair().await;
        assert_eq!(pause.wait(&server, ip).await, Pause::Waited);
        assert!(!pause.applies_to(ip), "greeted at once for a while");

        let (server, client) = pair().await;
        drop(client);
        assert_eq!(pause.wait(&server, [127, 0, 0, 2].into()).await, Pause::Gone);
        assert!(!GreetingPause::new(Duration::ZERO, Duration::ZERO).applies_to(ip));
    }
}
