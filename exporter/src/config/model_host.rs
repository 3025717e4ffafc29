//! `[[model_host]]`'s keys validated: unique names, http(s) URLs with a host, CA files that exist.

use std::collections::HashSet;
use std::path::PathBuf;

use super::checker::{Checker, PROBE_MAX, PROBE_MIN};
use super::raw::RawModelHost;
use super::*;

/// `[[model_host]]`: unique names, http(s) URLs with a host, CA files that exist.
pub(super) fn validate_model_hosts(raw: Vec<RawModelHost>, c: &mut Checker<'_>) -> Vec<ModelHost> {
    let mut model_names = HashSet::new();
    let mut model_hosts = Vec::new();
    for (index, host) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("model_host[{index}].{field}");
        c.label(&key("name"), &host.name, &mut model_names, "model_host");
        let url = match url::Url::parse(&host.url) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && url.host_str().is_some() => url,
            Ok(_) => {
                c.problem(
                    &key("url"),
                    &crate::openclaw_cli_url::redacted(&host.url),
                    "must be an http:// or https:// URL with a host",
                );
                url::Url::parse("https://invalid.invalid/").expect("literal URL")
            }
            Err(err) => {
                c.problem(&key("url"), &crate::openclaw_cli_url::redacted(&host.url), &format!("not a URL ({err})"));
                url::Url::parse("https://invalid.invalid/").expect("literal URL")
            }
        };
        if let Some(ca) = &host.ca_file {
            if !Path::new(ca).is_file() {
                c.problem(&key("ca_file"), ca, "no such file");
            }
        }
        model_hosts.push(ModelHost {
            url,
            interval: c.duration(&key("interval"), &host.interval, PROBE_MIN, PROBE_MAX),
            timeout: c.duration(&key("timeout"), &host.timeout, PROBE_MIN, PROBE_MAX),
            ca_file: host.ca_file.map(PathBuf::from),
            name: host.name,
        });
    }
    model_hosts
}
