//! Hermes' own settings for its API server, read from its home (`$HERMES_HOME`, default
//! `~/.hermes`) the way Hermes 0.19 reads them, so that hermes-edge run as the same user needs no
//! setup: the key, host and port when none is given (`docs/hermes-notes.md`, section i).
//!
//! Hermes loads `<home>/.env` over its process environment, then lets that environment win over
//! `config.yaml`'s `platforms.api_server` (or `gateway.platforms.api_server`) block. Only the two
//! files are read here: variables exported to the gateway process itself (a systemd unit, a shell)
//! cannot be seen from another process. A file that cannot be read is "not found", a value that
//! Hermes would not use (an empty key, a port that is not a number) is ignored, nothing here fails.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// Larger files are not settings files; refusing them bounds the work.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What Hermes counts as true for `API_SERVER_ENABLED` (`utils.TRUTHY_STRINGS`).
const TRUTHY: [&str; 4] = ["1", "true", "yes", "on"];

/// A value and where it was found, e.g. `/home/u/.hermes/.env (API_SERVER_KEY)`.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Found<T> {
    pub value: T,
    pub source: String,
}

/// Hermes' API server settings as Hermes would resolve them from its two files.
#[derive(Clone, Default)]
pub(crate) struct HermesSettings {
    pub home: PathBuf,
    /// `<home>/.env` when it was read.
    pub env_file: Option<PathBuf>,
    /// `<home>/config.yaml` when it was read.
    pub yaml_file: Option<PathBuf>,
    /// Why config.yaml was not used although it exists (Hermes then ignores it too).
    pub yaml_error: Option<String>,
    /// Whether the API server is on, and what says so (or, when off, what says that).
    pub enabled: Found<bool>,
    pub key: Option<Found<String>>,
    pub host: Option<Found<String>>,
    pub port: Option<Found<u16>>,
}

impl std::fmt::Debug for HermesSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = |v: &Option<Found<String>>| v.as_ref().map(|v| v.source.clone());
        f.debug_struct("HermesSettings")
            .field("home", &self.home)
            .field("enabled", &self.enabled.value)
            .field("key_from", &source(&self.key))
            .field("host", &self.host.as_ref().map(|h| &h.value))
            .field("port", &self.port.as_ref().map(|p| p.value))
            .finish_non_exhaustive()
    }
}

impl HermesSettings {
    /// Reads `<home>/.env` and `<home>/config.yaml`.
    pub(crate) fn read(home: &Path) -> HermesSettings {
        let env_path = home.join(".env");
        let yaml_path = home.join("config.yaml");
        let env_text = read_small(&env_path);
        let yaml_text = read_small(&yaml_path);
        let env = env_text.as_deref().map(parse_env).unwrap_or_default();
        let (yaml, yaml_error) = match yaml_text.as_deref().map(YamlLoader::load_from_str) {
            None => (Yaml::BadValue, None),
            Some(Ok(mut docs)) if !docs.is_empty() => (docs.swap_remove(0), None),
            Some(Ok(_)) => (Yaml::BadValue, None),
            Some(Err(e)) => (Yaml::BadValue, Some(e.to_string())),
        };
        let mut s = resolve(
            &EnvFile::new(&env_path, &env),
            &YamlFile::new(&yaml_path, &yaml),
        );
        s.home = home.to_path_buf();
        s.env_file = env_text.is_some().then_some(env_path);
        s.yaml_file = yaml_text.is_some().then_some(yaml_path);
        s.yaml_error = yaml_error;
        s
    }

    /// Whether either file was there to read.
    pub(crate) fn found_any(&self) -> bool {
        self.env_file.is_some() || self.yaml_file.is_some()
    }

    /// `http://host:port` of the API server and where host and port came from, when either is
    /// set; a wildcard bind address (`0.0.0.0`, `::`) is reached on loopback.
    pub(crate) fn upstream(&self) -> Option<Found<String>> {
        if self.host.is_none() && self.port.is_none() {
            return None;
        }
        let host = match self.host.as_ref().map(|h| h.value.as_str()) {
            None | Some("" | "0.0.0.0") => "127.0.0.1".to_string(),
            Some("::" | "[::]") => "[::1]".to_string(),
            Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            Some(h) => h.to_string(),
        };
        let port = self.port.as_ref().map_or(8642, |p| p.value);
        let url = format!("http://{host}:{port}");
        url.parse::<http::Uri>().ok()?;
        let source = match (&self.host, &self.port) {
            (Some(h), Some(p)) if h.source == p.source => h.source.clone(),
            (Some(h), Some(p)) => format!("host {}, port {}", h.source, p.source),
            (Some(h), None) => format!("host {}, port Hermes' default", h.source),
            (None, Some(p)) => format!("port {}, host Hermes' default", p.source),
            (None, None) => return None,
        };
        Some(Found { value: url, source })
    }
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return None;
    }
    // Hermes falls back to latin-1 for a file that is not UTF-8; a key is ASCII either way.
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The parsed `.env` with its path, for the source names.
struct EnvFile<'a> {
    path: &'a Path,
    vars: &'a [(String, String)],
}

