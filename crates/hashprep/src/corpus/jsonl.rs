//! JSON Lines: one JSON object per line, the text in a named string field.

use super::lines::{Line, Lines};
use super::Example;
use crate::error::{Error, Result, SkipReason};

/// Iterator of documents over JSON lines.
pub(crate) struct JsonlRecords {
    lines: Lines,
    text_field: String,
}

impl JsonlRecords {
    pub(crate) fn new(lines: Lines, text_field: String) -> Self {
        Self { lines, text_field }
    }

    fn bad(&self, reason: SkipReason, detail: String) -> Error {
        Error::BadRecord {
            location: self.lines.location(),
            reason,
            detail,
        }
    }

    fn parse(&self, text: &str) -> Result<Example> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| self.bad(SkipReason::MalformedJson, e.to_string()))?;
        let field = value.get(&self.text_field).ok_or_else(|| {
            self.bad(
                SkipReason::MissingField,
                format!("no field {:?}", self.text_field),
            )
        })?;
        let text = field.as_str().ok_or_else(|| {
            self.bad(
                SkipReason::MissingField,
                format!("field {:?} is not a string", self.text_field),
            )
        })?;
        if text.trim().is_empty() {
            return Err(self.bad(
                SkipReason::Empty,
                format!("field {:?} is empty", self.text_field),
            ));
        }
        Ok(Example::document(text.to_owned()))
    }
}

impl Iterator for JsonlRecords {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            return match self.lines.next_line()? {
                Err(fatal) => Some(Err(fatal)),
                Ok(Line::Invalid(err)) => Some(Err(err)),
                Ok(Line::Text(text)) if text.trim().is_empty() => continue,
                Ok(Line::Text(text)) => Some(self.parse(&text)),
            };
        }
    }
}
