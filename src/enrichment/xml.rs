//! A small, tolerant extractor for the flat XML of Windows-style event records (Sysmon
//! for Linux writes them to syslog). Not an XML parser: it finds element text and the
//! `<Data Name="...">value</Data>` pairs, and unescapes entities.
//!
//! Panic and termination contract: every function works on `&str` with `find` and
//! `get`, never indexes a slice unchecked, and each loop moves its cursor strictly
//! forward, so any input (cut, nested, binary) ends in linear time without panicking.

/// Why an event's XML could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XmlError {
    /// No `<Event` ... `</Event>` span.
    NoEvent,
    /// A `<Data` element without its end (`>` or `</Data>`).
    Unterminated,
    /// A `<Data` element without a `Name` attribute.
    NoName,
}

/// The text of the first `<tag>text</tag>` (with or without attributes) in `s`.
pub fn element_text<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(rel) = s.get(from..)?.find('<') {
        let start = from + rel + 1;
        let rest = s.get(start..)?;
        from = start;
        if !rest.starts_with(tag) {
            continue;
        }
        let after = rest.get(tag.len()..)?;
        // `<tag>` or `<tag attr=...>`, not `<tagOther>`.
        match after.chars().next() {
            Some('>') | Some(' ') | Some('\t') => {}
            Some('/') => return Some(""), // <tag/>
            _ => continue,
        }
        let gt = after.find('>')?;
        if after.get(..gt)?.ends_with('/') {
            return Some("");
        }
        let body = after.get(gt + 1..)?;
        let close = format!("</{tag}>");
        let end = body.find(&close)?;
        return body.get(..end);
    }
    None
}

/// The value of attribute `name` in the attribute text of an element (`Name="x"` or
/// `Name='x'`).
pub fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(rel) = attrs.get(from..)?.find(name) {
        let at = from + rel;
        from = at + name.len();
        let before_ok = at == 0
            || attrs
                .get(..at)
                .and_then(|b| b.chars().next_back())
                .is_some_and(|c| c.is_whitespace());
        let rest = attrs.get(from..)?.trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let rest = rest.trim_start();
        let q = rest.chars().next()?;
        if q != '"' && q != '\'' {
            return None;
        }
        let body = rest.get(1..)?;
        let end = body.find(q)?;
        return body.get(..end);
    }
    None
}

/// Every `<Data Name="k">v</Data>` in `s`, in order, values still escaped.
pub fn data_pairs(s: &str) -> Result<Vec<(&str, &str)>, XmlError> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = s.get(from..).and_then(|r| r.find("<Data")) {
        let start = from + rel + "<Data".len();
        let rest = s.get(start..).ok_or(XmlError::Unterminated)?;
        let gt = rest.find('>').ok_or(XmlError::Unterminated)?;
        let attrs = rest.get(..gt).ok_or(XmlError::Unterminated)?;
        let name = attribute(attrs, "Name").ok_or(XmlError::NoName)?;
        if attrs.ends_with('/') {
            out.push((name, ""));
            from = start + gt + 1;
            continue;
        }
        let body = rest.get(gt + 1..).ok_or(XmlError::Unterminated)?;
        let end = body.find("</Data>").ok_or(XmlError::Unterminated)?;
        out.push((name, body.get(..end).ok_or(XmlError::Unterminated)?));
        from = start + gt + 1 + end + "</Data>".len();
    }
    Ok(out)
}

/// Resolves `&amp; &lt; &gt; &quot; &apos;` and numeric references; an unknown or cut
/// entity is kept as written.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let tail = rest.get(i..).unwrap_or("");
        let semi = tail.find(';').filter(|&j| j <= 10);
        let decoded = semi.and_then(|j| {
            let ent = tail.get(1..j)?;
            let c = match ent {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let n = if let Some(h) =
                        ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X"))
                    {
                        u32::from_str_radix(h, 16).ok()?
                    } else {
                        ent.strip_prefix('#')?.parse().ok()?
                    };
                    char::from_u32(n)?
                }
            };
            Some((c, j + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = tail.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = tail.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_elements_attributes_and_data() {
        let x = r#"<Event><System><EventID>3</EventID><EventIDX>9</EventIDX><Computer>web-1</Computer><Correlation/></System><EventData><Data Name="Image">/usr/bin/a&amp;b</Data><Data Name='Empty'/><Data Name="X"></Data></EventData></Event>"#;
        assert_eq!(element_text(x, "EventID"), Some("3"));
        assert_eq!(element_text(x, "Computer"), Some("web-1"));
        assert_eq!(element_text(x, "Correlation"), Some(""));
        assert_eq!(element_text(x, "Missing"), None);
        let d = data_pairs(x).unwrap();
        assert_eq!(d, [("Image", "/usr/bin/a&amp;b"), ("Empty", ""), ("X", "")]);
        assert_eq!(unescape(d[0].1), "/usr/bin/a&b");
        assert_eq!(unescape("&#65;&#x42;&bogus;&"), "AB&bogus;&");
        assert_eq!(attribute(r#"OtherName="a" Name="b""#, "Name"), Some("b"));
    }

    #[test]
    fn broken_xml_is_an_error_not_a_panic() {
        assert_eq!(
            data_pairs(r#"<Data Name="a">x"#),
            Err(XmlError::Unterminated)
        );
        assert_eq!(data_pairs(r#"<Data Name="a""#), Err(XmlError::Unterminated));
        assert_eq!(data_pairs(r#"<Data>x</Data>"#), Err(XmlError::NoName));
        assert_eq!(element_text("<EventID>3", "EventID"), None);
        assert_eq!(element_text("<", "EventID"), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "(<|>|/|Data|Name|=|\"|'|&|#|;|x|é|EventID| )*") {
            let _ = data_pairs(&s);
            let _ = element_text(&s, "EventID");
            let _ = unescape(&s);
            let _ = attribute(&s, "Name");
        }
    }
}
