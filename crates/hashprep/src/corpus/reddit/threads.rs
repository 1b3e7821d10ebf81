//! Thread reconstruction: each comment whose body survives becomes a dialogue example, its
//! context the chain of ancestors (nearest last), starting from the submission when it is known.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasher;

use super::filters::RedditFilter;
use super::records::{is_deleted, unescape_html_into, Comment, Submission};
use crate::corpus::dialogue::Dialogue;
use crate::corpus::{PackedTexts, SharedTexts, SourceRef};
use crate::error::SkipReason;

/// The examples of a set of threads, their turns named by index into `texts` (each comment
/// body and submission text at most once).
#[derive(Debug)]
pub(crate) struct ThreadDialogues {
    pub texts: SharedTexts,
    pub dialogues: Vec<Dialogue>,
}

/// A dialogue with its texts copied out, to compare examples across partitions in tests.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedDialogue {
    pub id: String,
    pub subreddit: String,
    pub context: Vec<String>,
    pub response: String,
}

#[cfg(test)]
impl ThreadDialogues {
    pub(crate) fn resolved(&self) -> Vec<ResolvedDialogue> {
        self.dialogues
            .iter()
            .map(|d| ResolvedDialogue {
                id: self.texts.source(d).id.to_owned(),
                subreddit: self.texts.source(d).subreddit.to_owned(),
                context: (self.texts.context(d).iter())
                    .map(|&i| self.texts.text(i).to_owned())
                    .collect(),
                response: self.texts.text(d.response).to_owned(),
            })
            .collect()
    }
}

/// What happened to the comments of a thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ThreadStats {
    /// Examples produced.
    pub examples: u64,
    /// Comments whose own body is deleted or removed (no example).
    pub deleted: u64,
    /// Comments seen again after their first occurrence (the first is kept).
    pub duplicates: u64,
    /// Examples whose context stops at a parent that is not among the inputs.
    pub orphans: u64,
    /// Comments on, or descending from, a parent cycle (no example).
    pub cycles: u64,
    /// Responses dropped by a filter, by reason.
    pub filtered: std::collections::BTreeMap<SkipReason, u64>,
}

impl ThreadStats {
    #[cfg(test)]
    /// Adds another thread's counts.
    pub(crate) fn add(&mut self, other: &ThreadStats) {
        self.examples += other.examples;
        self.deleted += other.deleted;
        self.duplicates += other.duplicates;
        self.orphans += other.orphans;
        self.cycles += other.cycles;
        for (reason, n) in &other.filtered {
            *self.filtered.entry(*reason).or_default() += n;
        }
    }
}

/// Comment id -> its first position in the comments.
type Index<'a> = HashMap<&'a str, usize, ahash::RandomState>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ancestry {
    Unknown,
    Visiting,
    Rooted,
    Cyclic,
}

/// The thread of a comment: its `link_id` without the `t3_` prefix.
fn thread<'a>(comment: &'a Comment) -> Option<&'a str> {
    let link = comment.link_id.as_deref()?;
    Some(link.strip_prefix("t3_").unwrap_or(link))
}

/// What a comment's `parent_id` names, resolved once per comment so that walking a chain of
/// ancestors reads this small array, not each ancestor's record.
#[derive(Clone, Copy)]
enum Parent<'a> {
    /// A comment of the same thread, at this index.
    Comment(usize),
    /// A comment (`t1_`) that is not among the inputs, or is of another thread.
    Missing,
    /// A submission, by id (`t3_` stripped).
    Submission(&'a str),
    /// No parent, or one of another kind.
    None,
}

/// A comment's parent, a comment looked up within the comment's own thread only: in real dumps
/// a `parent_id` can name a comment of another thread, which must not become this one's
/// context (and whether it was found would depend on how threads share partitions).
fn parent_of<'a>(comment: &'a Comment, comments: &[Comment], index: &Index) -> Parent<'a> {
    let Some(id) = comment.parent_id.as_deref() else {
        return Parent::None;
    };
    if let Some(parent) = id.strip_prefix("t1_") {
        let found =
            (index.get(parent).copied()).filter(|&p| thread(&comments[p]) == thread(comment));
        found.map_or(Parent::Missing, Parent::Comment)
    } else {
        id.strip_prefix("t3_")
            .map_or(Parent::None, Parent::Submission)
    }
}

