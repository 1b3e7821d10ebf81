//! Line-oriented formats: one document per line, blank-line separated documents (cc100),
//! and Wikitext-103 articles.

use super::lines::{Line, Lines};
use super::Example;
use crate::error::{Error, Result, SkipReason};

/// How lines group into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// Every line is a document.
    PerLine,
    /// Consecutive non-blank lines form a document; blank lines separate documents.
    BlankLineSeparated,
    /// A document starts at each top-level ` = Title = ` heading; text is kept verbatim.
    WikitextArticles,
}

/// True for a Wikitext-103 article heading (` = Title = `), false for sections (` = = S = = `).
pub(crate) fn is_wikitext_title(line: &str) -> bool {
    line.starts_with(" = ")
        && !line.starts_with(" = = ")
        && line.trim_end().ends_with(" =")
        && line.trim().len() > 2
}

/// Iterator of documents over lines.
pub(crate) struct TextRecords {
    lines: Lines,
    grouping: Grouping,
    /// Lines of the document being gathered.
    pending: String,
    /// First invalid line of the pending document; the document is rejected at its end.
    poisoned: Option<Error>,
    /// A fatal error to report after the pending document.
    fatal: Option<Error>,
    done: bool,
}

impl TextRecords {
    pub(crate) fn new(lines: Lines, grouping: Grouping) -> Self {
        Self {
            lines,
            grouping,
            pending: String::new(),
            poisoned: None,
            fatal: None,
            done: false,
        }
    }

    /// Ends the pending document: a poisoned one becomes its error, a blank one is dropped.
    fn flush(&mut self) -> Option<Result<Example>> {
        if let Some(err) = self.poisoned.take() {
            self.pending.clear();
            return Some(Err(err));
        }
        if self.pending.trim().is_empty() {
            self.pending.clear();
            return None;
        }
        let mut text = std::mem::take(&mut self.pending);
        if self.grouping == Grouping::BlankLineSeparated {
            text.pop(); // the joining '\n' after the last paragraph
        }
        Some(Ok(Example::document(text)))
    }

    fn push_line(&mut self, line: &str) {
        self.pending.push_str(line);
        self.pending.push('\n');
    }
}

impl Iterator for TextRecords {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return self.fatal.take().map(Err);
            }
            let line = match self.lines.next_line() {
                None => {
                    self.done = true;
                    if let Some(doc) = self.flush() {
                        return Some(doc);
                    }
                    continue;
                }
                Some(Err(fatal)) => {
                    self.done = true;
                    self.fatal = Some(fatal);
                    // The pending document may be cut short: it is lost with the stream.
                    self.pending.clear();
                    self.poisoned = None;
                    continue;
                }
                Some(Ok(line)) => line,
            };
            match (self.grouping, line) {
                (Grouping::PerLine, Line::Invalid(err)) => return Some(Err(err)),
                (Grouping::PerLine, Line::Text(text)) => {
                    if text.trim().is_empty() {
                        return Some(Err(Error::BadRecord {
                            location: self.lines.location(),
                            reason: SkipReason::Empty,
                            detail: "blank line".into(),
                        }));
                    }
                    return Some(Ok(Example::document(text)));
                }
                (_, Line::Invalid(err)) => {
                    self.poisoned.get_or_insert(err);
                    // Keep a placeholder so the document is not mistaken for blank.
                    self.pending.push('\u{FFFD}');
                }
                (Grouping::BlankLineSeparated, Line::Text(text)) => {
                    if text.trim().is_empty() {
                        if let Some(doc) = self.flush() {
                            return Some(doc);
                        }
                    } else {
                        self.push_line(&text);
                    }
                }
                (Grouping::WikitextArticles, Line::Text(text)) => {
                    let doc = if is_wikitext_title(&text) {
                        self.flush()
                    } else {
                        None
                    };
                    self.push_line(&text);
                    if doc.is_some() {
                        return doc;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wikitext_titles_are_top_level_headings_only() {
        let cases = [
            (" = Valkyria Chronicles III = ", true),
            (" = Robert Boulter = ", true),
            (" = = Career = = ", false),
            (" = = = 2000 – 2005 = = = ", false),
            (" The = sign = ", false),
            (" ", false),
            (" = ", false),
        ];
        for (line, expected) in cases {
            assert_eq!(is_wikitext_title(line), expected, "{line:?}");
        }
    }
}
