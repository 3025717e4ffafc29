//! What may carry a secret in text the exporter shows people (the status page, `/api/status`, the doctor,
//! logs, the evidence archive): ssh command lines and `ssh -G` output. One set of rules, used by every place
//! that shows either:
//! - in the options that run commands or send environment (ProxyCommand, LocalCommand, RemoteCommand,
//!   KnownHostsCommand, PermitLocalCommand's command, SetEnv, SendEnv values, plink's `-proxycmd`): the word
//!   after a password flag (`sshpass -p`, `-pw`, `--password`), the value of a secret-looking `NAME=VALUE`,
//!   every SetEnv value;
//! - anywhere: plink's `-pw` value, a secret-looking `NAME=VALUE`, and long random-looking words.
//!
//! Everything else is kept: it is what a person needs to read (the host, the forwards, the options).

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// The ssh options whose values run commands or carry environment.
const COMMAND_OPTIONS: [&str; 6] =
    ["proxycommand", "localcommand", "remotecommand", "knownhostscommand", "setenv", "sendenv"];

/// Names whose values are secrets: environment variables, JSON keys, `NAME=VALUE` words.
pub fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["token", "password", "passwd", "secret", "apikey", "api_key", "credential"].iter().any(|word| name.contains(word))
}

/// A word of 20 or more characters mixing letters and digits, with no path or host separators: a key or a
/// token more likely than anything a person wrote.
pub fn looks_random(word: &str) -> bool {
    word.len() >= 20
        && word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().any(|b| b.is_ascii_alphabetic())
        && !word.contains(['/', '.', '%', ':', '@'])
}

/// The words of a command (an option's value), masked: every `NAME=VALUE` value when `all_values` (SetEnv),
/// else secret-looking ones; the word after a password flag; long random-looking words.
fn mask_command_words<'a>(words: impl Iterator<Item = &'a str>, all_values: bool) -> Vec<String> {
    let mut masked = Vec::new();
    let mut mask_next = false;
    for word in words {
        let shown = if mask_next {
            mask_next = false;
            REDACTED.to_owned()
        } else if let Some((name, _)) = word.split_once('=').filter(|(name, _)| all_values || secret_name(name)) {
            format!("{name}={REDACTED}")
        } else if matches!(word, "-p" | "-pw" | "-P" | "--password" | "--pass" | "--passwd") {
            mask_next = true;
            word.to_owned()
        } else if looks_random(word) {
            REDACTED.to_owned()
        } else {
            word.to_owned()
        };
        masked.push(shown);
    }
    masked
}

/// One ssh option as written (`ProxyCommand sshpass -p X ...`, `SetEnv=A=B`), its value masked when the
/// option runs a command or carries environment.
fn mask_option(option_text: &str) -> String {
    let split_at = option_text.find([' ', '=', '\t']).unwrap_or(option_text.len());
    let (option, rest) = option_text.split_at(split_at);
    if !COMMAND_OPTIONS.contains(&option.to_ascii_lowercase().as_str()) {
        return mask_command_words(std::iter::once(option_text), false).join(" ");
    }
    let separator = &rest[..rest.len().min(1)];
    let value = rest.get(1..).unwrap_or_default();
    let all_values = option.eq_ignore_ascii_case("setenv");
    format!("{option}{separator}{}", mask_command_words(value.split(' '), all_values).join(" "))
}

/// `ssh -G` output with what may carry a secret masked (see the module).
pub fn mask_ssh_options(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&mask_option(line));
        out.push('\n');
    }
    out
}

/// An ssh (or plink) command line for a person, with what may carry a secret masked (see the module).
pub fn mask_argv(argv: &[String]) -> String {
    let mut words = Vec::with_capacity(argv.len());
    let mut next_is = None;
    for word in argv {
        let shown = match next_is.take() {
            Some("-o") => mask_option(word),
            Some("-pw") => REDACTED.to_owned(),
            Some("-proxycmd") => mask_command_words(word.split(' '), false).join(" "),
            _ => {
                if matches!(word.as_str(), "-o" | "-pw" | "-proxycmd") {
                    next_is = Some(match word.as_str() {
                        "-o" => "-o",
                        "-pw" => "-pw",
                        _ => "-proxycmd",
                    });
                    word.clone()
                } else if let Some(option) = word.strip_prefix("-o").filter(|rest| !rest.is_empty()) {
                    format!("-o{}", mask_option(option))
                } else {
                    mask_command_words(std::iter::once(word.as_str()), false).join(" ")
                }
            }
        };
        words.push(shown);
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(String::from).collect()
    }

    #[test]
    fn command_lines_keep_what_people_read_and_lose_what_carries_secrets() {
        let canary = "c4nary-0123456789abcdefXYZ";
        let mut words = argv("ssh -N -L 127.0.0.1:18789:127.0.0.1:18789 -p 2222 -o");
        words.push(format!("SetEnv=X={canary}"));
        words.push("-o".into());
        words.push(format!("ProxyCommand=sshpass -p {canary} ssh -W %h:%p bastion"));
        words.push(format!("-oSetEnv=Y={canary}"));
        words.push("-o".into());
        words.push("proxycommand sshpass -p short ssh -W %h:%p jump".to_owned());
        words.push("mac".into());
        let shown = mask_argv(&words);
        assert!(!shown.contains(canary) && !shown.contains("short"), "{shown}");
        assert!(shown.contains("-L 127.0.0.1:18789:127.0.0.1:18789 -p 2222"), "the port stays: {shown}");
        assert!(shown.contains("SetEnv=X=<redacted>") && shown.contains("-oSetEnv=Y=<redacted>"), "{shown}");
        assert!(shown.contains("ProxyCommand=sshpass -p <redacted> ssh -W %h:%p bastion"), "{shown}");
        assert!(shown.ends_with(" mac"), "{shown}");
        let plink = mask_argv(&argv("plink -pw hunter2 -L 18789:h:1 mac"));
        assert_eq!(plink, "plink -pw <redacted> -L 18789:h:1 mac");
        let bare = mask_argv(&argv(&format!("ssh -N mac API_TOKEN={canary}")));
        assert_eq!(bare, "ssh -N mac API_TOKEN=<redacted>");
    }

    #[test]
    fn ssh_g_output_is_masked_line_by_line() {
        let text = "hostname mac\nproxycommand sshpass -p hunter2 ssh -W %h:%p bastion\nsetenv FOO=bar\n\
                    localcommand echo TOKEN=abc\nport 22\n";
        let masked = mask_ssh_options(text);
        assert!(!masked.contains("hunter2") && !masked.contains("bar") && !masked.contains("abc"), "{masked}");
        assert!(masked.contains("hostname mac\n") && masked.contains("port 22\n"), "{masked}");
    }
}
