//! TOML text plus `--set key.path=value` overrides, applied before the config is typed and
//! checked: what run and sweep configs share.

use std::path::Path;

use crate::error::{ConfigError, Result};

/// Parses TOML `text` (named `origin` in errors), applies `overrides`, and deserializes the
/// result.
///
/// # Errors
/// The text does not parse, an override names no setting, or the result does not fit `T`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &Path,
    overrides: &[String],
) -> Result<T> {
    // The parser's messages end in a newline.
    let syntax = |message: String| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: message.trim_end().to_owned(),
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| syntax(e.to_string()))?;
    let mut root = toml::Value::Table(table);
    for item in overrides {
        apply_override(&mut root, item).map_err(|problem| ConfigError::Override {
            item: item.clone(),
            problem,
        })?;
    }
    root.try_into()
        .map_err(|e: toml::de::Error| syntax(e.to_string()))
}

/// Sets `key.path=value` in `root`. Array elements are addressed by index
/// (`model.sparse.0.kind=switch`). The value is parsed as TOML, else taken as a string.
fn apply_override(root: &mut toml::Value, item: &str) -> std::result::Result<(), String> {
    let (key, raw) = item
        .split_once('=')
        .ok_or("expected key=value, e.g. train.steps=200")?;
    let value = parse_value(raw.trim());
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields one part");
    let mut node = root;
    for part in parents {
        node = child(node, part)?;
    }
    match node {
        toml::Value::Table(t) => {
            t.insert((*last).to_owned(), value);
        }
        toml::Value::Array(a) => {
            let slot = a
                .get_mut(index(last)?)
                .ok_or(format!("no element {last}"))?;
            *slot = value;
        }
        _ => return Err(format!("`{key}`: its parent is not a table")),
    }
    Ok(())
}

fn index(part: &str) -> std::result::Result<usize, String> {
    part.parse()
        .map_err(|_| format!("`{part}` is not an index"))
}

fn child<'a>(
    node: &'a mut toml::Value,
    part: &str,
) -> std::result::Result<&'a mut toml::Value, String> {
    match node {
        toml::Value::Table(t) => Ok(t
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))),
        toml::Value::Array(a) => a.get_mut(index(part)?).ok_or(format!("no element {part}")),
        _ => Err(format!("`{part}` is not a table")),
    }
}

fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    toml::from_str::<toml::Table>(&wrapped)
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}
