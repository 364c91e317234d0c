//! A raw SMTP client for byte-exact dialogues: what real clients will not
//! send (bare LFs, pipelined STARTTLS injection) is sent exactly as written.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use ferry_smtp::data::dot_stuff;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Gone,
}

pub struct Smtp {
    conn: Conn,
    buf: Vec<u8>,
}

const READ_TIMEOUT: Duration = Duration::from_secs(15);

fn tls_config(ca_der: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).expect("test CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl Smtp {
    /// Plaintext connection; the greeting is read and returned with the client.
    pub fn connect(addr: SocketAddr) -> (Smtp, String) {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        let mut smtp = Smtp {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
        };
        let greeting = smtp.read_reply();
        (smtp, greeting)
    }

    /// Plaintext connection from a chosen loopback `source` address (as a
    /// client behind a load balancer is seen); the first reply, or "" if
    /// the server closed without one.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> (Smtp, String) {
        let mut smtp = Smtp::raw_from(addr, source);
        let greeting = smtp.read_reply();
        (smtp, greeting)
    }

    /// A connection from `source` with nothing read: the test speaks first
    /// (a PROXY header, say).
    pub fn raw_from(addr: SocketAddr, source: std::net::IpAddr) -> Smtp {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect(&addr.into()).expect("connect");
        let tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        Smtp {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
        }
    }

    /// Implicit TLS (RFC 8314); returns the greeting too.
    pub fn connect_tls(addr: SocketAddr, ca_der: &[u8]) -> (Smtp, String) {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        let mut smtp = Smtp {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
        };
        smtp.upgrade(ca_der);
        let greeting = smtp.read_reply();
        (smtp, greeting)
    }

    /// Submission style: greeting, EHLO, STARTTLS, handshake, EHLO again.
    pub fn submission(addr: SocketAddr, ca_der: &[u8]) -> Smtp {
        Smtp::submission_from(addr, [127, 0, 0, 1].into(), ca_der)
    }

    /// [`Smtp::submission`] from a chosen loopback `source` address.
    pub fn submission_from(addr: SocketAddr, source: std::net::IpAddr, ca_der: &[u8]) -> Smtp {
        let (mut smtp, greeting) = Smtp::connect_from(addr, source);
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert!(smtp.cmd("EHLO client.test").starts_with("250"));
        let reply = smtp.cmd("STARTTLS");
        assert!(reply.starts_with("220 2.0.0"), "{reply}");
        smtp.upgrade(ca_der);
        let ehlo = smtp.cmd("EHLO client.test");
        assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
        smtp
    }

    /// Starts TLS on the plaintext connection, dropping any buffered plaintext.
    pub fn upgrade(&mut self, ca_der: &[u8]) {
        self.try_upgrade(ca_der).expect("TLS handshake");
    }

    /// Implicit TLS, or the handshake's error (a certificate that does not
    /// verify under `ca_der`, say).
    pub fn try_connect_tls(addr: SocketAddr, ca_der: &[u8]) -> std::io::Result<(Smtp, String)> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut smtp = Smtp {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
        };
        smtp.try_upgrade(ca_der)?;
        let greeting = smtp.read_reply();
        Ok((smtp, greeting))
    }

    fn try_upgrade(&mut self, ca_der: &[u8]) -> std::io::Result<()> {
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            panic!("not plaintext")
        };
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(tls_config(ca_der), name).expect("client connection");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.buf.clear();
        self.conn = Conn::Tls(Box::new(tls));
        Ok(())
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let result = match &mut self.conn {
            Conn::Plain(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Conn::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Conn::Gone => panic!("connection gone"),
        };
        result.expect("send");
    }

    fn read_some(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = match &mut self.conn {
            Conn::Plain(s) => s.read(&mut chunk),
            Conn::Tls(s) => s.read(&mut chunk),
            Conn::Gone => Ok(0),
        };
        let n = n.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one complete (possibly multi-line) reply; empty at end of stream.
    pub fn read_reply(&mut self) -> String {
        loop {
            if let Some(end) = complete_reply(&self.buf) {
                let reply: Vec<u8> = self.buf.drain(..end).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            if self.read_some() == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            }
        }
    }

    /// True when the server has closed the connection (after any pending reply).
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.read_some() == 0
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    pub fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.cmd(&format!("AUTH PLAIN {token}"))
    }

    /// MAIL, RCPT, DATA and the content (dot-stuffed here); returns the final reply.
    pub fn send_message(&mut self, from: &str, to: &[&str], content: &[u8]) -> String {
        let reply = self.cmd(&format!("MAIL FROM:<{from}>"));
        if !reply.starts_with("250") {
            return reply;
        }
        for rcpt in to {
            let reply = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            if !reply.starts_with("250") {
                return reply;
            }
        }
        let reply = self.cmd("DATA");
        if !reply.starts_with("354") {
            return reply;
        }
        self.send(&dot_stuff(content));
        self.read_reply()
    }
}

/// The end of the first complete reply in `buf`, if there is one.
fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + lf + 1];
        start += lf + 1;
        if line.len() < 4 || line[3] != b'-' {
            return Some(start);
        }
    }
    None
}
