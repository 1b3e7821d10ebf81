//! Many short texts, or their ids, back to back in one buffer: a Reddit partition holds millions
//! of comment bodies, and one allocation for all of them (rather than one per body) is cheaper
//! to fill, to read and to free, whichever thread frees it.

use std::ops::Range;

use super::SourceRef;
use crate::error::Result;

/// Where each item ends in a buffer of items back to back.
#[derive(Debug, Default)]
struct Ends(Vec<usize>);

impl Ends {
    fn with_capacity(items: usize) -> Self {
        Self(Vec::with_capacity(items))
    }

    fn range(&self, index: usize) -> Range<usize> {
        let start = index.checked_sub(1).map_or(0, |before| self.0[before]);
        start..self.0[index]
    }
}

/// Texts back to back in one string.
#[derive(Debug, Default)]
pub(crate) struct PackedTexts {
    text: String,
    ends: Ends,
}

impl PackedTexts {
    pub(crate) fn with_capacity(texts: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Ends::with_capacity(texts),
        }
    }

    /// Adds the text `write` appends to the string it is given; returns its index.
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut String)) -> usize {
        write(&mut self.text);
        self.ends.0.push(self.text.len());
        self.ends.0.len() - 1
    }

    pub(crate) fn get(&self, index: usize) -> &str {
        &self.text[self.ends.range(index)]
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.0.len()
    }

    /// Adds a source as two texts, its id then its subreddit; returns the id's index.
    pub(crate) fn push_source(&mut self, source: SourceRef) -> usize {
        let id = self.push_with(|s| s.push_str(source.id));
        self.push_with(|s| s.push_str(source.subreddit));
        id
    }

    /// The source [`Self::push_source`] added at `index`.
    pub(crate) fn source(&self, index: usize) -> SourceRef<'_> {
        SourceRef {
            id: self.get(index),
            subreddit: self.get(index + 1),
        }
    }

    /// Bytes of all the texts together.
    pub(crate) fn bytes(&self) -> usize {
        self.text.len()
    }
}

/// A text's ids and the number of special-token strings written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextIds<'a> {
    pub(crate) ids: &'a [u32],
    pub(crate) special_strings: u64,
}

/// The ids of texts back to back in one vector.
#[derive(Debug, Default)]
pub(crate) struct PackedIds {
    ids: Vec<u32>,
    ends: Ends,
    special_strings: Vec<u64>,
}

impl PackedIds {
    pub(crate) fn with_capacity(texts: usize, ids: usize) -> Self {
        Self {
            ids: Vec::with_capacity(ids),
            ends: Ends::with_capacity(texts),
            special_strings: Vec::with_capacity(texts),
        }
    }

    /// Adds the ids `encode` appends to the vector it is given, and the special-token strings
    /// it returns; returns their index.
    ///
    /// # Errors
    /// What `encode` returns (nothing is added).
    pub(crate) fn push_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u32>) -> Result<u64>,
    ) -> Result<usize> {
        let start = self.ids.len();
        match encode(&mut self.ids) {
            Ok(special_strings) => {
                self.ends.0.push(self.ids.len());
                self.special_strings.push(special_strings);
                Ok(self.ends.0.len() - 1)
            }
            Err(e) => {
                self.ids.truncate(start);
                Err(e)
            }
        }
    }

    pub(crate) fn get(&self, index: usize) -> TextIds<'_> {
        TextIds {
            ids: &self.ids[self.ends.range(index)],
            special_strings: self.special_strings[index],
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ends.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn texts_come_back_as_they_were_pushed_empty_ones_included() {
        let mut packed = PackedTexts::with_capacity(0, 0);
        let texts = ["", "héllo", "", "a\nb", ""];
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(packed.push_with(|s| s.push_str(text)), i);
        }
        assert_eq!(packed.len(), texts.len());
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(packed.get(i), *text);
        }
        let source = SourceRef {
            id: "c1",
            subreddit: "rust",
        };
        let at = packed.push_source(source);
        assert_eq!((at, packed.source(at)), (texts.len(), source));
    }

    #[test]
    fn a_failed_encoding_adds_nothing() {
        let mut packed = PackedIds::default();
        let first = packed.push_with(|ids| {
            ids.extend([1, 2]);
            Ok(0)
        });
        assert_eq!(first.unwrap(), 0);
        let failed = packed.push_with(|ids| {
            ids.push(9);
            Err(Error::Internal("no".into()))
        });
        assert!(failed.is_err());
        let second = packed.push_with(|ids| {
            ids.push(3);
            Ok(2)
        });
        assert_eq!(second.unwrap(), 1);
        assert_eq!(packed.len(), 2);
        assert_eq!(
            packed.get(0),
            TextIds {
                ids: &[1, 2],
                special_strings: 0
            }
        );
        assert_eq!(
            packed.get(1),
            TextIds {
                ids: &[3],
                special_strings: 2
            }
        );
    }
}
