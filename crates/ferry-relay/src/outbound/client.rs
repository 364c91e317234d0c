//! The outbound SMTP client: EHLO, STARTTLS (opportunistic, or required
//! with a verified certificate), AUTH for smart hosts, PIPELINING when
//! offered, SIZE/8BITMIME/SMTPUTF8 respected, several messages per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_smtp::data::dot_stuff;
use ferry_smtp::sasl::encode_base64;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::stream::{ClientStream, Stream};
use crate::tls::TlsInfo;

/// A reply from the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    /// The text of each line, without the code.
    pub lines: Vec<String>,
}

impl RemoteReply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    /// The enhanced status code, or one derived from the basic code.
    pub fn status(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or("");
        match first.split_whitespace().next() {
            Some(w) if w.split('.').count() == 3 && w.split('.').all(|p| p.parse::<u16>().is_ok()) => w.to_string(),
            _ if self.code >= 500 => "5.0.0".into(),
            _ if self.code >= 400 => "4.0.0".into(),
            _ => "2.0.0".into(),
        }
    }
}

/// Why a connection or transaction failed as a whole (not per recipient).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("timeout talking to {0}")]
    Timeout(SocketAddr),
    #[error("connection to {0} lost: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("{0} answered {1}")]
    Refused(SocketAddr, String),
    #[error("TLS required but {0} does not offer STARTTLS")]
    NoStartTls(SocketAddr),
    #[error("TLS with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("{0} sent an unreadable reply")]
    Garbled(SocketAddr),
}

/// How hard to insist on TLS with the next hop.
#[derive(Clone)]
pub enum TlsMode {
    /// STARTTLS when offered, any certificate (RFC 7435 opportunistic security).
    Opportunistic(TlsConnector),
    /// STARTTLS must be offered and the certificate must verify for the host name.
    Required(TlsConnector),
}

/// What the next hop said it can do.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub pipelining: bool,
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub auth_plain: bool,
}

impl Capabilities {
    fn parse(ehlo: &RemoteReply) -> Self {
        let mut caps = Capabilities::default();
        for line in ehlo.lines.iter().skip(1) {
            let keyword = line.trim().to_ascii_uppercase();
            let mut words = keyword.split_whitespace();
            match words.next() {
                Some("PIPELINING") => caps.pipelining = true,
                Some("SIZE") => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0),
                Some("8BITMIME") => caps.eight_bit = true,
                Some("SMTPUTF8") => caps.smtputf8 = true,
                Some("STARTTLS") => caps.starttls = true,
                Some("AUTH") => caps.auth_plain = words.any(|w| w == "PLAIN"),
                _ => {}
            }
        }
        caps
    }
}

/// One open connection to a next hop, ready for MAIL.
pub struct Connection {
    /// None only while the handshake owns the socket.
    stream: Option<ClientStream>,
    buf: Vec<u8>,
    pub peer: SocketAddr,
    pub host: String,
    pub caps: Capabilities,
    pub tls: Option<TlsInfo>,
    timeout: Duration,
    pub messages_sent: u32,
}

/// Everything needed to open a connection.
pub struct Dial<'a> {
    pub addr: SocketAddr,
    pub host: &'a str,
    pub helo: &'a str,
    pub tls: &'a TlsMode,
    pub credentials: Option<(&'a str, &'a str)>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// The answer for each recipient of one transaction.
pub type RecipientReplies = Vec<(String, RemoteReply)>;

