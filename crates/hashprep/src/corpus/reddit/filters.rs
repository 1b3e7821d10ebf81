//! Optional filters on responses, off by default: the rules of "Recipes for building an
//! open-domain chatbot" (Roller et al., 2020) and subreddit allow/deny lists.

use serde::{Deserialize, Serialize};

use super::records::Comment;
use crate::error::SkipReason;

/// Which responses to drop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedditFilter {
    /// Apply the Recipes rules (length, URLs, non-ASCII start, bots, depth, response tokens).
    #[serde(default)]
    pub recipe: bool,
    /// Recipes: responses longer than this many tokens are dropped.
    #[serde(default = "default_max_response_tokens")]
    pub max_response_tokens: usize,
    /// Keep only these subreddits (case-insensitive); empty keeps all.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Drop these subreddits (case-insensitive).
    #[serde(default)]
    pub deny: Vec<String>,
}

fn default_max_response_tokens() -> usize {
    128
}

/// Recipes: the deepest comment kept (a top-level comment has depth 1).
pub(crate) const MAX_DEPTH: usize = 7;
/// Recipes: longest body kept, in characters.
pub(crate) const MAX_CHARS: usize = 2048;
/// Recipes: shortest body kept, in characters.
pub(crate) const MIN_CHARS: usize = 5;

impl RedditFilter {
    /// Why the response `body` of `comment` is dropped, if it is; `depth` is asked for only
    /// when the recipe rules get that far.
    pub fn reject(
        &self,
        comment: &Comment,
        body: &str,
        depth: impl FnOnce() -> usize,
    ) -> Option<SkipReason> {
        let subreddit = comment.subreddit.as_deref().unwrap_or_default();
        let listed = |list: &[String]| list.iter().any(|s| s.eq_ignore_ascii_case(subreddit));
        if (!self.allow.is_empty() && !listed(&self.allow)) || listed(&self.deny) {
            return Some(SkipReason::FilterSubreddit);
        }
        if !self.recipe {
            return None;
        }
        let chars = body.chars().count();
        let author = comment
            .author
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if chars > MAX_CHARS {
            Some(SkipReason::FilterTooLong)
        } else if chars < MIN_CHARS {
            Some(SkipReason::FilterTooShort)
        } else if ["http://", "https://", "www."]
            .iter()
            .any(|u| body.contains(u))
        {
            Some(SkipReason::FilterUrl)
        } else if !body.chars().next().is_some_and(|c| c.is_ascii()) {
            Some(SkipReason::FilterNonAscii)
        } else if author.ends_with("bot") || author == "automoderator" {
            Some(SkipReason::FilterBot)
        } else if depth() > MAX_DEPTH {
            Some(SkipReason::FilterDepth)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(author: &str, subreddit: &str) -> Comment<'static> {
        serde_json::from_value(
            serde_json::json!({"id": "x", "author": author, "subreddit": subreddit}),
        )
        .unwrap()
    }

    #[test]
    fn recipe_rules_and_lists() {
        let recipe = RedditFilter {
            recipe: true,
            ..RedditFilter::default()
        };
        let ok = comment("alice", "AskReddit");
        let cases = [
            (&recipe, &ok, "a perfectly fine reply", 3, None),
            (&recipe, &ok, "hey", 1, Some(SkipReason::FilterTooShort)),
            (
                &recipe,
                &ok,
                &"x".repeat(2049),
                1,
                Some(SkipReason::FilterTooLong),
            ),
            (
                &recipe,
                &ok,
                "see https://example.com",
                1,
                Some(SkipReason::FilterUrl),
            ),
            (
                &recipe,
                &ok,
                "éclair is tasty",
                1,
                Some(SkipReason::FilterNonAscii),
            ),
            (
                &recipe,
                &comment("helper_Bot", "AskReddit"),
                "beep boop reply",
                1,
                Some(SkipReason::FilterBot),
            ),
            (
                &recipe,
                &ok,
                "a deep reply here",
                8,
                Some(SkipReason::FilterDepth),
            ),
        ];
        for (filter, c, body, depth, expected) in cases {
            assert_eq!(filter.reject(c, body, || depth), expected, "{body:.20}");
        }
        let lists = RedditFilter {
            allow: vec!["askreddit".into()],
            deny: vec!["AskReddit".into()],
            ..RedditFilter::default()
        };
        assert_eq!(
            lists.reject(&ok, "fine", || 1),
            Some(SkipReason::FilterSubreddit)
        );
        let allow = RedditFilter {
            allow: vec!["askreddit".into()],
            ..RedditFilter::default()
        };
        assert_eq!(allow.reject(&ok, "hey", || 1), None, "recipe rules are off");
        assert_eq!(
            allow.reject(&comment("a", "rust"), "fine", || 1),
            Some(SkipReason::FilterSubreddit)
        );
    }
}
