//! SPF at onboarding: does each sender domain's SPF record authorise the
//! relay's outbound addresses? (mail-auth evaluates the record, with the
//! DNS servers of `delivery.resolver`.)

use std::net::{IpAddr, SocketAddr};

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;

pub struct SpfCheck {
    authenticator: MessageAuthenticator,
    helo: String,
}

impl SpfCheck {
    /// `servers` empty: the system's resolvers.
    pub fn new(servers: &[SocketAddr], helo: &str) -> Result<SpfCheck, String> {
        let authenticator = if servers.is_empty() {
            MessageAuthenticator::new_system_conf()
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                    for c in &mut ns.connections {
                        c.port = s.port();
                    }
                    ns
                })
                .collect();
            MessageAuthenticator::new(ResolverConfig::from_name_servers(name_servers), ResolverOpts::default())
        }
        .map_err(|e| format!("delivery.resolver: {e}"))?;
        Ok(SpfCheck {
            authenticator,
            helo: helo.to_string(),
        })
    }

    /// The SPF result (`pass`, `fail`, `softfail`, `neutral`, `none`, …) for
    /// mail from `sender` leaving from `ip`.
    pub async fn result(&self, sender: &str, ip: IpAddr) -> String {
        let params = SpfParameters::verify_mail_from(ip, &self.helo, &self.helo, sender);
        let output = self.authenticator.verify_spf(params).await;
        format!("{:?}", output.result()).to_ascii_lowercase()
    }
}