impl Connection {
    pub async fn open(d: Dial<'_>) -> Result<Connection, ClientError> {
        let tcp = tokio::time::timeout(d.connect_timeout, TcpStream::connect(d.addr))
            .await
            .map_err(|_| ClientError::Timeout(d.addr))?
            .map_err(|e| ClientError::Connect(d.addr, e))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Some(Stream::Plain(tcp)),
            buf: Vec::new(),
            peer: d.addr,
            host: d.host.to_string(),
            caps: Capabilities::default(),
            tls: None,
            timeout: d.command_timeout,
            messages_sent: 0,
        };
        conn.expect_positive(None).await?;
        conn.ehlo(d.helo).await?;
        let connector = match (d.tls, conn.caps.starttls) {
            (TlsMode::Required(_), false) => return Err(ClientError::NoStartTls(d.addr)),
            (TlsMode::Required(c) | TlsMode::Opportunistic(c), true) => Some(c.clone()),
            (TlsMode::Opportunistic(_), false) => None,
        };
        if let Some(connector) = connector {
            conn.expect_positive(Some("STARTTLS")).await?;
            conn.start_tls(connector).await?;
            conn.ehlo(d.helo).await?;
        }
        if let Some((user, password)) = d.credentials {
            let token = encode_base64(format!("\0{user}\0{password}").as_bytes());
            conn.expect_positive(Some(&format!("AUTH PLAIN {token}"))).await?;
        }
        Ok(conn)
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), ClientError> {
        let reply = self.command(&format!("EHLO {helo}")).await?;
        if reply.is_positive() {
            self.caps = Capabilities::parse(&reply);
            return Ok(());
        }
        self.expect_positive(Some(&format!("HELO {helo}"))).await?;
        self.caps = Capabilities::default();
        Ok(())
    }

    async fn start_tls(&mut self, connector: TlsConnector) -> Result<(), ClientError> {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(ClientError::Garbled(self.peer));
        };
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError::Tls(self.peer, std::io::Error::other(e)))?;
        let tls = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout(self.peer))?
            .map_err(|e| ClientError::Tls(self.peer, e))?;
        self.tls = Some(TlsInfo::of_client(tls.get_ref().1));
        self.stream = Some(Stream::Tls(Box::new(tls)));
        self.buf.clear();
        Ok(())
    }

    async fn expect_positive(&mut self, line: Option<&str>) -> Result<RemoteReply, ClientError> {
        let reply = match line {
            Some(line) => self.command(line).await?,
            None => self.read_reply().await?,
        };
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(ClientError::Refused(self.peer, reply.one_line()))
        }
    }

    async fn command(&mut self, line: &str) -> Result<RemoteReply, ClientError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let peer = self.peer;
        let stream = self.stream.as_mut().ok_or(ClientError::Garbled(peer))?;
        let io = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| ClientError::Timeout(peer))?
            .map_err(|e| ClientError::Io(peer, e))
    }

    /// One complete reply, however many lines and reads it takes.
    async fn read_reply(&mut self) -> Result<RemoteReply, ClientError> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf) {
                self.buf.drain(..used);
                return reply.ok_or(ClientError::Garbled(self.peer));
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ClientError::Garbled(self.peer));
            }
            let mut chunk = [0u8; 4096];
            let stream = self.stream.as_mut().ok_or(ClientError::Garbled(self.peer))?;
            let n = tokio::time::timeout(self.timeout, stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout(self.peer))?
                .map_err(|e| ClientError::Io(self.peer, e))?;
            if n == 0 {
                return Err(ClientError::Io(self.peer, std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One transaction. Per-recipient replies come back; a failure of the
    /// connection itself is an error (the caller retries elsewhere or later).
    pub async fn send(
        &mut self,
        from: &str,
        rcpts: &[String],
        content: &[u8],
        eight_bit: bool,
        smtputf8: bool,
    ) -> Result<RecipientReplies, ClientError> {
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", content.len()));
        }
        if eight_bit && self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let mut commands = vec![mail];
        commands.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
        commands.push("DATA".into());
        let replies = if self.caps.pipelining {
            self.write(commands.join("\r\n").add_crlf().as_bytes()).await?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in &commands {
                replies.push(self.read_reply().await?);
            }
            replies
        } else {
            self.send_in_lockstep(&commands).await?
        };
        self.finish_transaction(rcpts, replies, content).await
    }

    /// Without PIPELINING: one command at a time, stopping at the first refusal of MAIL or DATA.
    async fn send_in_lockstep(&mut self, commands: &[String]) -> Result<Vec<RemoteReply>, ClientError> {
        let mut replies = Vec::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let reply = self.command(command).await?;
            let stop = !reply.is_positive() && (i == 0 || i + 1 == commands.len());
            replies.push(reply);
            if stop {
                break;
            }
        }
        Ok(replies)
    }

    async fn finish_transaction(
        &mut self,
        rcpts: &[String],
        replies: Vec<RemoteReply>,
        content: &[u8],
    ) -> Result<RecipientReplies, ClientError> {
        let mail = replies.first().cloned().ok_or(ClientError::Garbled(self.peer))?;
        if !mail.is_positive() {
            self.reset().await?;
            return Ok(rcpts.iter().map(|r| (r.clone(), mail.clone())).collect());
        }
        let rcpt_replies: Vec<RemoteReply> = replies.iter().skip(1).take(rcpts.len()).cloned().collect();
        let data = replies.get(1 + rcpts.len()).cloned();
        let accepted = rcpt_replies.iter().any(RemoteReply::is_positive);
        let final_reply = match data {
            Some(data) if data.code == 354 && accepted => {
                self.write(&dot_stuff(content)).await?;
                self.messages_sent += 1;
                Some(self.read_reply().await?)
            }
            Some(data) if data.code == 354 => {
                // Every recipient was refused but DATA was pipelined: send an empty message's end.
                self.write(b".\r\n").await?;
                let _ = self.read_reply().await?;
                None
            }
            Some(data) if accepted => Some(data),
            _ => None,
        };
        if final_reply.is_none() {
            self.reset().await?;
        }
        Ok(rcpts
            .iter()
            .zip(rcpt_replies)
            .map(|(rcpt, r)| {
                let answer = match (&final_reply, r.is_positive()) {
                    (Some(fin), true) => fin.clone(),
                    _ => r,
                };
                (rcpt.clone(), answer)
            })
            .collect())
    }

    async fn reset(&mut self) -> Result<(), ClientError> {
        self.command("RSET").await.map(|_| ())
    }

    /// Polite close; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT")).await;
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.shutdown().await;
        }
    }
}

