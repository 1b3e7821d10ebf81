//! JSON Lines: one JSON object per line, the text in a named string field.

use super::lines::{Line, Lines};
use super::Example;
use crate::error::{Error, Result, SkipReason};

const JSON_LINES_EXPECTED: &str =
    "JSON Lines is expected, one JSON object per line (a JSON array file can be converted with `jq -c '.[]'`)";

/// The parser's message for a line that is not JSON, saying what is expected when the line
/// looks like the start of a JSON array or a pretty-printed document.
pub(crate) fn json_lines_error(line: &str, error: &serde_json::Error) -> String {
    let start = line.trim_start();
    if start.starts_with('[') || start == "{" {
        format!("{error}: {JSON_LINES_EXPECTED}")
    } else {
        error.to_string()
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Array(_) => "a JSON array",
        serde_json::Value::String(_) => "a JSON string",
        serde_json::Value::Number(_) => "a JSON number",
        serde_json::Value::Bool(_) => "a JSON boolean",
        serde_json::Value::Null => "JSON null",
        serde_json::Value::Object(_) => "a JSON object",
    }
}

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
            .map_err(|e| self.bad(SkipReason::MalformedJson, json_lines_error(text, &e)))?;
        if !value.is_object() {
            return Err(self.bad(
                SkipReason::MalformedJson,
                format!(
                    "{}, not an object: {JSON_LINES_EXPECTED}",
                    json_kind(&value)
                ),
            ));
        }
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
