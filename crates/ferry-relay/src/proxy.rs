//! PROXY protocol v1 and v2 (HAProxy's specification): behind a load
//! balancer every connection comes from the balancer, and the header it
//! sends first names the client. Only connections from the configured
//! balancers are read for one; it is required from them, so a client can
//! never name its own address by reaching a node directly.
//!
//! The header is read exactly, never a byte past it: on an implicit-TLS
//! port the client's hello follows at once, and belongs to the TLS layer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// v2's twelve-byte signature; v1 starts with `PROXY `.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Addresses plus TLVs: HAProxy's SSL and unique-id TLVs fit well inside.
const V2_MAX_PAYLOAD: usize = 4096;

/// The balancers allowed to speak for their clients.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    /// Whether a connection from `ip` must start with a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before the PROXY header ended: {0}")]
    Closed(#[from] std::io::Error),
    #[error("not a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Reads the header and returns the client's address. A `LOCAL` (v2) or
/// `UNKNOWN` (v1) header, as balancers send for their health checks,
/// names nobody: the connection keeps the balancer's own address.
pub async fn client_address(tcp: &mut TcpStream, peer: SocketAddr, wait: Duration) -> Result<SocketAddr, ProxyError> {
    match tokio::time::timeout(wait, read_header(tcp)).await {
        Ok(Ok(source)) => Ok(source.unwrap_or(peer)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProxyError::Timeout(wait)),
    }
}

/// Reads exactly the header, as [`parse_header`] asks for it.
async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    let mut header = Vec::with_capacity(V1_MAX);
    loop {
        match parse_header(&header)? {
            HeaderRead::Complete(source) => return Ok(source),
            HeaderRead::Need(more) => {
                let start = header.len();
                header.resize(start + more, 0);
                tcp.read_exact(&mut header[start..]).await?;
            }
        }
    }
}

/// How far the bytes read so far go towards a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead {
    /// Read exactly this many more bytes (never past the header) and ask again.
    Need(usize),
    /// The whole header: the client's address, or `None` for a `LOCAL` (v2)
    /// or `UNKNOWN` (v1) header, which names nobody.
    Complete(Option<SocketAddr>),
}

/// Judges `header`, the bytes read so far from a balancer's connection,
/// each time exactly as many as the last answer asked for (from none):
/// how many more to read, the client's address, or why this is no header.
/// v1 is read byte by byte to its LF, at most 107 bytes; v2 by its length
/// field, at most 4096 bytes of payload.
pub fn parse_header(header: &[u8]) -> Result<HeaderRead, ProxyError> {
    if header.len() < 6 {
        Ok(HeaderRead::Need(6 - header.len()))
    } else if header.starts_with(b"PROXY ") {
        parse_v1(header)
    } else if header[..6] == V2_SIGNATURE[..6] {
        parse_v2(header)
    } else {
        Err(ProxyError::Missing)
    }
}

fn parse_v1(header: &[u8]) -> Result<HeaderRead, ProxyError> {
    if header.last() != Some(&b'\n') {
        if header.len() >= V1_MAX {
            return Err(ProxyError::Malformed("v1 header longer than 107 bytes".into()));
        }
        return Ok(HeaderRead::Need(1));
    }
    let parsed = v1::Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    Ok(HeaderRead::Complete(match parsed.addresses {
        v1::Addresses::Unknown => None,
        v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
    }))
}

fn parse_v2(header: &[u8]) -> Result<HeaderRead, ProxyError> {
    if header.len() < 16 {
        return Ok(HeaderRead::Need(16 - header.len()));
    }
    if header[..12] != V2_SIGNATURE[..] {
        return Err(ProxyError::Malformed("v2 signature does not match".into()));
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if length > V2_MAX_PAYLOAD {
        return Err(ProxyError::Malformed(format!("v2 payload of {length} bytes")));
    }
    if header.len() < 16 + length {
        return Ok(HeaderRead::Need(16 + length - header.len()));
    }
    let parsed = v2::Header::try_from(&header[..16 + length]).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if parsed.command == v2::Command::Local {
        return Ok(HeaderRead::Complete(None));
    }
    Ok(HeaderRead::Complete(match parsed.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v2::Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }))
}