/// Marks every comment whose chain of parents loops (O(n) over the thread).
fn cyclic(parents: &[Option<usize>]) -> Vec<bool> {
    let mut state = vec![Ancestry::Unknown; parents.len()];
    let mut path = Vec::new();
    for start in 0..parents.len() {
        let mut at = Some(start);
        let outcome = loop {
            let Some(i) = at else { break Ancestry::Rooted };
            match state[i] {
                Ancestry::Rooted | Ancestry::Cyclic => break state[i],
                Ancestry::Visiting => break Ancestry::Cyclic,
                Ancestry::Unknown => {
                    state[i] = Ancestry::Visiting;
                    path.push(i);
                    at = parents[i];
                }
            }
        };
        for i in path.drain(..) {
            state[i] = outcome;
        }
    }
    state.into_iter().map(|s| s == Ancestry::Cyclic).collect()
}

/// The examples of a set of comments (one thread or several), in input order. Duplicate ids
/// keep their first occurrence; a deleted or removed ancestor ends the context; at most
/// `max_turns` context turns are kept, the nearest ones; the submission's title (and self
/// text) opens the context when the submission is in `submissions` and within reach.
pub(crate) fn thread_examples<S: BuildHasher>(
    comments: &[Comment],
    submissions: &HashMap<String, Submission, S>,
    max_turns: usize,
    filter: &RedditFilter,
    stats: &mut ThreadStats,
) -> ThreadDialogues {
    let (index, first) = index_comments(comments, stats);
    // Each comment's parent, looked up once.
    let links: Vec<Parent> = comments
        .iter()
        .map(|c| parent_of(c, comments, &index))
        .collect();
    let parents: Vec<Option<usize>> = (links.iter())
        .map(|link| match *link {
            Parent::Comment(p) => Some(p),
            _ => None,
        })
        .collect();
    let looping = cyclic(&parents);
    let deleted: Vec<bool> = comments
        .iter()
        .map(|c| is_deleted(c.body.as_deref()))
        .collect();
    let body_bytes = (first.iter())
        .map(|&i| comments[i].body.as_deref().map_or(0, str::len))
        .sum();
    let mut texts = PackedTexts::with_capacity(first.len(), body_bytes);
    let mut turns = Vec::with_capacity(first.len() * 2);
    let mut dialogues = Vec::with_capacity(first.len());
    let mut sources = PackedTexts::with_capacity(2 * first.len(), 16 * first.len());
    // A body is a context turn of each reply below it: unescaped and stored once.
    let mut body_slots: Vec<Option<usize>> = vec![None; comments.len()];
    let mut body = |i: usize, texts: &mut PackedTexts| -> usize {
        *body_slots[i].get_or_insert_with(|| {
            let body = comments[i].body.as_deref().unwrap_or_default();
            texts.push_with(|text| unescape_html_into(body, text))
        })
    };
    let mut submission_slots: HashMap<&str, Option<usize>, ahash::RandomState> = HashMap::default();
    for i in first {
        let comment = &comments[i];
        if deleted[i] {
            stats.deleted += 1;
            continue;
        }
        if looping[i] {
            stats.cycles += 1;
            continue;
        }
        let response = body(i, &mut texts);
        let response_text = texts.get(response);
        if let Some(reason) = filter.reject(comment, response_text, || depth(i, &parents)) {
            *stats.filtered.entry(reason).or_default() += 1;
            continue;
        }
        let mut text_bytes = response_text.len();
        let first_turn = turns.len(); // nearest first, reversed below
        let mut link = links[i];
        while turns.len() - first_turn < max_turns {
            match link {
                Parent::Comment(p) => {
                    if deleted[p] {
                        break;
                    }
                    turns.push(body(p, &mut texts));
                    link = links[p];
                }
                Parent::Missing => {
                    stats.orphans += 1;
                    break;
                }
                Parent::Submission(submission) => {
                    let slot = *submission_slots.entry(submission).or_insert_with(|| {
                        push_submission_text(submissions.get(submission)?, &mut texts)
                    });
                    turns.extend(slot);
                    break;
                }
                Parent::None => break,
            }
        }
        turns[first_turn..].reverse();
        text_bytes += (turns[first_turn..].iter())
            .map(|&t| texts.get(t).len())
            .sum::<usize>();
        stats.examples += 1;
        dialogues.push(Dialogue {
            source: sources.push_source(SourceRef {
                id: &comment.id,
                subreddit: comment.subreddit.as_deref().unwrap_or_default(),
            }),
            context: first_turn..turns.len(),
            response,
            text_bytes,
        });
    }
    ThreadDialogues {
        texts: SharedTexts::new(texts, turns, sources),
        dialogues,
    }
}

