//! HTML reduced to readable text (html2text, plain: no link footnotes or
//! markup), with runs of blank lines collapsed.

/// Characters per line before the text is wrapped.
const WIDTH: usize = 100;

/// The text of the HTML document `html`.
pub fn from_html(html: &str) -> String {
    let text = html2text::config::plain()
        .string_from_read(html.as_bytes(), WIDTH)
        .unwrap_or_else(|_| html.to_string());
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_scripts_and_styles_are_dropped_and_entities_decoded() {
        let html = "<html><head><title>T</title><style>p{color:red}</style>\
                    <script>alert(1)</script></head><body><h1>Hello</h1>\
                    <p>Fish &amp; chips</p>\n\n\n<p>Second</p></body></html>";
        let text = from_html(html);
        assert!(text.contains("Hello"), "{text}");
        assert!(text.contains("Fish & chips"), "{text}");
        assert!(text.contains("Second"), "{text}");
        assert!(!text.contains("alert"), "{text}");
        assert!(!text.contains("color"), "{text}");
        assert!(!text.contains('<'), "{text}");
    }
}
