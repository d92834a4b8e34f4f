//! Editing a dotenv file (Hermes' `<home>/.env`, hermes-edge's own `/etc/hermes-edge/env`) in
//! place: a variable's last assignment is rewritten on its own lines, a missing one appended,
//! and every other byte (comments, blank lines, quotes, `export`, CRLF) stays as it was. The
//! lines are found by the same reader that reads the settings (`config::hermes_settings`), so
//! what is edited is what Hermes reads.

use crate::config::hermes_settings::env_entries;

/// `text` with each `(name, value)` set. A value must be a plain word (keys, `true`): it is
/// written unquoted. The last assignment of a name wins in python-dotenv, so that is the one
/// rewritten (keeping its indentation and `export`); a name not assigned yet is appended.
pub(crate) fn set_vars(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = set_var(&out, name, value);
    }
    out
}

fn set_var(text: &str, name: &str, value: &str) -> String {
    let eol_of_file = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let last = env_entries(text).into_iter().rev().find(|(k, _)| k == name);
    match last {
        Some((_, range)) => {
            let old = &text[range.clone()];
            let indent_len = old.len() - old.trim_start_matches([' ', '\t']).len();
            let after_indent = &old[indent_len..];
            let export = after_indent
                .strip_prefix("export")
                .filter(|s| s.starts_with([' ', '\t']))
                .map(|s| {
                    let blanks = s.len() - s.trim_start_matches([' ', '\t']).len();
                    &after_indent[..6 + blanks]
                })
                .unwrap_or("");
            let eol = if old.ends_with("\r\n") {
                "\r\n"
            } else if old.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            format!(
                "{}{}{export}{name}={value}{eol}{}",
                &text[..range.start],
                &old[..indent_len],
                &text[range.end..]
            )
        }
        None => {
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                eol_of_file
            };
            format!("{text}{sep}{name}={value}{eol_of_file}")
        }
    }
}

/// The value of `name` as Hermes reads it, if assigned.
#[cfg(test)]
fn get_var(text: &str, name: &str) -> Option<String> {
    crate::config::hermes_settings::parse_env(text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_replaced_in_place_and_everything_else_kept() {
        let text = "# Hermes settings\nOPENAI_API_KEY=sk-1\n\nAPI_SERVER_ENABLED=false # off for now\nTELEGRAM='a # b'\n";
        let out = set_vars(text, &[("API_SERVER_ENABLED", "true")]);
        assert_eq!(
            out,
            "# Hermes settings\nOPENAI_API_KEY=sk-1\n\nAPI_SERVER_ENABLED=true\nTELEGRAM='a # b'\n"
        );
        assert_eq!(get_var(&out, "TELEGRAM").as_deref(), Some("a # b"));
    }

    #[test]
    fn export_indentation_and_quotes_are_handled() {
        let text = "  export  API_SERVER_KEY=\"old\nstill old\"\nNEXT=1\n";
        let out = set_vars(text, &[("API_SERVER_KEY", "k1")]);
        assert_eq!(out, "  export  API_SERVER_KEY=k1\nNEXT=1\n");
        let out = set_vars("API_SERVER_KEY='q'\n", &[("API_SERVER_KEY", "k2")]);
        assert_eq!(out, "API_SERVER_KEY=k2\n");
        // `exported=1` is a name, not `export ed=1`.
        let out = set_vars("exported=1\n", &[("exported", "2")]);
        assert_eq!(out, "exported=2\n");
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let text = "A=1\r\nAPI_SERVER_ENABLED=no\r\nB=2\r\n";
        let out = set_vars(
            text,
            &[("API_SERVER_ENABLED", "true"), ("API_SERVER_KEY", "k")],
        );
        assert_eq!(
            out,
            "A=1\r\nAPI_SERVER_ENABLED=true\r\nB=2\r\nAPI_SERVER_KEY=k\r\n"
        );
    }

    #[test]
    fn a_missing_final_newline_is_added_before_an_appended_line() {
        let out = set_vars("A=1", &[("B", "2")]);
        assert_eq!(out, "A=1\nB=2\n");
        // The last line rewritten in place keeps having no newline.
        let out = set_vars("A=1\nB=old", &[("B", "new")]);
        assert_eq!(out, "A=1\nB=new");
        assert_eq!(set_vars("", &[("A", "1")]), "A=1\n");
    }

    #[test]
    fn the_last_assignment_is_the_one_rewritten_and_comments_are_not_assignments() {
        let text = "# API_SERVER_KEY=commented\nAPI_SERVER_KEY=first\nAPI_SERVER_KEY=second\n";
        let out = set_vars(text, &[("API_SERVER_KEY", "new")]);
        assert_eq!(
            out,
            "# API_SERVER_KEY=commented\nAPI_SERVER_KEY=first\nAPI_SERVER_KEY=new\n"
        );
        assert_eq!(get_var(&out, "API_SERVER_KEY").as_deref(), Some("new"));
    }

    #[test]
    fn a_byte_order_mark_and_odd_lines_survive() {
        let text = "\u{feff}A=1\nnot an assignment\nK='unclosed\n";
        let out = set_vars(text, &[("A", "2"), ("K", "v")]);
        assert_eq!(out, "\u{feff}A=2\nnot an assignment\nK='unclosed\nK=v\n");
        assert_eq!(get_var(&out, "K").as_deref(), Some("v"));
    }
}