impl<'a> EnvFile<'a> {
    fn new(path: &'a Path, vars: &'a [(String, String)]) -> Self {
        EnvFile { path, vars }
    }
    /// The last assignment wins, as when python-dotenv sets them one after the other.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// A non-empty value (Hermes' `if value:`).
    fn set(&self, name: &str) -> Option<Found<&'a str>> {
        self.get(name).filter(|v| !v.is_empty()).map(|value| Found {
            value,
            source: format!("{} ({name})", self.path.display()),
        })
    }
}

/// config.yaml with its path, for the source names.
struct YamlFile<'a> {
    path: &'a Path,
    doc: &'a Yaml,
}

impl<'a> YamlFile<'a> {
    fn new(path: &'a Path, doc: &'a Yaml) -> Self {
        YamlFile { path, doc }
    }
    /// `platforms.api_server.extra.<name>`, else `gateway.platforms.api_server.extra.<name>`
    /// (Hermes merges the two `extra` maps, the top-level one winning), when present.
    fn extra(&self, name: &str) -> Option<Found<&'a Yaml>> {
        [
            ("platforms", &self.doc["platforms"]),
            ("gateway.platforms", &self.doc["gateway"]["platforms"]),
        ]
        .into_iter()
        .find_map(|(at, platforms)| {
            let v = &platforms["api_server"]["extra"][name];
            (!matches!(v, Yaml::BadValue)).then(|| Found {
                value: v,
                source: format!("{} ({at}.api_server.extra.{name})", self.path.display()),
            })
        })
    }
    /// `enabled` as Hermes resolves it from the file: a top-level `api_server:` block's
    /// `enabled` wins over `platforms.api_server.enabled`, which wins over `gateway.platforms...`.
    fn enabled(&self) -> Option<Found<bool>> {
        [
            ("api_server", &self.doc["api_server"]),
            ("platforms.api_server", &self.doc["platforms"]["api_server"]),
            (
                "gateway.platforms.api_server",
                &self.doc["gateway"]["platforms"]["api_server"],
            ),
        ]
        .into_iter()
        .find_map(|(at, block)| {
            let v = &block["enabled"];
            (!matches!(v, Yaml::BadValue)).then(|| Found {
                value: yaml_bool(v),
                source: format!("{} ({at}.enabled)", self.path.display()),
            })
        })
    }
}

/// Hermes' `_coerce_bool(value, False)`: anything but a true word is off.
fn yaml_bool(v: &Yaml) -> bool {
    match v {
        Yaml::Boolean(b) => *b,
        Yaml::Integer(i) => *i != 0,
        Yaml::String(s) => TRUTHY.contains(&s.trim().to_ascii_lowercase().as_str()),
        _ => false,
    }
}

