//! The records of the spill files: each dump line parsed once, in phase 1, and only the fields
//! threads need written back, length-prefixed, so phase 2 reads them without parsing JSON again
//! (a pushshift line carries dozens of other fields).
//!
//! A record: its length (u32 LE), then `C` and a comment's `id`, `parent_id`, `link_id`, `body`,
//! `author`, `subreddit`; or `S` and a submission's `id`, `title`, `selftext`, `subreddit`. A
//! string is its length plus one as a LEB128 varint (0 for none) and its bytes: most fields are
//! short, and the spill is written and read once per byte of input.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use super::records::{Comment, Submission};

/// The bytes a spill record adds to its line's: its fields are at most the line's bytes (JSON
/// unescaping only shrinks them), plus at most this many bytes of prefixes.
pub(super) const SPILL_PREFIX_BYTES: usize = 64;

/// The longest dump line the spill takes: its record's length must fit a u32.
pub(super) const MAX_LINE_BYTES: usize = u32::MAX as usize - SPILL_PREFIX_BYTES;

/// One dump line, borrowing its strings from the line where they hold no escapes.
#[derive(Deserialize)]
pub(super) struct DumpRecord<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub parent_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub link_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    body: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    author: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    subreddit: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub title: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    selftext: Option<Cow<'a, str>>,
}

/// `Option<Cow<str>>` that borrows (serde borrows a `Cow` field, not one inside an `Option`).
fn borrowed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text>::deserialize(deserializer)?.map(|t| t.0))
}

impl DumpRecord<'_> {
    /// A comment has a `link_id` or a `parent_id`; anything else is read as a submission.
    pub(super) fn is_comment(&self) -> bool {
        self.link_id.is_some() || self.parent_id.is_some()
    }

    /// Appends this record's spill form to `out`. The record is parsed from a line of at most
    /// [`MAX_LINE_BYTES`], so every length fits a u32.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        if self.is_comment() {
            out.push(b'C');
            for field in [
                &self.id,
                &self.parent_id,
                &self.link_id,
                &self.body,
                &self.author,
                &self.subreddit,
            ] {
                put_text(out, field.as_deref());
            }
        } else {
            out.push(b'S');
            for field in [&self.id, &self.title, &self.selftext, &self.subreddit] {
                put_text(out, field.as_deref());
            }
        }
        let len = u32::try_from(out.len() - start - 4).expect("line under MAX_LINE_BYTES");
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    let mut tag = text.map_or(0, |t| t.len() as u64 + 1);
    while tag >= 0x80 {
        out.push((tag as u8) | 0x80);
        tag >>= 7;
    }
    out.push(tag as u8);
    if let Some(text) = text {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A spill record read back.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SpillRecord<'a> {
    Comment(Comment<'a>),
    Submission(Submission),
}

/// Hands the records of a spill file's bytes to `each`, in order (no list of them is built:
/// a partition's comments are the one copy); `Err` describes where the bytes are damaged.
pub(super) fn decode_each<'a>(
    mut bytes: &'a [u8],
    mut each: impl FnMut(SpillRecord<'a>),
) -> Result<(), String> {
    let mut index = 0usize;
    while !bytes.is_empty() {
        let len = take_u32(&mut bytes)? as usize;
        if bytes.len() < len {
            return Err(format!("record {index} is cut short"));
        }
        let (mut record, rest) = bytes.split_at(len);
        bytes = rest;
        let decoded = decode(&mut record).map_err(|e| format!("record {index}: {e}"))?;
        if !record.is_empty() {
            return Err(format!("record {index} has trailing bytes"));
        }
        each(decoded);
        index += 1;
    }
    Ok(())
}

/// The records of a spill file's bytes, in order.
#[cfg(test)]
fn decode_all(bytes: &[u8]) -> Result<Vec<SpillRecord<'_>>, String> {
    let mut records = Vec::new();
    decode_each(bytes, |record| records.push(record))?;
    Ok(records)
}

fn decode<'a>(bytes: &mut &'a [u8]) -> Result<SpillRecord<'a>, String> {
    let kind = take(bytes, 1)?[0];
    match kind {
        b'C' => {
            let mut text = || take_text(bytes).map(|t| t.map(Cow::Borrowed));
            let id = text()?.ok_or("a comment without id")?;
            let (parent_id, link_id) = (text()?, text()?);
            let (body, author, subreddit) = (text()?, text()?, text()?);
            Ok(SpillRecord::Comment(Comment {
                id,
                parent_id,
                link_id,
                body,
                author,
                subreddit,
            }))
        }
        b'S' => {
            let mut text = || take_text(bytes).map(|t| t.map(str::to_owned));
            Ok(SpillRecord::Submission(Submission {
                id: text()?.ok_or("a submission without id")?,
                title: text()?,
                selftext: text()?,
                subreddit: text()?,
            }))
        }
        other => Err(format!("unknown record kind {other}")),
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err("cut short".into());
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, String> {
    Ok(u32::from_le_bytes(
        take(bytes, 4)?.try_into().expect("4 bytes"),
    ))
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(bytes, 1)?[0];
        value |= u64::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("a length of more than 64 bits".into())
}

fn take_text<'a>(bytes: &mut &'a [u8]) -> Result<Option<&'a str>, String> {
    let Some(len) = take_varint(bytes)?.checked_sub(1) else {
        return Ok(None);
    };
    let len = usize::try_from(len).map_err(|_| "a length past the address space")?;
    let raw = take(bytes, len)?;
    std::str::from_utf8(raw)
        .map(Some)
        .map_err(|_| "text that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_submissions_come_back_as_they_were_parsed() {
        let lines = [
            r#"{"id":"c1","parent_id":"t3_s","link_id":"t3_s","body":"a \"quoted\"\nline","author":"u","subreddit":"r","created_utc":"1500000000","score":3,"gilded":0}"#,
            &format!(
                r#"{{"id":"c3","link_id":"t3_s","body":"{}","author":""}}"#,
                "é".repeat(20_000)
            ),
            r#"{"id":"c2","parent_id":"t1_c1","body":null,"created_utc":{"odd":[1.5]}}"#,
            r#"{"id":"s","title":"T &amp; t","selftext":"","subreddit":"r","num_comments":2}"#,
        ];
        let mut spill = Vec::new();
        for line in lines {
            serde_json::from_str::<DumpRecord>(line)
                .unwrap()
                .encode(&mut spill);
        }
        let records = decode_all(&spill).unwrap();
        let comment = |line: &str| SpillRecord::Comment(serde_json::from_str(line).unwrap());
        assert_eq!(
            records,
            vec![
                comment(lines[0]),
                comment(lines[1]),
                comment(lines[2]),
                SpillRecord::Submission(serde_json::from_str(lines[3]).unwrap()),
            ]
        );
    }

    #[test]
    fn damaged_spill_bytes_are_an_error_not_a_panic() {
        let mut spill = Vec::new();
        serde_json::from_str::<DumpRecord>(r#"{"id":"c","link_id":"t3_s","body":"hello"}"#)
            .unwrap()
            .encode(&mut spill);
        for cut in 0..spill.len() {
            assert!(
                decode_all(&spill[..cut]).is_err() || cut == 0,
                "cut at {cut}"
            );
        }
        let mut wrong_kind = spill.clone();
        wrong_kind[4] = b'X';
        assert!(decode_all(&wrong_kind)
            .unwrap_err()
            .contains("unknown record kind"));
    }
}
