//! Loading the configuration: defaults ← TOML file ← environment
//! (`FERRY__SECTION__KEY`), then validation. Every error names the key and
//! where the value came from.

use std::collections::HashMap;
use std::path::Path;

use ferry_core::config::Config;

/// A configuration that cannot be used. The message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

/// Loads from an optional file and the given environment (the process
/// environment in production, a map in tests).
pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError(format!("--config {}: no such file", path.display())));
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml).required(true));
    }
    let ferry_env: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("FERRY__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let environment = config::Environment::with_prefix("FERRY")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("delivery.resolver")
        .with_list_parse_key("delivery.extra_ca_files")
        .with_list_parse_key("delivery.tls_required_domains")
        .with_list_parse_key("alerts.yearly_percent")
        .with_list_parse_key("spf.relay_addresses")
        .with_list_parse_key("alerts.forecast_percent")
        .with_list_parse_key("listen.proxy_protocol_from")
        .with_list_parse_key("store.redis.sentinels")
        .source(Some(ferry_env.clone()));
    let raw = builder
        .add_source(environment)
        .build()
        .map_err(|e| ConfigError(e.to_string()))?;
    let config: Config = serde_path_to_error::deserialize(raw).map_err(|e| {
        let key = e.path().to_string();
        let origin = env_origin(&key, &ferry_env).unwrap_or_else(|| origin_hint(file));
        ConfigError(format!("{key}: {}{origin}", e.inner()))
    })?;
    config.validate().map_err(|e| {
        let origin = env_origin(e.key, &ferry_env).unwrap_or_else(|| origin_hint(file));
        ConfigError(format!("{e}{origin}"))
    })?;
    Ok(config)
}

fn origin_hint(file: Option<&Path>) -> String {
    file.map_or_else(String::new, |p| format!(" (in {})", p.display()))
}

/// When the key was set from the environment, say which variable.
fn env_origin(key: &str, env: &HashMap<String, String>) -> Option<String> {
    let var = format!("FERRY__{}", key.replace('.', "__").to_ascii_uppercase());
    env.contains_key(&var)
        .then(|| format!(" (from the environment variable {var})"))
}

/// The effective configuration as TOML, secrets masked: any key whose name
/// says password, secret or token, and the credentials in any URL.
pub fn render_masked(config: &Config) -> String {
    let mut value = toml::Value::try_from(config).unwrap_or(toml::Value::Table(Default::default()));
    mask(&mut value);
    toml::to_string_pretty(&value).unwrap_or_default()
}

fn mask(value: &mut toml::Value) {
    if let toml::Value::Table(table) = value {
        for (key, v) in table.iter_mut() {
            let secret = ["password", "secret", "token"].iter().any(|s| key.contains(s));
            match v {
                toml::Value::String(_) if secret => *v = toml::Value::String("********".into()),
                toml::Value::String(text) => *text = redacted(text),
                _ => mask(v),
            }
        }
    }
}

/// A URL without the credentials it carries (`redis://:pw@host` → `redis://***@host`).
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let f = file("[server]\nhostname = \"relay.example.org\"\n[smtp]\nmax_errors = 7\n");
        let c = load(
            Some(f.path()),
            &env(&[
                ("FERRY__SMTP__MAX_ERRORS", "9"),
                ("FERRY__TLS__CERTIFICATE", "/c.pem"),
                ("FERRY__TLS__KEY", "/k.pem"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.server.hostname, "relay.example.org");
        assert_eq!(c.smtp.max_errors, 9);
        assert_eq!(c.tls.certificate.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.smtp.data_timeout_secs, 180);
    }

    #[test]
    fn unknown_keys_are_named() {
        let f = file("[tls]\ncertificat = \"x\"\n");
        let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("tls") && e.contains("certificat") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
        let e = load(None, &env(&[("FERRY__SMTP__MAX_EROR", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_eror"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_origin() {
        let e = load(None, &env(&[("FERRY__LISTEN__SMTP", "not-an-address")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen.smtp") && e.contains("FERRY__LISTEN__SMTP"), "{e}");
        let e = load(None, &env(&[("FERRY__TLS__KEY", "/k.pem")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.certificate"), "{e}");
        let e = load(Some(Path::new("/nonexistent/ferry.toml")), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ferry.toml"), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut v: toml::Value = toml::from_str(
            "[a]\nredis_password = \"hunter2\"\nname = \"x\"\n[b.c]\nurl = \"redis://:hunter3@10.0.0.5:6379/0\"\n",
        )
        .expect("toml");
        mask(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && text.contains("x"), "{text}");
        assert!(text.contains("redis://***@10.0.0.5:6379/0"), "{text}");
    }
}