/// A port as Hermes' `int()` would read it, if it is one hermes-edge can connect to.
fn port_of(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

fn yaml_port(v: &Yaml) -> Option<u16> {
    match v {
        Yaml::Integer(i) => u16::try_from(*i).ok().filter(|p| *p != 0),
        Yaml::String(s) => port_of(s),
        _ => None,
    }
}

/// Hermes' precedence (`gateway/config.py` `_apply_env_overrides`, then `APIServerAdapter`):
/// an environment (`.env`) that enables the API server (`API_SERVER_ENABLED` true or a non-empty
/// `API_SERVER_KEY`) puts its key, port and host over config.yaml's; otherwise config.yaml's
/// `extra` values come first and the environment only fills what they leave out.
fn resolve(env: &EnvFile<'_>, yaml: &YamlFile<'_>) -> HermesSettings {
    let env_key = env.set("API_SERVER_KEY");
    let env_enabled = env
        .set("API_SERVER_ENABLED")
        .filter(|f| TRUTHY.contains(&f.value.trim().to_ascii_lowercase().as_str()));
    let env_on = env_enabled.is_some() || env_key.is_some();

    let enabled = match (env_enabled, &env_key, yaml.enabled()) {
        (Some(f), _, _) => Found {
            value: true,
            source: f.source,
        },
        (None, Some(k), _) => Found {
            value: true,
            source: k.source.clone(),
        },
        (None, None, Some(y)) => y,
        (None, None, None) => Found {
            value: false,
            source:
                "neither API_SERVER_ENABLED in .env nor platforms.api_server.enabled in config.yaml"
                    .into(),
        },
    };

    let owned = |f: Found<&str>| Found {
        value: f.value.to_string(),
        source: f.source,
    };
    let yaml_key = yaml.extra("key").and_then(|f| match f.value {
        Yaml::String(s) if !s.is_empty() => Some(Found {
            value: s.clone(),
            source: f.source,
        }),
        _ => None,
    });
    let key = env_key.map(owned).or(yaml_key);

    // config.yaml's host/port when present, else the environment's (the adapter's fallback);
    // an environment that enabled the server has already put its values over config.yaml's.
    let env_host = env.set("API_SERVER_HOST").map(owned);
    let yaml_host = yaml.extra("host").and_then(|f| match f.value {
        Yaml::String(s) if !s.is_empty() => Some(Found {
            value: s.trim().to_string(),
            source: f.source,
        }),
        _ => None,
    });
    let host = match env_on {
        true => env_host.or(yaml_host),
        false => yaml_host.or(env_host),
    };

    let env_port = env.set("API_SERVER_PORT").and_then(|f| {
        port_of(f.value).map(|value| Found {
            value,
            source: f.source,
        })
    });
    let yaml_port = yaml.extra("port").map(|f| Found {
        value: yaml_port(f.value),
        source: f.source,
    });
    let port = match (env_on, env_port, yaml_port) {
        (true, Some(e), _) => Some(e),
        // A port in config.yaml that is not a number makes Hermes use its default.
        (_, _, Some(Found { value: None, .. })) => None,
        (
            _,
            _,
            Some(Found {
                value: Some(value),
                source,
            }),
        ) => Some(Found { value, source }),
        (_, e, None) => e,
    };

    HermesSettings {
        enabled,
        key,
        host,
        port,
        ..HermesSettings::default()
    }
}

/// `KEY=value` lines as python-dotenv (which Hermes uses) reads them: blank lines and `#` comments
/// skipped, an optional `export ` prefix, values unquoted (a ` #` starts a comment, surrounding
/// blanks trimmed), in single quotes (literal) or in double quotes (backslash escapes); a quoted
/// value may span lines. `${VAR}` is taken literally. A line it cannot read is skipped.
pub(crate) fn parse_env(text: &str) -> Vec<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (entry, after) = parse_entry(rest);
        if let Some(kv) = entry {
            out.push(kv);
        }
        rest = after;
    }
    out
}

/// Every assignment's key and the byte range of its lines in `text` (newline included; a quoted
/// value may span lines), read as [`parse_env`] reads them: for editing a value in place.
pub(crate) fn env_entries(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let start = text.len() - text.strip_prefix('\u{feff}').unwrap_or(text).len();
    let mut out = Vec::new();
    let mut rest = &text[start..];
    while !rest.is_empty() {
        let from = text.len() - rest.len();
        let (entry, after) = parse_entry(rest);
        if let Some((key, _)) = entry {
            out.push((key, from..text.len() - after.len()));
        }
        rest = after;
    }
    out
}

/// One entry from the start of `text`: the assignment (if the line holds one) and what follows
/// its line.
fn parse_entry(text: &str) -> (Option<(String, String)>, &str) {
    let trimmed = text.trim_start_matches([' ', '\t', '\r']);
    if trimmed.starts_with('#') {
        return (None, skip_line(trimmed));
    }
    let body = trimmed
        .strip_prefix("export")
        .and_then(|s| s.strip_prefix([' ', '\t']))
        .map_or(trimmed, |s| s.trim_start_matches([' ', '\t']));
    let Some(eq) = body
        .find(['=', '\n'])
        .filter(|&i| body.as_bytes()[i] == b'=')
    else {
        return (None, skip_line(trimmed));
    };
    let key = body[..eq].trim_end_matches([' ', '\t']);
    if key.is_empty() || key.contains([' ', '\t', '#', '\r']) {
        return (None, skip_line(trimmed));
    }
    let value_text = body[eq + 1..].trim_start_matches([' ', '\t']);
    let (value, after) = match value_text.chars().next() {
        Some(q @ ('\'' | '"')) => match quoted(&value_text[1..], q) {
            Some((v, consumed)) => {
                let after = &value_text[1 + consumed..];
                (Some(v), skip_line(after))
            }
            // No closing quote: python-dotenv refuses the line.
            None => (None, skip_line(value_text)),
        },
        _ => {
            let end = line_end(value_text);
            let raw = value_text[..end].trim_end_matches(['\n', '\r']);
            let raw = match raw.find(" #").or_else(|| raw.find("\t#")) {
                Some(i) => &raw[..i],
                None => raw,
            };
            (
                Some(raw.trim_matches([' ', '\t']).to_string()),
                &value_text[end..],
            )
        }
    };
    (value.map(|v| (key.to_string(), v)), after)
}

