//! Usage counting: the scopes counted (organisation, tenant, application),
//! what is counted, and the hour buckets it is counted in.

use serde::{Deserialize, Serialize};

use crate::contract::Unit;

pub const HOUR_MS: u64 = 3_600_000;
pub const MINUTE_MS: u64 = 60_000;

/// Messages, recipients and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub messages: u64,
    pub recipients: u64,
    pub bytes: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.messages += other.messages;
        self.recipients += other.recipients;
        self.bytes += other.bytes;
    }

    pub fn units(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Messages => self.messages,
            Unit::Recipients => self.recipients,
        }
    }
}

/// Who a count belongs to. Its key sorts tenants' applications under them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    Org,
    Tenant(String),
    App { tenant: String, app: String },
}

impl Scope {
    pub fn key(&self) -> String {
        match self {
            Scope::Org => "org".into(),
            Scope::Tenant(t) => format!("t:{t}"),
            Scope::App { tenant, app } => format!("a:{tenant}/{app}"),
        }
    }

    pub fn parse(key: &str) -> Option<Scope> {
        if key == "org" {
            return Some(Scope::Org);
        }
        if let Some(t) = key.strip_prefix("t:") {
            return Some(Scope::Tenant(t.into()));
        }
        let (tenant, app) = key.strip_prefix("a:")?.split_once('/')?;
        Some(Scope::App {
            tenant: tenant.into(),
            app: app.into(),
        })
    }

    /// The three scopes one message counts in.
    pub fn of_message(tenant: &str, app: &str) -> [Scope; 3] {
        [
            Scope::Org,
            Scope::Tenant(tenant.into()),
            Scope::App {
                tenant: tenant.into(),
                app: app.into(),
            },
        ]
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Org => f.write_str("organisation"),
            Scope::Tenant(t) => write!(f, "tenant {t}"),
            Scope::App { tenant, app } => write!(f, "application {tenant}/{app}"),
        }
    }
}

/// Usage of one scope in one UTC hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourUsage {
    /// Hours since the Unix epoch.
    pub hour: u64,
    pub scope: Scope,
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_round_trip() {
        for s in [
            Scope::Org,
            Scope::Tenant("hr".into()),
            Scope::App {
                tenant: "hr".into(),
                app: "payroll".into(),
            },
        ] {
            assert_eq!(Scope::parse(&s.key()), Some(s));
        }
    }
}