trait AddCrlf {
    fn add_crlf(self) -> String;
}

impl AddCrlf for String {
    fn add_crlf(mut self) -> String {
        self.push_str("\r\n");
        self
    }
}

/// Parses one complete reply from the start of `buf`: the reply (None if
/// garbled) and the bytes it used; None while incomplete.
fn parse_reply(buf: &[u8]) -> Option<(Option<RemoteReply>, usize)> {
    let mut start = 0;
    let mut lines = Vec::new();
    while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&buf[start..start + lf])
            .trim_end_matches('\r')
            .to_string();
        start += lf + 1;
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let last = line.len() == 3 || line.as_bytes().get(3) == Some(&b' ');
        lines.push(line.get(4..).unwrap_or("").to_string());
        match code {
            None => return Some((None, start)),
            Some(code) if last => return Some((Some(RemoteReply { code, lines }), start)),
            Some(_) => {}
        }
    }
    None
}

impl RemoteReply {
    /// The reply as one line for logs, DSNs and the queue history.
    pub fn one_line(&self) -> String {
        let text = self.lines.join(" ");
        format!(
            "{} {}",
            self.code,
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        )
    }
}

pub fn connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_multiline_replies() {
        let (reply, used) = parse_reply(b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\nextra").expect("complete");
        let reply = reply.expect("valid");
        assert_eq!(reply.code, 250);
        assert_eq!(used, 44);
        let caps = Capabilities::parse(&reply);
        assert!(caps.pipelining && caps.size == Some(1000) && !caps.starttls);
        assert!(parse_reply(b"250-partial\r\n").is_none());
        let (reply, _) = parse_reply(b"550 5.1.1 no such user\r\n").expect("complete");
        let reply = reply.expect("valid");
        assert_eq!(reply.status(), "5.1.1");
        assert!(reply.is_permanent());
        let (reply, _) = parse_reply(b"451 try later\r\n").expect("complete");
        assert_eq!(reply.expect("valid").status(), "4.0.0");
    }
}
