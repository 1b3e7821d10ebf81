//! Arrow IPC shards: one row per example (`tokens`, `prefix_len`), written atomically with a
//! running checksum, read back by memory map without copying; and the `manifest.json` that
//! lists them.

pub(crate) mod journal;
mod lock;
mod manifest;
pub(crate) mod output_dir;
mod reader;
mod sink;
mod writer;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

pub use lock::OutputLock;
pub(crate) use lock::ReadLock;
pub use manifest::{Manifest, ShardInfo, TokenizerInfo, Totals};
pub(crate) use manifest::{MANIFEST_FILE, MANIFEST_VERSION};
pub use reader::{DocTokens, ShardReader};
pub use writer::ShardWriter;

/// Integer type of the token ids in a shard: the narrowest that holds the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenWidth {
    /// `uint16`: vocabularies of at most 65,536 ids.
    Uint16,
    /// `uint32`: anything larger.
    Uint32,
}

impl TokenWidth {
    /// The narrowest width for `vocab_size` ids.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenWidth::Uint16
        } else {
            TokenWidth::Uint32
        }
    }

    /// The Arrow type of one id.
    pub fn data_type(self) -> DataType {
        match self {
            TokenWidth::Uint16 => DataType::UInt16,
            TokenWidth::Uint32 => DataType::UInt32,
        }
    }

    /// Bytes per id.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::Uint16 => 2,
            TokenWidth::Uint32 => 4,
        }
    }
}

impl std::fmt::Display for TokenWidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenWidth::Uint16 => "uint16",
            TokenWidth::Uint32 => "uint32",
        })
    }
}

/// Column names of a shard.
/// The copy of the tokenizer next to the shards.
pub(crate) const TOKENIZER_FILE: &str = "tokenizer.json";

/// The file name of shard `index`.
pub(crate) fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.arrow")
}

pub(crate) const TOKENS_COLUMN: &str = "tokens";
/// Number of leading context tokens of a dialogue example (0 for plain text).
pub(crate) const PREFIX_LEN_COLUMN: &str = "prefix_len";

/// Optional columns of dialogue shards: the responding record's id and its subreddit.
pub(crate) const ID_COLUMN: &str = "id";
/// See [`ID_COLUMN`].
pub(crate) const SUBREDDIT_COLUMN: &str = "subreddit";

/// The Arrow schema of a shard with ids of `width`; `with_sources` adds `id` and `subreddit`.
pub(crate) fn shard_schema(
    width: TokenWidth,
    tokenizer_fingerprint: &str,
    with_sources: bool,
) -> Arc<Schema> {
    let item = Field::new("item", width.data_type(), false);
    let metadata = [
        ("hashprep.schema".to_owned(), "shard".to_owned()),
        ("hashprep.version".to_owned(), MANIFEST_VERSION.to_string()),
        (
            "hashprep.tokenizer_fingerprint".to_owned(),
            tokenizer_fingerprint.to_owned(),
        ),
    ];
    let mut fields = vec![
        Field::new(TOKENS_COLUMN, DataType::List(Arc::new(item)), false),
        Field::new(PREFIX_LEN_COLUMN, DataType::UInt32, false),
    ];
    if with_sources {
        fields.push(Field::new(ID_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(SUBREDDIT_COLUMN, DataType::Utf8, false));
    }
    Arc::new(
        Schema::new(fields).with_metadata(
            metadata
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_is_the_narrowest_that_fits() {
        assert_eq!(TokenWidth::for_vocab(8008), TokenWidth::Uint16);
        assert_eq!(TokenWidth::for_vocab(65_536), TokenWidth::Uint16);
        assert_eq!(TokenWidth::for_vocab(65_537), TokenWidth::Uint32);
        assert_eq!(TokenWidth::for_vocab(267_735), TokenWidth::Uint32);
    }
}
