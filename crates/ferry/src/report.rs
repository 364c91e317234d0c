//! `ferry report`: usage and charge-back for finance (CSV, JSON, FinOps
//! FOCUS 1.0), and the alert log. The reports are `ferry_admin::report`'s,
//! the same the admin API serves.

use crate::console::{say, say_raw};
use ferry_admin::outcomes;
use ferry_admin::report::{self, Format, iso};
use ferry_core::config::Config;
use ferry_core::{Clock, SystemClock};
use ferry_store::Store;
use serde_json::json;

use crate::cli::{Output, ReportCommand, ReportFormat};

pub async fn run(store: &dyn Store, config: &Config, command: ReportCommand) -> anyhow::Result<()> {
    let terms = config.contract.terms()?;
    let period = |from: Option<&str>, to: Option<&str>| {
        report::period(&terms, from, to, SystemClock.now_ms())
            .map_err(|e| anyhow::anyhow!("--{} {}", e.field, e.message))
    };
    match command {
        ReportCommand::Usage(asked) => {
            let (from_ms, to_ms) = period(asked.from.as_deref(), asked.to.as_deref())?;
            let usage = report::usage_report(store, &terms, from_ms, to_ms).await?;
            let alerts = store.alerts(from_ms, to_ms).await?;
            let format = match asked.format {
                ReportFormat::Json => Format::Json,
                ReportFormat::Csv => Format::Csv,
                ReportFormat::Focus => Format::Focus,
            };
            let view = asked.tenant.as_deref().map_or(report::View::All, report::View::Tenant);
            say_raw!(
                "{}",
                report::render(&usage, &alerts, view, format, &config.server.hostname)
            );
        }
        ReportCommand::Outcomes(asked) => {
            let (from_ms, to_ms) = period(asked.from.as_deref(), asked.to.as_deref())?;
            let rows = outcomes::report(store, from_ms, to_ms, asked.tenant.as_deref()).await?;
            match asked.format {
                ReportFormat::Json => say_raw!("{}", outcomes::json(&rows, from_ms, to_ms)),
                ReportFormat::Csv => say_raw!("{}", outcomes::csv(&rows, from_ms, to_ms)),
                ReportFormat::Focus => anyhow::bail!("--format: the outcome report is csv or json"),
            }
        }
        ReportCommand::Alerts { from, to, output } => {
            let (from_ms, to_ms) = period(from.as_deref(), to.as_deref())?;
            let alerts = store.alerts(from_ms, to_ms).await?;
            match output {
                Output::Json => say!("{}", json!(alerts)),
                Output::Text => {
                    for a in &alerts {
                        let state = a.delivered_ms.map_or_else(
                            || format!("pending ({} tries)", a.attempts),
                            |ms| format!("delivered {}", iso(ms)),
                        );
                        let drivers: Vec<String> = a
                            .drivers
                            .iter()
                            .map(|d| format!("{} {:.1} %", d.tenant, d.share * 100.0))
                            .collect();
                        say!(
                            "{}  {}  {}: {} ({} of {})  drivers: {}  {state}",
                            iso(a.at_ms),
                            a.id,
                            a.scope,
                            a.threshold,
                            a.value,
                            a.limit,
                            drivers.join(", ")
                        );
                    }
                    say!("{} alert(s)", alerts.len());
                }
            }
        }
    }
    Ok(())
}
