//! Where a recipient domain's mail goes: MX records in preference order,
//! the domain's own A/AAAA when it has no MX (RFC 5321 §5.1), and a null MX
//! (RFC 7505) or a non-existent domain as a permanent failure.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;

/// One host to try, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// Why a domain has no hosts to try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Permanent: the domain does not exist or says it accepts no mail.
    #[error("{0}")]
    Permanent(String),
    /// Temporary: DNS failed; try again later.
    #[error("{0}")]
    Temporary(String),
}

impl RouteError {
    pub fn status(&self) -> &'static str {
        match self {
            RouteError::Permanent(_) => "5.1.2",
            RouteError::Temporary(_) => "4.4.3",
        }
    }
}

pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// The given DNS servers, or the system's when the list is empty.
    pub fn new(servers: &[SocketAddr]) -> Result<Resolver, String> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("delivery.resolver: no system resolver configuration: {e}"))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for server in servers {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[server.ip()],
                    server.port(),
                    true,
                ));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
        };
        let mut opts = ResolverOpts::default();
        opts.attempts = 2;
        opts.timeout = std::time::Duration::from_secs(5);
        *builder.options_mut() = opts;
        Ok(Resolver { inner: builder.build() })
    }

    /// The hosts for `domain`, best first.
    pub async fn hosts(&self, domain: &str) -> Result<Vec<Host>, RouteError> {
        if let Some(literal) = address_literal(domain) {
            return Ok(vec![Host {
                name: domain.to_string(),
                addresses: vec![literal],
            }]);
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let names: Vec<(u16, String)> = match self.inner.mx_lookup(fqdn.as_str()).await {
            Ok(mx) => {
                let mut names: Vec<(u16, String)> =
                    mx.iter().map(|r| (r.preference(), r.exchange().to_utf8())).collect();
                if names.iter().any(|(_, name)| name == "." || name.is_empty()) {
                    return Err(RouteError::Permanent(format!(
                        "{domain} does not accept mail (null MX, RFC 7505)"
                    )));
                }
                names.sort();
                names
            }
            Err(e) if e.is_no_records_found() => {
                if response_code(&e) == Some(ResponseCode::NXDomain) {
                    return Err(RouteError::Permanent(format!("{domain}: no such domain")));
                }
                vec![(0, fqdn.clone())]
            }
            Err(e) => return Err(RouteError::Temporary(format!("MX lookup for {domain} failed: {e}"))),
        };
        let mut hosts = Vec::new();
        for (_, name) in names {
            let addresses = self.addresses(&name).await;
            hosts.push(Host {
                name: name.trim_end_matches('.').to_string(),
                addresses,
            });
        }
        if hosts.iter().all(|h| h.addresses.is_empty()) {
            return Err(RouteError::Temporary(format!(
                "no address for any mail host of {domain}"
            )));
        }
        Ok(hosts)
    }
}

impl Resolver {
    /// The addresses of one host name (or the address itself).
    pub async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse() {
            return vec![ip];
        }
        match self
            .inner
            .lookup_ip(format!("{}.", host.trim_end_matches('.')).as_str())
            .await
        {
            Ok(ips) => ips.iter().collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn response_code(e: &hickory_resolver::ResolveError) -> Option<ResponseCode> {
    match e.kind() {
        hickory_resolver::ResolveErrorKind::Proto(p) => match p.kind() {
            hickory_resolver::proto::ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
            _ => None,
        },
        _ => None,
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` as a recipient domain.
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    inner.strip_prefix("IPv6:").unwrap_or(inner).parse().ok()
}
