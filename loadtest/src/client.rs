//! A lean SMTP submission client on tokio: just what a load test needs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Starttls,
    Implicit,
}

pub struct Session {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

const TIMEOUT: Duration = Duration::from_secs(60);

pub fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("--ca {}", path.display()))? {
                roots.add(cert?)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        // Benchmarks talk to a relay with a development certificate.
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(ferry_relay::tls::any_certificate(provider))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

async fn read_reply(stream: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> anyhow::Result<String> {
    loop {
        let mut start = 0;
        while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + lf + 1];
            start += lf + 1;
            if line.len() < 4 || line[3] != b'-' {
                let reply = String::from_utf8_lossy(&buf[..start]).into_owned();
                buf.drain(..start);
                return Ok(reply);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .context("timeout")??;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn expect(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    buf: &mut Vec<u8>,
    line: &str,
    code: &str,
) -> anyhow::Result<()> {
    stream.write_all(line.as_bytes()).await?;
    let reply = read_reply(stream, buf).await?;
    if !reply.starts_with(code) {
        bail!("{} → {}", line.trim_end(), reply.trim_end());
    }
    Ok(())
}

/// An implicit-TLS session that read its greeting and then just waits.
pub async fn open_idle(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut stream = TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let mut buf = Vec::new();
    let greeting = read_reply(&mut stream, &mut buf).await?;
    if !greeting.starts_with("220") {
        bail!("greeting {}", greeting.trim_end());
    }
    Ok(stream)
}

/// The SASL mechanism a session authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Session {
    /// Connect, TLS (STARTTLS or implicit), EHLO, AUTH PLAIN or LOGIN.
    pub async fn open(
        addr: SocketAddr,
        mode: TlsMode,
        tls: Arc<rustls::ClientConfig>,
        mechanism: Mechanism,
        (user, password): (&str, &str),
    ) -> anyhow::Result<Session> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut buf = Vec::new();
        if mode == TlsMode::Starttls {
            let greeting = read_reply(&mut tcp, &mut buf).await?;
            if !greeting.starts_with("220") {
                bail!("greeting {}", greeting.trim_end());
            }
            expect(&mut tcp, &mut buf, "EHLO load.test\r\n", "250").await?;
            expect(&mut tcp, &mut buf, "STARTTLS\r\n", "220").await?;
        }
        let name = ServerName::try_from("localhost")?;
        let mut stream = TlsConnector::from(tls).connect(name, tcp).await?;
        buf.clear();
        if mode == TlsMode::Implicit {
            let greeting = read_reply(&mut stream, &mut buf).await?;
            if !greeting.starts_with("220") {
                bail!("greeting {}", greeting.trim_end());
            }
        }
        expect(&mut stream, &mut buf, "EHLO load.test\r\n", "250").await?;
        let b64 = |s: &str| ferry_smtp::sasl::encode_base64(s.as_bytes());
        match mechanism {
            Mechanism::Plain => {
                let token = b64(&format!("\0{user}\0{password}"));
                expect(&mut stream, &mut buf, &format!("AUTH PLAIN {token}\r\n"), "235").await?;
            }
            Mechanism::Login => {
                expect(&mut stream, &mut buf, "AUTH LOGIN\r\n", "334").await?;
                expect(&mut stream, &mut buf, &format!("{}\r\n", b64(user)), "334").await?;
                expect(&mut stream, &mut buf, &format!("{}\r\n", b64(password)), "235").await?;
            }
        }
        Ok(Session { stream, buf })
    }

    /// One pipelined transaction; returns the final reply code and the
    /// time from the end of DATA to that reply.
    pub async fn send(&mut self, from: &str, rcpts: &[String], body: &[u8]) -> anyhow::Result<(String, Duration)> {
        let mut head = format!("MAIL FROM:<{from}>\r\n");
        for r in rcpts {
            head.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        head.push_str("DATA\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        for _ in 0..rcpts.len() + 1 {
            let reply = read_reply(&mut self.stream, &mut self.buf).await?;
            if !reply.starts_with('2') {
                // Let DATA's answer come, then reset.
                let _ = read_reply(&mut self.stream, &mut self.buf).await;
                self.stream.write_all(b"RSET\r\n").await?;
                read_reply(&mut self.stream, &mut self.buf).await?;
                return Ok((reply.get(..3).unwrap_or("???").to_string(), Duration::ZERO));
            }
        }
        let data = read_reply(&mut self.stream, &mut self.buf).await?;
        if !data.starts_with("354") {
            return Ok((data.get(..3).unwrap_or("???").to_string(), Duration::ZERO));
        }
        self.stream.write_all(&ferry_smtp::data::dot_stuff(body)).await?;
        let t0 = Instant::now();
        let reply = read_reply(&mut self.stream, &mut self.buf).await?;
        Ok((reply.get(..3).unwrap_or("???").to_string(), t0.elapsed()))
    }

    pub async fn quit(mut self) {
        let _ = self.stream.write_all(b"QUIT\r\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut self.stream, &mut self.buf)).await;
        let _ = self.stream.shutdown().await;
    }
}
