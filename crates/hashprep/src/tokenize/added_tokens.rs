//! A `tokenizer.json`'s added tokens, found in text as `tokenizers` finds them before it
//! pre-tokenizes: first the tokens marked not `normalized`, then the others in the stretches
//! left (with no normalizer, both on the text as written), each pass leftmost-longest. A
//! special token met while special tokens are ordinary text is passed over as text; the search
//! goes on after it, as the library's does.

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// A stretch of text, or an added token's id.
pub(crate) enum Piece<'t> {
    Text(&'t str),
    Token(u32),
}

/// One pass: its matcher and, per pattern, the token's id and whether it is special.
struct Pass {
    matcher: AhoCorasick,
    tokens: Vec<(u32, bool)>,
}

/// The added tokens, ready to be found.
#[derive(Default)]
pub(crate) struct AddedTokens {
    passes: Vec<Pass>,
    /// Every token of every pass, when there are two: a text in which none occurs is passed
    /// over after one scan rather than one per pass.
    any: Option<AhoCorasick>,
}

impl AddedTokens {
    /// The `added_tokens` of a `tokenizer.json`.
    ///
    /// # Errors
    /// An option the fast path does not reproduce (`lstrip`, `rstrip`, `single_word`), an empty
    /// or repeated token.
    pub(crate) fn from_json(added: &[Value]) -> Result<Self, String> {
        let mut groups: [Vec<(&str, u32, bool)>; 2] = [Vec::new(), Vec::new()];
        for token in added {
            let content = token["content"].as_str().unwrap_or_default();
            for option in ["lstrip", "rstrip", "single_word"] {
                if token[option] == true {
                    return Err(format!("added token {content:?} with {option}"));
                }
            }
            let id = (token["id"].as_u64()).and_then(|id| u32::try_from(id).ok());
            let Some(id) = id.filter(|_| !content.is_empty()) else {
                return Err(format!("added token {token} without content or id"));
            };
            let normalized = token["normalized"] == true;
            groups[usize::from(normalized)].push((content, id, token["special"] == true));
        }
        let mut contents: Vec<&str> = groups.iter().flatten().map(|t| t.0).collect();
        contents.sort_unstable();
        if let Some(twice) = contents.windows(2).find_map(|pair| match pair {
            [a, b] if a == b => Some(*a),
            _ => None,
        }) {
            return Err(format!("added token {twice:?} listed twice"));
        }
        let any = if groups.iter().all(|group| !group.is_empty()) {
            Some(AhoCorasick::new(&contents).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let passes = (groups.into_iter())
            .filter(|group| !group.is_empty())
            .map(|group| {
                let matcher = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(group.iter().map(|t| t.0))
                    .map_err(|e| e.to_string())?;
                let tokens = group
                    .iter()
                    .map(|&(_, id, special)| (id, special))
                    .collect();
                Ok(Pass { matcher, tokens })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { passes, any })
    }

    /// One special token (not normalized), as GPT-2 has.
    pub(crate) fn special(content: &str, id: u32) -> Self {
        let token = serde_json::json!({"id": id, "content": content, "special": true});
        Self::from_json(&[token]).expect("a special token of its own")
    }

    /// Calls `piece` with the stretches of `text` and the added tokens found in it, in order;
    /// special tokens are found only when `recognize_special`. Returns whether an added token's
    /// text may occur in `text`: false only where one scan for all of them found none.
    pub(crate) fn split<'t>(
        &self,
        text: &'t str,
        recognize_special: bool,
        piece: &mut dyn FnMut(Piece<'t>),
    ) -> bool {
        if self.any.as_ref().is_some_and(|any| !any.is_match(text)) {
            self.split_from(self.passes.len(), text, recognize_special, piece);
            return false;
        }
        self.split_from(0, text, recognize_special, piece);
        true
    }

    fn split_from<'t>(
        &self,
        pass: usize,
        text: &'t str,
        recognize_special: bool,
        piece: &mut dyn FnMut(Piece<'t>),
    ) {
        let Some(Pass { matcher, tokens }) = self.passes.get(pass) else {
            if !text.is_empty() {
                piece(Piece::Text(text));
            }
            return;
        };
        // A pass of special tokens only finds nothing while they are text (GPT-2's).
        if !recognize_special && tokens.iter().all(|&(_, special)| special) {
            return self.split_from(pass + 1, text, recognize_special, piece);
        }
        let mut rest = 0;
        for found in matcher.find_iter(text) {
            let (id, special) = tokens[found.pattern().as_usize()];
            if special && !recognize_special {
                continue;
            }
            self.split_from(
                pass + 1,
                &text[rest..found.start()],
                recognize_special,
                piece,
            );
            piece(Piece::Token(id));
            rest = found.end();
        }
        self.split_from(pass + 1, &text[rest..], recognize_special, piece);
    }
}
