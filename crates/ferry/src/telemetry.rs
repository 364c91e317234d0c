//! Logs and traces: the `tracing` subscriber every command logs through
//! and, when serving with an OTLP endpoint configured, the OpenTelemetry
//! pipeline that exports the relay's spans (see `ferry_relay::trace`) over
//! OTLP/HTTP in protobuf, batched on a thread of its own.

use std::collections::HashMap;

use ferry_core::config::{Config, LogFormat, Telemetry};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The standard variables that turn the export on without a `telemetry.*` key.
const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Where spans go, if anywhere: the key, else the standard variables
/// (which the exporter reads itself); nothing when `OTEL_SDK_DISABLED=true`.
#[derive(Debug, Clone, PartialEq)]
enum Export {
    Off,
    /// `telemetry.otlp_endpoint`, with the traces path added.
    Key(String),
    FromEnvironment,
}

fn export(telemetry: &Telemetry, env: &HashMap<String, String>) -> Export {
    if env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Export::Off;
    }
    if let Some(base) = &telemetry.otlp_endpoint {
        let base = base.trim_end_matches('/');
        return Export::Key(if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        });
    }
    if ENDPOINT_VARS.iter().any(|v| env.get(*v).is_some_and(|s| !s.is_empty())) {
        return Export::FromEnvironment;
    }
    Export::Off
}

/// `service.name`: the key, else `OTEL_SERVICE_NAME`, else "ferry".
fn service_name(telemetry: &Telemetry, env: &HashMap<String, String>) -> String {
    telemetry
        .service_name
        .clone()
        .or_else(|| env.get("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()).cloned())
        .unwrap_or_else(|| "ferry".into())
}

fn provider(config: &Config, export: Export, env: &HashMap<String, String>) -> Result<SdkTracerProvider, String> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Export::Key(url) = export {
        builder = builder.with_endpoint(url);
    }
    let exporter = builder
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT): {e}"))?;
    let resource = Resource::builder()
        .with_service_name(service_name(&config.telemetry, env))
        .with_attribute(opentelemetry::KeyValue::new(
            "host.name",
            config.server.hostname.clone(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.telemetry.sample_ratio,
        ))))
        .with_batch_exporter(exporter)
        .build())
}

/// Installs the subscriber. Returns the trace pipeline when spans are
/// exported (only for `serve`): shut it down before exiting, so the last
/// spans are sent.
pub fn init(
    config: &Config,
    serving: bool,
    env: &HashMap<String, String>,
) -> Result<Option<SdkTracerProvider>, String> {
    let export = if serving {
        export(&config.telemetry, env)
    } else {
        Export::Off
    };
    let provider = match export {
        Export::Off => None,
        export => Some(provider(config, export, env)?),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Onboarding commands print their results; only warnings go to the log there.
    let mut filter = if serving {
        filter
    } else {
        tracing_subscriber::EnvFilter::new("warn")
    };
    let mut directives = vec![
        // The spans exist only when exported: off, they are never built.
        if provider.is_some() {
            "ferry::trace=info"
        } else {
            "ferry::trace=off"
        },
    ];
    if !env.contains_key("RUST_LOG") {
        // ractor opens a span per actor at info: they add nothing to Ferry's
        // events and cost on every poll, so they are off unless asked for.
        // The exporter's own chatter is kept to its warnings.
        directives.extend([
            "ractor=warn",
            "opentelemetry=warn",
            "opentelemetry_sdk=warn",
            "opentelemetry_otlp=warn",
        ]);
    }
    for directive in directives {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let otel = provider.as_ref().map(|p| {
        // The spans' own fields say what they are; where in the source,
        // on which thread and how long idle would only add bytes (and,
        // for the timings, two clock reads per poll).
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ferry"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // With traces on, each JSON line lists the spans it happened in, with
    // their queue_id and the root's trace_id.
    let fmt = match config.log.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(provider.is_some())
            .boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    tracing_subscriber::registry().with(filter).with(otel).with(fmt).init();
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_key_wins_over_the_standard_variables_and_both_can_be_disabled() {
        let mut t = Telemetry::default();
        assert_eq!(export(&t, &env(&[])), Export::Off, "off by default");
        let standard = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        assert_eq!(export(&t, &standard), Export::FromEnvironment);
        t.otlp_endpoint = Some("http://otel.internal:4318/".into());
        assert_eq!(
            export(&t, &standard),
            Export::Key("http://otel.internal:4318/v1/traces".into())
        );
        let disabled = env(&[("OTEL_SDK_DISABLED", "true")]);
        assert_eq!(export(&t, &disabled), Export::Off);
        assert_eq!(service_name(&t, &env(&[("OTEL_SERVICE_NAME", "relay-a")])), "relay-a");
        t.service_name = Some("ferry-eu".into());
        assert_eq!(service_name(&t, &env(&[("OTEL_SERVICE_NAME", "relay-a")])), "ferry-eu");
        assert_eq!(service_name(&Telemetry::default(), &env(&[])), "ferry");
    }
}
