//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: an authenticated SMTP relay for applications, metered per tenant"
)]
pub struct Cli {
    /// TOML configuration file; the environment (FERRY__SECTION__KEY) overrides it.
    #[arg(long, short, global = true, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// A running relay's admin endpoint to run this command (default: the one
    /// `admin.listen` names, when the store is in use by a running relay).
    #[arg(long, global = true, env = "FERRY_ADMIN_URL")]
    pub admin_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve(ServeArgs),
    /// Validate the configuration and print it, secrets masked.
    CheckConfig,
    /// Onboard and inspect tenants (departments, groups).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Onboard and manage applications (one set of SMTP credentials each).
    #[command(subcommand)]
    App(AppCommand),
    /// Inspect and manage the delivery queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Usage, charge-back and alert reports for finance.
    #[command(subcommand)]
    Report(ReportCommand),
    /// DKIM keys: generate, list, rotate.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// Admin API tokens: add (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Each tenant's suppression list: recipients its mail is no longer sent to.
    #[command(subcommand)]
    Suppression(SuppressionCommand),
    /// Each tenant's log of what happened to each recipient of each message.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Applications that stopped behaving like themselves: list, show, resolve.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Mail held under an incident: list, show, release, discard.
    #[command(subcommand)]
    Held(HeldCommand),
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Incidents, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only open ones.
        #[arg(long)]
        open: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// One incident with its evidence.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Open an incident by hand on a leak learnt of elsewhere: the
    /// tenant's policy applies as if the watch had opened it.
    Open {
        app: String,
        /// Why, kept in its evidence.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// An application's figures by hour, as its baseline reads them; or
    /// import them (JSON lines, one hour each: hour, messages, recipients,
    /// domains, spam, sender_refusals, bounced, complained) so an
    /// application moved to Ferry is judged by its past from day one.
    History {
        app: String,
        /// The last this many days.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// A file of hours to keep (replacing those hours' figures).
        #[arg(long)]
        import: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Close an incident: its application's new mail is no longer held
    /// (what is held stays until released or discarded).
    Resolve {
        id: String,
        #[arg(long, value_enum)]
        verdict: VerdictArg,
        /// Why, kept with the incident.
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    /// Not a breach: its hours count in the baseline.
    FalseAlarm,
    Compromised,
}

#[derive(Debug, Subcommand)]
pub enum HeldCommand {
    /// Held messages, oldest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        app: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// A held message's envelope and content, to judge it.
    Show { id: String },
    /// Deliver held mail as normal (counted as sent now): one message by
    /// id, or all of a tenant's (or one application's) with --tenant.
    Release(HeldSelection),
    /// Remove held mail, never delivered: one message, or all with --tenant.
    Discard(HeldSelection),
}

#[derive(Debug, Args)]
pub struct HeldSelection {
    /// The message's queue id.
    #[arg(required_unless_present = "tenant", conflicts_with = "tenant")]
    pub id: Option<String>,
    /// Every held message of this tenant…
    #[arg(long)]
    pub tenant: Option<String>,
    /// …or only of this application.
    #[arg(long, requires = "tenant")]
    pub app: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionCommand {
    /// The tenant's entries in address order, lapsed ones included.
    List {
        #[arg(long)]
        tenant: String,
        /// Only addresses containing this text.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Stop sending the tenant's mail to a recipient: a manual entry,
    /// replacing any other for the same address.
    Add {
        #[arg(long)]
        tenant: String,
        /// The address (kept in lower case).
        recipient: String,
        /// Lapse after this many days; default: never.
        #[arg(long)]
        expires_days: Option<u32>,
        /// Why, kept in the entry's source.
        #[arg(long)]
        note: Option<String>,
    },
    /// Send the tenant's mail to a recipient again; fails if it was not on the list.
    Remove {
        #[arg(long)]
        tenant: String,
        recipient: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The tenant's events, oldest first, one line per recipient, then
    /// `next: <cursor>` to continue from with --after.
    List {
        #[arg(long)]
        tenant: String,
        /// Only this application's events.
        #[arg(long)]
        app: Option<String>,
        /// Only events after this cursor (an earlier list's `next:`);
        /// default: from the oldest kept.
        #[arg(long)]
        after: Option<String>,
        /// Stop once this many events are read (the recipients of one state
        /// change are never split, so the last may bring a few more).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a token and prints it once.
    Add(NewToken),
    /// Stores a token made elsewhere (a Kubernetes Secret's), read from an
    /// environment variable so it never shows in a process list. Importing
    /// the same token again changes nothing; a revoked one stays revoked.
    Import {
        #[command(flatten)]
        token: NewToken,
        /// The variable holding the token (`ferry_<12 hex>_<32 to 64 letters and digits>`).
        #[arg(long)]
        from_env: String,
    },
    /// Every token, without its secret.
    List,
    /// Revokes a token by its id: it stops working at once.
    Revoke { id: String },
}

/// What a token is: its name, role and, for a tenant-admin, tenant.
#[derive(Debug, Args)]
pub struct NewToken {
    /// Who or what it is for.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub role: TokenRole,
    /// The tenant of a tenant-admin token.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// Everything.
    Admin,
    /// Reports and alerts, read-only.
    Finance,
    /// One tenant's applications and usage.
    TenantAdmin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    Rsa,
    Ed25519,
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Generate and store a key, and print the DNS TXT record to publish.
    /// The first key of an algorithm for a domain is active at once; later
    /// ones wait for `dkim activate` (publish the record first).
    Generate {
        domain: String,
        #[arg(long)]
        selector: String,
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Rsa)]
        algorithm: KeyAlgorithm,
    },
    /// Stores the PEM private keys of a directory, each named
    /// `<selector>._domainkey.<domain>.pem` (RSA or Ed25519, PKCS#8 or
    /// PKCS#1): keys already published elsewhere. A key already stored is
    /// left as it is; another key under the same selector is an error.
    Import { dir: std::path::PathBuf },
    /// Keys with their selectors, algorithms and state.
    List {
        /// Also print each key's DNS record.
        #[arg(long)]
        records: bool,
    },
    /// Sign with this selector from now on; the domain's other key of the
    /// same algorithm stops signing (keep its record published a while).
    Activate {
        domain: String,
        #[arg(long)]
        selector: String,
    },
    /// Stop signing with this selector.
    Deactivate {
        domain: String,
        #[arg(long)]
        selector: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    #[default]
    Csv,
    Json,
    /// FinOps FOCUS cost-and-usage rows.
    Focus,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Usage and charge-back per tenant and application for a period.
    Usage(ReportArgs),
    /// Per application: relayed, refused by reason, delivered, deferred,
    /// bounced (csv or json).
    Outcomes(ReportArgs),
    /// Alerts raised in a period, with their delivery state.
    Alerts {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// The period, tenant and format of a report.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// First day (YYYY-MM-DD, in the contract's time zone) or an instant
    /// (2026-11-24T05:00:00Z); default: the contract year's start.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, included, or an instant, excluded; default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this tenant's rows (usage: the charges still come from the whole organisation).
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: ReportFormat,
}

/// Hard limits, in the contract's unit.
#[derive(Debug, Args)]
pub struct CapArgs {
    #[arg(long)]
    pub per_minute: Option<u64>,
    #[arg(long)]
    pub per_hour: Option<u64>,
    #[arg(long)]
    pub per_year: Option<u64>,
    /// When the yearly cap is used up, refuse (550) instead of deferring (451).
    #[arg(long)]
    pub reject_when_year_exhausted: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Messages in the queue, in due order.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// One message: envelope, per-recipient state and every delivery attempt.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Make a message due now.
    Retry { id: String },
    /// Remove a message without delivering it (no bounce).
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct BouncesArgs {
    pub name: String,
    /// A subdomain of one of the tenant's domains whose MX is Ferry's
    /// inbound listener (`bounces.hr.example.edu`).
    #[arg(long, conflicts_with = "no_domain")]
    pub domain: Option<String>,
    /// Stop using a bounce domain: the applications' own envelope-From again.
    #[arg(long)]
    pub no_domain: bool,
    /// Forward each report taken in to the application's own envelope-From.
    #[arg(long)]
    pub forward: bool,
    /// Accept and drop mail for suppressed recipients (a `suppressed`
    /// event) instead of refusing it at RCPT.
    #[arg(long)]
    pub drop_suppressed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Sessions and delivery in one process (the single-machine default).
    All,
    /// Listeners and sessions only: accept, check and spool.
    Ingress,
    /// Delivery workers only: drain the shared queue.
    Delivery,
    /// The inbound listener only (`listen.inbound`): take in the bounces
    /// and complaints that come back to tenants' bounce domains.
    Inbound,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which parts of the relay this process runs.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Tell its owners and the admins.
    Alert,
    /// Also hold its mail until a person releases or discards it.
    Hold,
    /// Also refuse its sign-ins until an admin enables it again.
    Suspend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Add a tenant with the domains its applications may send from.
    Add {
        name: String,
        /// A sender domain (repeat for several).
        #[arg(long = "domain", required = true)]
        domains: Vec<String>,
        /// Allow only subdomains of each domain, never the domain itself.
        #[arg(long)]
        subdomains_only: bool,
        /// Who hears about this tenant's usage.
        #[arg(long)]
        contact: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List tenants.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one tenant and its applications.
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Choose where a tenant's mail goes.
    Route(Box<RouteArgs>),
    /// Give a tenant a bounce domain (Ferry's own return path), and choose
    /// what happens to reports and to mail for suppressed recipients; the
    /// domain's MX and SPF are checked.
    Bounces(BouncesArgs),
    /// Check a tenant's bounce domain: an MX (pointing at the inbound
    /// listener) and an SPF record that authorises the relay.
    CheckBounces { name: String },
    /// What happens when one of its applications raises an incident:
    /// alert, hold (the default) or suspend.
    IncidentPolicy {
        name: String,
        #[arg(value_enum)]
        policy: PolicyArg,
    },
    /// Set the tenant's share of the contract (in the contract's unit).
    Allocate {
        name: String,
        #[arg(long)]
        hourly: Option<u64>,
        #[arg(long)]
        yearly: Option<u64>,
    },
    /// Set hard limits on the whole tenant (replaces the previous ones).
    Cap {
        name: String,
        #[command(flatten)]
        caps: CapArgs,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct RouteArgs {
    pub name: String,
    /// Follow delivery.default_route.
    #[arg(long, group = "target")]
    pub default: bool,
    /// MX lookup per recipient domain.
    #[arg(long, group = "target")]
    pub mx: bool,
    /// Write files instead of delivering.
    #[arg(long, group = "target")]
    pub capture: bool,
    /// Everything through this relay host (host:port).
    #[arg(long, group = "target")]
    pub smarthost: Option<String>,
    /// With --smarthost: refuse to send without verified TLS.
    #[arg(long, requires = "smarthost")]
    pub tls_required: bool,
    /// With --smarthost: authenticate as this user (password from --auth-password-file).
    #[arg(long, requires_all = ["smarthost", "auth_password_file"])]
    pub auth_user: Option<String>,
    #[arg(long, requires = "auth_user")]
    pub auth_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AppAddArgs {
    /// The SMTP username (letters, digits, - _ .; not an e-mail address).
    pub username: String,
    #[arg(long)]
    pub tenant: String,
    /// An authorised envelope-From address (repeat, at most 10).
    #[arg(long = "from", required = true)]
    pub from: Vec<String>,
    /// An authorised header-From address (repeat); default: the --from list.
    #[arg(long = "header-from")]
    pub header_from: Vec<String>,
    /// A source network the application connects from, e.g. 10.1.2.0/24 (repeat).
    #[arg(long = "allow", required = true)]
    pub allow: Vec<String>,
    /// Largest message in bytes.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_message_bytes: usize,
    #[arg(long, default_value_t = 100)]
    pub max_messages_per_session: u32,
    #[arg(long, default_value_t = 50)]
    pub max_recipients: usize,
    /// Last day of the relay permission (YYYY-MM-DD); default: one year from today.
    #[arg(long)]
    pub expires: Option<String>,
    /// Let this application send bulk mail without one-click unsubscribe headers.
    #[arg(long)]
    pub no_bulk_rules: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Add an application; its password is generated and shown once.
    Add(Box<AppAddArgs>),
    /// List applications.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one application (never its password).
    Show {
        username: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Check that each sender domain's SPF record authorises the relay's
    /// outbound addresses (spf.relay_addresses).
    CheckSpf { username: String },
    /// Stop an application from authenticating.
    Disable { username: String },
    /// Let a disabled application authenticate again.
    Enable { username: String },
    /// Set hard limits on one application (replaces the previous ones).
    Cap {
        username: String,
        #[command(flatten)]
        caps: CapArgs,
    },
    /// Generate a new password, shown once; the old one stops working.
    RotatePassword {
        username: String,
        /// Keep the old password working until this instant (RFC 3339, e.g.
        /// 2026-12-02T12:00:00Z) so the application can roll over with no
        /// failed sends; without it the old password stops at once.
        #[arg(long)]
        old_valid_until: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}