/// Where the line starting `s` ends (after its newline).
fn line_end(s: &str) -> usize {
    s.find('\n').map_or(s.len(), |i| i + 1)
}

/// What follows the line starting `s`.
fn skip_line(s: &str) -> &str {
    &s[line_end(s)..]
}

/// The value up to the closing `quote` and how many bytes of `text` it took (the quote
/// included); `None` when the quote is never closed.
fn quoted(text: &str, quote: char) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Some((value, i + 1)),
            '\\' => {
                let (_, next) = chars.next()?;
                match (quote, next) {
                    ('\'', '\'' | '\\') => value.push(next),
                    ('\'', _) => {
                        value.push('\\');
                        value.push(next);
                    }
                    (_, 'n') => value.push('\n'),
                    (_, 't') => value.push('\t'),
                    (_, 'r') => value.push('\r'),
                    (_, '"' | '\'' | '\\') => value.push(next),
                    _ => {
                        value.push('\\');
                        value.push(next);
                    }
                }
            }
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> Vec<(String, String)> {
        parse_env(text)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_file_reads_the_forms_python_dotenv_reads() {
        let text =
            "\u{feff}# comment\n\nA=1\nexport B = two words  # note\nC='single # not a comment'\n\
                    D=\"dq \\\"x\\\" \\n end\"\n  E=spaced\r\nF=\nG=a#b\nexport\tH=tab\n";
        assert_eq!(
            env(text),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "single # not a comment"),
                ("D", "dq \"x\" \n end"),
                ("E", "spaced"),
                ("F", ""),
                ("G", "a#b"),
                ("H", "tab"),
            ])
        );
    }

    #[test]
    fn env_file_quoted_values_may_span_lines_and_single_quotes_are_literal() {
        assert_eq!(
            env("K=\"line1\nline2\"\nL='a\\nb'\nM=after\n"),
            pairs(&[("K", "line1\nline2"), ("L", "a\\nb"), ("M", "after")])
        );
    }

    #[test]
    fn env_file_odd_input_is_skipped_without_panic() {
        let odd = [
            "",
            "=",
            "==",
            "=value",
            "export",
            "export ",
            "no equals sign",
            "K='unclosed\nL=1",
            "K=\"unclosed \\",
            "K=\"\\",
            "\u{feff}",
            "#=x",
            "A B=c",
            "é=ü\nOK=1",
            "K='é'x\n",
            "\r\n\r\n",
            "export=3",
            "K=\"a\"trailing",
            "\0=\0",
            "# x='open\nA=1",
        ];
        for text in odd {
            let _ = env(text);
        }
        assert_eq!(env("K='unclosed\nL=1"), pairs(&[("L", "1")]));
        assert_eq!(env("é=ü\nOK=1"), pairs(&[("é", "ü"), ("OK", "1")]));
        assert_eq!(env("export=3"), pairs(&[("export", "3")]));
        assert_eq!(env("A B=c\nD=e"), pairs(&[("D", "e")]));
        assert_eq!(env("# x='open\nA=1"), pairs(&[("A", "1")]));
        assert_eq!(env("A B='open\nC=1"), pairs(&[("C", "1")]));
        // Every prefix of a tricky file, cut anywhere (on char boundaries).
        let tricky = "export A=\"x\\\"y\"\nB='p\\'q'\nC=v # c\nD=\"multi\nline\"\n";
        for (i, _) in tricky.char_indices() {
            let _ = env(&tricky[..i]);
        }
    }

    fn settings(env_text: &str, yaml_text: &str) -> HermesSettings {
        let vars = parse_env(env_text);
        let doc = YamlLoader::load_from_str(yaml_text)
            .ok()
            .and_then(|mut d| (!d.is_empty()).then(|| d.swap_remove(0)))
            .unwrap_or(Yaml::BadValue);
        resolve(
            &EnvFile::new(Path::new("/h/.env"), &vars),
            &YamlFile::new(Path::new("/h/config.yaml"), &doc),
        )
    }

    #[test]
    fn the_env_file_wins_over_config_yaml_when_it_enables_the_server() {
        let yaml = "platforms:\n  api_server:\n    enabled: true\n    extra:\n      key: yaml-key\n      port: 9000\n      host: 0.0.0.0\n";
        let s = settings("API_SERVER_KEY=env-key\nAPI_SERVER_PORT=9100\n", yaml);
        let key = s.key.unwrap();
        assert_eq!(
            (key.value.as_str(), key.source.as_str()),
            ("env-key", "/h/.env (API_SERVER_KEY)")
        );
        assert_eq!(s.port.unwrap().value, 9100);
        assert_eq!(
            s.host.as_ref().unwrap().source,
            "/h/config.yaml (platforms.api_server.extra.host)"
        );
        assert!(s.enabled.value);

        // An .env that does not enable the server: config.yaml's values come first.
        let s = settings("API_SERVER_PORT=9100\nAPI_SERVER_HOST=::\n", yaml);
        assert_eq!(
            s.key.as_ref().unwrap().source,
            "/h/config.yaml (platforms.api_server.extra.key)"
        );
        assert_eq!(s.port.as_ref().unwrap().value, 9000);
        assert_eq!(s.upstream().unwrap().value, "http://127.0.0.1:9000");
        assert_eq!(
            s.enabled.source,
            "/h/config.yaml (platforms.api_server.enabled)"
        );
    }

    #[test]
    fn config_yaml_alone_and_its_nested_and_top_level_forms() {
        let s = settings("", "gateway:\n  platforms:\n    api_server:\n      extra:\n        key: nested\n        port: \"8700\"\n");
        assert_eq!(s.key.unwrap().value, "nested");
        assert_eq!(s.port.unwrap().value, 8700);
        assert!(
            !s.enabled.value,
            "no `enabled` anywhere: Hermes keeps the server off"
        );
        let s = settings(
            "",
            "api_server:\n  enabled: false\nplatforms:\n  api_server:\n    enabled: true\n",
        );
        assert!(!s.enabled.value);
        assert_eq!(s.enabled.source, "/h/config.yaml (api_server.enabled)");
        let s = settings(
            "API_SERVER_ENABLED=yes\n",
            "api_server:\n  enabled: false\n",
        );
        assert!(
            s.enabled.value,
            "the environment turns it on whatever config.yaml says"
        );
    }

    #[test]
    fn nothing_usable_is_not_found() {
        let s = settings(
            "API_SERVER_KEY=\nAPI_SERVER_PORT=http\nAPI_SERVER_ENABLED=maybe\n",
            "platforms: [1, 2]\n",
        );
        assert!(s.key.is_none() && s.port.is_none() && s.host.is_none());
        assert!(!s.enabled.value);
        assert!(s.upstream().is_none());
        // A port in config.yaml that is no number: Hermes uses 8642, not the .env's.
        let s = settings(
            "API_SERVER_PORT=9100\n",
            "platforms:\n  api_server:\n    extra:\n      port: x\n",
        );
        assert!(s.port.is_none());
    }

    #[test]
    fn wildcard_and_ipv6_hosts_become_addresses_to_connect_to() {
        let s = settings(
            "API_SERVER_ENABLED=true\nAPI_SERVER_HOST=::\nAPI_SERVER_PORT=8700\n",
            "",
        );
        let u = s.upstream().unwrap();
        assert_eq!(u.value, "http://[::1]:8700");
        assert_eq!(
            u.source,
            "host /h/.env (API_SERVER_HOST), port /h/.env (API_SERVER_PORT)"
        );
        let s = settings("API_SERVER_HOST=0.0.0.0\n", "");
        assert_eq!(s.upstream().unwrap().value, "http://127.0.0.1:8642");
        let s = settings("API_SERVER_HOST=fd00::1\n", "");
        assert_eq!(s.upstream().unwrap().value, "http://[fd00::1]:8642");
        let s = settings("API_SERVER_HOST=bad host/x\n", "");
        assert!(s.upstream().is_none());
    }

    #[test]
    fn an_unreadable_home_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = HermesSettings::read(&dir.path().join("missing"));
        assert!(!s.found_any() && s.key.is_none() && !s.enabled.value);
        std::fs::write(dir.path().join("config.yaml"), "a: [unclosed\n").unwrap();
        std::fs::create_dir(dir.path().join(".env")).unwrap(); // a directory: not readable as a file
        let s = HermesSettings::read(dir.path());
        assert!(s.env_file.is_none());
        assert!(s.yaml_error.is_some());
    }
}
