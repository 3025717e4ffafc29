//! What a configuration is accepted with but should change, said by `check-config` and logged at start and on
//! each reload: revisions on an unsalted SHA-256, and credentials that would cross the network in clear text.

use super::Config;

impl Config {
    /// What is accepted but should change: revisions still on an unsalted SHA-256 fingerprint, and credentials
    /// that would cross the network in clear text.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .auth
            .registry
            .legacy_names()
            .map(|name| {
                format!(
                    "auth.revision \"{name}\": an unsalted sha256 fingerprint; anyone who reads this config can test \
                     guesses of a short token in seconds: replace it with the `hash = ` line `openclaw-tunnel-exporter \
                     fingerprint` prints"
                )
            })
            .collect();
        warnings.extend(self.cleartext_credentials());
        warnings
    }

    /// Credentials that would cross the network unencrypted: remote write's bearer token, basic auth or headers
    /// sent over `http://` to a host that is not this machine, and basic auth users served over plain HTTP on a
    /// listener beyond loopback.
    fn cleartext_credentials(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(remote) = &self.remote_write {
            let host = remote.url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            let sent: Vec<&str> = [
                (remote.bearer_token_file.is_some(), "bearer_token_file"),
                (remote.basic_auth.is_some(), "basic_auth"),
                (!remote.headers.is_empty(), "headers"),
            ]
            .into_iter()
            .filter_map(|(set, key)| set.then_some(key))
            .collect();
            if remote.url.scheme() == "http" && !local && !sent.is_empty() {
                warnings.push(format!(
                    "remote_write.url = \"{}\": {} would cross the network in clear text to {host}: use https://",
                    crate::openclaw_cli_url::redacted(remote.url.as_str()),
                    sent.iter().map(|key| format!("remote_write.{key}")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let plain_auth =
            self.web.security.as_ref().is_some_and(|security| security.requires_auth() && security.tls.is_none());
        if plain_auth && !self.web.listen.ip().is_loopback() {
            warnings.push(format!(
                "web.listen = \"{}\": basic auth without TLS beyond loopback sends every scraper's password in clear \
                 text: add tls_server_config to web.config_file",
                self.web.listen
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings_of(toml: &str) -> Vec<String> {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        Config::load(Some(file.path())).unwrap().warnings()
    }

    #[test]
    fn a_credential_over_plain_http_to_another_host_is_warned_of_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0k3n").unwrap();
        let remote = |url: &str, keys: &str| {
            format!(
                "[[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:18789\"\n[remote_write]\nurl = \"{url}\"\nqueue_dir = \"{}\"\n{keys}",
                dir.path().join("queue").display()
            )
        };
        let bearer = format!("bearer_token_file = \"{}\"\n", token.display());
        let said = warnings_of(&remote("http://vm.example:8428/api/v1/write", &bearer));
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("remote_write.bearer_token_file would cross the network in clear text to vm.example"),
            "{said:?}"
        );
        assert!(!said[0].contains("t0k3n"));
        let headers = "[remote_write.headers]\n\"X-Scope-OrgID\" = \"team-a\"\n";
        assert_eq!(warnings_of(&remote("http://10.0.0.9/api/v1/write", headers)).len(), 1);
        for quiet in [
            remote("https://vm.example/api/v1/write", &bearer),
            remote("http://127.0.0.1:8428/api/v1/write", &bearer),
            remote("http://vm.example/api/v1/write", ""),
        ] {
            assert!(warnings_of(&quiet).is_empty(), "{quiet}");
        }
    }
}
