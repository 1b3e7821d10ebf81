//! Pushshift records: comments (`RC_*`) and submissions (`RS_*`), one JSON object per line.
//! Fields may be missing or null; fields threads do not use (`created_utc`, `score`, ...) are not
//! read at all, whatever their type. Bodies are HTML-escaped and may be `[deleted]` /
//! `[removed]`.

use std::borrow::Cow;

use serde::Deserialize;

/// A comment, as much of it as threads need; its strings borrow from the spill bytes it was
/// read from (a partition holds millions of them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment<'a> {
    /// Base-36 id without prefix.
    pub id: Cow<'a, str>,
    /// `t1_<comment>` or `t3_<submission>`.
    #[serde(default)]
    pub parent_id: Option<Cow<'a, str>>,
    /// `t3_<submission>`: the thread.
    #[serde(default)]
    pub link_id: Option<Cow<'a, str>>,
    /// HTML-escaped text.
    #[serde(default)]
    pub body: Option<Cow<'a, str>>,
    /// Author name.
    #[serde(default)]
    pub author: Option<Cow<'a, str>>,
    /// Subreddit name.
    #[serde(default)]
    pub subreddit: Option<Cow<'a, str>>,
}

/// A submission: the root of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Submission {
    /// Base-36 id without prefix.
    pub id: String,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Self text (empty for link posts).
    #[serde(default)]
    pub selftext: Option<String>,
    /// Subreddit name.
    #[serde(default)]
    pub subreddit: Option<String>,
}

/// True for a body or text that was deleted or removed (or is missing).
pub(crate) fn is_deleted(text: Option<&str>) -> bool {
    match text.map(str::trim) {
        None | Some("" | "[deleted]" | "[removed]") => true,
        Some(_) => false,
    }
}

/// Undoes the HTML escaping of pushshift bodies, appending the text to `out`: `&amp;`, `&lt;`,
/// `&gt;`, `&quot;`, `&#39;`, `&apos;`, `&nbsp;` and numeric entities. Unknown entities are
/// kept as they are.
pub(crate) fn unescape_html_into(text: &str, out: &mut String) {
    let Some(first) = memchr::memchr(b'&', text.as_bytes()) else {
        out.push_str(text);
        return;
    };
    out.push_str(&text[..first]);
    let mut rest = &text[first..];
    loop {
        // `rest` starts at a '&'; an entity ends at a ';' within the next 10 bytes.
        let near = &rest.as_bytes()[..rest.len().min(11)];
        let decoded = memchr::memchr(b';', near).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        // An unknown entity keeps its '&' and decoding resumes right after it.
        let (c, consumed) = decoded.map_or(('&', 1), |(c, end)| (c, end + 1));
        out.push(c);
        rest = &rest[consumed..];
        match memchr::memchr(b'&', rest.as_bytes()) {
            Some(at) => {
                out.push_str(&rest[..at]);
                rest = &rest[at..];
            }
            None => break,
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_entities_are_unescaped_once() {
        let cases = [
            ("a &amp; b", "a & b"),
            ("&lt;3 &gt;_&lt;", "<3 >_<"),
            ("&amp;amp;", "&amp;"),
            ("it&#39;s &#x263A; &quot;q&quot;", "it's \u{263a} \"q\""),
            ("AT&T and &unknown; &", "AT&T and &unknown; &"),
            ("no entities", "no entities"),
            // The ';' must be at most 10 bytes after the '&'.
            ("&#00000065;", "A"),
            ("&#000000065;", "&#000000065;"),
            ("é&#x1F600;é&", "é\u{1f600}é&"),
            ("&&amp;&", "&&&"),
            ("&é;&#xD800;", "&é;&#xD800;"),
        ];
        // Appended after what the string holds.
        for (input, expected) in cases {
            let mut out = String::from("x");
            unescape_html_into(input, &mut out);
            assert_eq!(out, format!("x{expected}"), "{input:?}");
        }
    }

    #[test]
    fn deleted_and_removed_texts_are_recognised() {
        for text in [None, Some(""), Some(" [deleted] "), Some("[removed]")] {
            assert!(is_deleted(text), "{text:?}");
        }
        assert!(!is_deleted(Some("hi")) && !is_deleted(Some("[deleted] but not quite")));
    }
}