/// An IPv4 client seen through a dual-stack socket is still that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Sends `bytes`, then `after`, over a real socket and reads the header.
    async fn read(bytes: &[u8]) -> (Result<SocketAddr, ProxyError>, Vec<u8>) {
        read_then(bytes, b"EHLO x\r\n").await
    }

    async fn read_then(bytes: &[u8], after: &[u8]) -> (Result<SocketAddr, ProxyError>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        client.write_all(bytes).await.unwrap();
        client.write_all(after).await.unwrap();
        client.shutdown().await.unwrap();
        let result = client_address(&mut server, peer, Duration::from_secs(5)).await;
        let mut rest = Vec::new();
        let _ = server.read_to_end(&mut rest).await;
        (result, rest)
    }

    fn v2_ipv4(command: u8, source: [u8; 4], port: u16, tlv: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(0x11);
        h.extend_from_slice(&(12 + tlv.len() as u16).to_be_bytes());
        h.extend_from_slice(&source);
        h.extend_from_slice(&[127, 0, 0, 1]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&25u16.to_be_bytes());
        h.extend_from_slice(tlv);
        h
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_the_rest_unread() {
        let (addr, rest) = read(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n").await;
        assert_eq!(addr.unwrap(), "192.0.2.7:40000".parse().unwrap());
        assert_eq!(rest, b"EHLO x\r\n");
        let (addr, _) = read(b"PROXY TCP6 2001:db8::1 ::1 40000 25\r\n").await;
        assert_eq!(addr.unwrap(), "[2001:db8::1]:40000".parse().unwrap());
    }

    #[tokio::test]
    async fn v2_names_the_client_with_or_without_tlvs() {
        let (addr, rest) = read(&v2_ipv4(1, [198, 51, 100, 9], 5555, &[0x04, 0, 1, 0])).await;
        assert_eq!(addr.unwrap(), "198.51.100.9:5555".parse().unwrap());
        assert_eq!(rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn health_checks_keep_the_balancers_address() {
        let (addr, _) = read(&v2_ipv4(0, [198, 51, 100, 9], 5555, &[])).await;
        assert_eq!(addr.unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
        let (addr, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(addr.unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        assert!(matches!(read(b"EHLO client\r\n").await.0, Err(ProxyError::Missing)));
        assert!(matches!(
            read(b"PROXY TCP4 not-an-address 127.0.0.1 1 25\r\n").await.0,
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(read(&[b'X'; 200]).await.0, Err(ProxyError::Missing)));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend_from_slice(&[b'1'; 200]);
        assert!(matches!(read(&long).await.0, Err(ProxyError::Malformed(_))));
        let mut truncated = v2_ipv4(1, [198, 51, 100, 9], 5555, &[]);
        truncated.truncate(20);
        assert!(matches!(read_then(&truncated, b"").await.0, Err(ProxyError::Closed(_))));
        let mut bad_family = v2_ipv4(1, [198, 51, 100, 9], 5555, &[]);
        bad_family[13] = 0x77;
        assert!(matches!(read(&bad_family).await.0, Err(ProxyError::Malformed(_))));
    }

    #[tokio::test]
    async fn a_silent_balancer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        let result = client_address(&mut server, peer, Duration::from_millis(50)).await;
        assert!(matches!(result, Err(ProxyError::Timeout(_))));
    }

    /// Feeds `bytes` to [`parse_header`] as the reader does; the answer
    /// and how many bytes it took.
    fn parse_all(bytes: &[u8]) -> (Result<HeaderRead, ProxyError>, usize) {
        let mut used = 0;
        loop {
            match parse_header(&bytes[..used]) {
                Ok(HeaderRead::Need(more)) if used + more <= bytes.len() => used += more,
                other => return (other, used),
            }
        }
    }

    #[test]
    fn the_parse_takes_exactly_the_header() {
        let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n";
        let v2 = v2_ipv4(1, [198, 51, 100, 9], 5555, &[0x04, 0, 1, 0]);
        for (header, client) in [(&v1[..], "192.0.2.7:40000"), (&v2[..], "198.51.100.9:5555")] {
            let mut wire = header.to_vec();
            wire.extend_from_slice(b"EHLO x\r\n");
            let (result, used) = parse_all(&wire);
            assert_eq!(result.unwrap(), HeaderRead::Complete(Some(client.parse().unwrap())));
            assert_eq!(used, header.len());
        }
        assert_eq!(parse_header(b"").unwrap(), HeaderRead::Need(6));
        assert_eq!(parse_header(b"PROXY ").unwrap(), HeaderRead::Need(1));
        assert_eq!(parse_header(&v2[..6]).unwrap(), HeaderRead::Need(10));
        assert_eq!(parse_header(&v2[..16]).unwrap(), HeaderRead::Need(16));
        assert!(matches!(parse_header(b"EHLO x"), Err(ProxyError::Missing)));
    }

    #[test]
    fn trust_is_by_network_and_sees_through_mapped_addresses() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(trusted.trusts("10.1.2.3".parse().unwrap()));
        assert!(trusted.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!trusted.trusts("11.0.0.1".parse().unwrap()));
        assert!(!TrustedProxies::default().trusts("10.1.2.3".parse().unwrap()));
    }
}