/// Each comment id's first position, and the first positions in input order; every later copy
/// of an id counts as a duplicate.
fn index_comments<'a>(comments: &'a [Comment], stats: &mut ThreadStats) -> (Index<'a>, Vec<usize>) {
    let mut index = Index::with_capacity_and_hasher(comments.len(), ahash::RandomState::new());
    let mut first = Vec::with_capacity(comments.len());
    for (i, comment) in comments.iter().enumerate() {
        match index.entry(comment.id.as_ref()) {
            Entry::Occupied(_) => stats.duplicates += 1,
            Entry::Vacant(slot) => {
                slot.insert(i);
                first.push(i);
            }
        }
    }
    (index, first)
}

/// 1 for a top-level comment, plus one per comment ancestor found (at most 64 are followed).
fn depth(comment: usize, parents: &[Option<usize>]) -> usize {
    let mut depth = 1;
    let mut at = comment;
    while let Some(p) = parents[at] {
        depth += 1;
        at = p;
        if depth > 64 {
            break;
        }
    }
    depth
}

/// Adds the title, and the self text when it survives, as one turn; `None` when neither does.
fn push_submission_text(submission: &Submission, texts: &mut PackedTexts) -> Option<usize> {
    let parts = [&submission.title, &submission.selftext]
        .map(|text| text.as_deref().filter(|t| !is_deleted(Some(t))));
    if parts.iter().all(Option::is_none) {
        return None;
    }
    Some(texts.push_with(|text| {
        for (i, part) in parts.into_iter().flatten().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            unescape_html_into(part, text);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, parent: &str, body: &str) -> Comment<'static> {
        serde_json::from_value(serde_json::json!({
            "id": id, "parent_id": parent, "link_id": "t3_s", "body": body, "subreddit": "rust"
        }))
        .unwrap()
    }

    /// The dialogues of `comments` under submission `s` ("Title &amp; more", "self").
    fn dialogues(comments: &[Comment], max_turns: usize) -> (ThreadDialogues, ThreadStats) {
        let submission: Submission = serde_json::from_value(
            serde_json::json!({"id": "s", "title": "Title &amp; more", "selftext": "self"}),
        )
        .unwrap();
        let submissions = HashMap::from([("s".to_owned(), submission)]);
        let mut stats = ThreadStats::default();
        let out = thread_examples(
            comments,
            &submissions,
            max_turns,
            &RedditFilter::default(),
            &mut stats,
        );
        (out, stats)
    }

    fn run(comments: &[Comment], max_turns: usize) -> (Vec<ResolvedDialogue>, ThreadStats) {
        let (out, stats) = dialogues(comments, max_turns);
        (out.resolved(), stats)
    }

    #[test]
    fn each_body_and_submission_text_is_stored_once() {
        let comments = [
            c("a", "t3_s", "A"),
            c("b", "t1_a", "B"),
            c("c", "t1_b", "C"),
            c("d", "t3_s", "D"),
        ];
        let (out, _) = dialogues(&comments, 7);
        let mut texts: Vec<&str> = (0..out.texts.len()).map(|i| out.texts.text(i)).collect();
        texts.sort_unstable();
        assert_eq!(texts, ["A", "B", "C", "D", "Title & more\nself"]);
        assert_eq!(out.texts.context(&out.dialogues[2]).len(), 3);
        assert_eq!(
            out.texts.context(&out.dialogues[3]),
            out.texts.context(&out.dialogues[0])
        );
    }

    fn find<'a>(examples: &'a [ResolvedDialogue], id: &str) -> &'a ResolvedDialogue {
        examples.iter().find(|e| e.id == id).unwrap()
    }

    #[test]
    fn deep_chain_starts_at_the_submission_and_keeps_the_nearest_turns() {
        let comments = [
            c("a", "t3_s", "A"),
            c("b", "t1_a", "B &lt;3"),
            c("c", "t1_b", "C"),
            c("d", "t1_c", "D"),
        ];
        let (examples, stats) = run(&comments, 7);
        assert_eq!(stats.examples, 4);
        let d = find(&examples, "d");
        assert_eq!(d.context, vec!["Title & more\nself", "A", "B <3", "C"]);
        assert_eq!(d.response, "D");
        assert_eq!(find(&examples, "a").context, vec!["Title & more\nself"]);
        let (short, _) = run(&comments, 2);
        assert_eq!(find(&short, "d").context, vec!["B <3", "C"]);
    }

    #[test]
    fn deleted_ancestors_end_the_context_and_deleted_comments_give_no_example() {
        let comments = [
            c("a", "t3_s", "A"),
            c("b", "t1_a", "[removed]"),
            c("c", "t1_b", "C"),
            c("d", "t1_c", "[deleted]"),
        ];
        let (examples, stats) = run(&comments, 7);
        assert_eq!(stats.deleted, 2);
        assert_eq!(find(&examples, "c").context, Vec::<String>::new());
        assert_eq!(examples.len(), 2);
    }

    #[test]
    fn a_parent_in_another_thread_is_missing_from_this_one() {
        let mut other: Comment = c("b", "t1_a", "in thread t");
        other.link_id = Some("t3_t".into());
        let comments = [c("a", "t3_s", "A"), other, c("d", "t1_a", "D")];
        let (examples, stats) = run(&comments, 7);
        assert_eq!(stats.orphans, 1);
        assert_eq!(find(&examples, "b").context, Vec::<String>::new());
        assert_eq!(
            find(&examples, "d").context,
            vec!["Title & more\nself", "A"]
        );
    }

    #[test]
    fn ids_and_threads_too_long_to_pack_resolve_as_short_ones_do() {
        let long = |id: &str| format!("{id}-an-id-longer-than-fifteen-bytes");
        let in_thread = |id: String, parent: String, link: &str| {
            let body = format!("{} says", &id[..1]);
            let mut comment = c("x", "t3_s", &body);
            (comment.id, comment.parent_id) = (id.into(), Some(parent.into()));
            comment.link_id = Some(link.to_owned().into());
            comment
        };
        let thread = "t3_a-thread-id-longer-than-fifteen";
        let comments = [
            in_thread(long("a"), "t3_s".into(), thread),
            in_thread(long("b"), format!("t1_{}", long("a")), thread),
            in_thread(long("b"), format!("t1_{}", long("a")), thread),
            in_thread("c".into(), format!("t1_{}", long("b")), thread),
            // The same parent id, in another (short) thread: missing from this one.
            in_thread("d".into(), format!("t1_{}", long("b")), "t3_s"),
        ];
        let (examples, stats) = run(&comments, 7);
        assert_eq!((stats.duplicates, stats.orphans), (1, 1));
        let title = "Title & more\nself";
        assert_eq!(
            find(&examples, "c").context,
            vec![title, "a says", "b says"]
        );
        assert_eq!(find(&examples, "d").context, Vec::<String>::new());
    }

    #[test]
    fn duplicates_orphans_and_cycles_are_counted() {
        let comments = [
            c("a", "t3_s", "A"),
            c("a", "t3_s", "A again"),
            c("o", "t1_missing", "orphan"),
            c("x", "t1_y", "X"),
            c("y", "t1_x", "Y"),
            c("z", "t1_x", "below the cycle"),
        ];
        let (examples, stats) = run(&comments, 7);
        assert_eq!((stats.duplicates, stats.orphans, stats.cycles), (1, 1, 3));
        assert_eq!(find(&examples, "a").response, "A");
        assert_eq!(find(&examples, "o").context, Vec::<String>::new());
        assert_eq!(
            examples.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a", "o"]
        );
    }
}
