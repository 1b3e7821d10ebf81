#!/usr/bin/env python3
"""Writes Wikitext-103 text as a pushshift.io Reddit comment dump of threads, each paragraph a
thread and each sentence a comment replying to the sentence before it, so that `hashprep
tokenize --format reddit` makes every sentence a dialogue example whose context is the sentences
before it (up to `max_context_turns`). The paper's sequence-to-sequence pretraining on
RoBERTa+cc100en arranges its text the same way ("splitting by sentence to predict the next
turn"); the responses continue their contexts but do not answer them as Reddit replies do.

    python3 scripts/wikitext_threads.py data/wikitext-103/wiki.valid.tokens out/wikitext-threads/RC_wikitext-valid
    python3 scripts/wikitext_threads.py data/wikitext-103/wiki.test.tokens out/wikitext-threads/RC_wikitext-test-0 2 0

With `EVERY OFFSET`, only the paragraphs whose number is OFFSET modulo EVERY (two disjoint halves
of one file: a validation and a test split). Deterministic: the same input writes the same bytes.
"""

import json
import pathlib
import re
import sys

# Wikitext-103 is tokenized: a sentence ends with " ." (or " ?" / " !") before a space.
SENTENCE_END = re.compile(r"(?<= [.?!]) ")


def threads(text: str):
    """The sentences of each paragraph (headings and blank lines left out)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        sentences = [s.strip() for s in SENTENCE_END.split(line)]
        sentences = [s for s in sentences if len(s.split()) >= 3]
        if sentences:
            yield sentences


def main() -> None:
    if len(sys.argv) not in (3, 5):
        sys.exit(f"usage: {sys.argv[0]} WIKITEXT_FILE OUT_DUMP [EVERY OFFSET]")
    source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    every, offset = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) == 5 else (1, 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for p, sentences in enumerate(threads(source.read_text(encoding="utf-8"))):
        if p % every != offset:
            continue
        for s, body in enumerate(sentences):
            parent = f"t3_p{p}" if s == 0 else f"t1_p{p}s{s - 1}"
            record = {"id": f"p{p}s{s}", "parent_id": parent, "link_id": f"t3_p{p}",
                      "body": body, "subreddit": "wikitext", "created_utc": 0}
            lines.append(json.dumps(record, ensure_ascii=False))
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{out}: {len(lines)} comments")


if __name__ == "__main__":
    main()
