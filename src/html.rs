//! Text put into the edge's own HTML pages (directory listings, the dashboard's error page): one
//! escaper, with the apostrophe left as it is where it cannot end anything.

/// `text` safe anywhere in a page, a quoted attribute included (either quote): `& < > " '` become
/// entities.
pub(crate) fn escape(text: &str) -> String {
    escape_with(text, true)
}

/// `text` safe as an element's content, where an apostrophe ends nothing and so stays readable as
/// it is (the dashboard's error messages say "Hermes' dashboard"); `& < > "` become entities.
/// Never for an attribute value: use `escape` there.
pub(crate) fn escape_text(text: &str) -> String {
    escape_with(text, false)
}

fn escape_with(text: &str, apostrophe: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' if apostrophe => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, escape_text};

    #[test]
    fn escapes_the_five_special_characters() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn element_text_keeps_its_apostrophes() {
        assert_eq!(
            escape_text(r#"Hermes' <b>"dashboard"</b> & co"#),
            "Hermes' &lt;b&gt;&quot;dashboard&quot;&lt;/b&gt; &amp; co"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        assert_eq!(escape("Grüße, 日本 / 100%"), "Grüße, 日本 / 100%");
        assert_eq!(escape_text(""), "");
    }
}
