//! The scanner's pieces against Oniguruma's on each family's split pattern.

use onig::Regex;

use super::{deepseek, SplitPattern};

/// Split patterns of the byte-level BPE families (as their `tokenizer.json` files hold them).
pub(crate) const FAMILIES: [(&str, &str); 8] = [
    (
        "gpt2",
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    ),
    (
        "llama3",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    (
        "qwen2",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    (
        "o200k",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    ("deepseek-digits", deepseek::PATTERNS[0]),
    ("deepseek-cjk", deepseek::PATTERNS[1]),
    ("deepseek", deepseek::PATTERNS[2]),
    (
        "lazy",
        r"a+?b|\d{2,}?x|(?=x)\w+|x?y{2,3}?|(?:ab|a)c|(?i:'ll|'s)?z",
    ),
];

/// Oniguruma's pieces under `Isolated`: its matches and the stretches between them.
fn reference(regex: &Regex, text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut last = 0;
    for (start, end) in regex.find_iter(text) {
        if last < start {
            pieces.push(text[last..start].to_owned());
        }
        if start < end {
            pieces.push(text[start..end].to_owned());
        }
        last = end;
    }
    if last < text.len() {
        pieces.push(text[last..].to_owned());
    }
    pieces
}

fn pieces(pattern: &SplitPattern, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    pattern.split(text, |p| out.push(p.to_owned()));
    out
}

/// Texts that meet the patterns' corners: scripts, digits, contractions, whitespace runs.
pub(crate) const SAMPLES: [&str; 12] = [
    "Hello world, it's   a test.\n\nDon'T you'LL SEE 'S ''s",
    "numbers 1234567 3.14159 ١٢٣٤ ⅻ ½ ９８７６５ 12ab34",
    "日本語のテキスト、カタカナ。漢字とひらがな 中文字符 한국어",
    "العربية مع أرقام ٣٤٥ and עברית\u{200f} mixed",
    "हिन्दी देवनागरी ภาษาไทย Русский текст",
    "emoji 👨‍👩‍👧‍👦 👍🏽 🇫🇷 e\u{301} n\u{303}",
    "tabs\tand\r\nwindows\r\n\r\n  lines  \t\n trailing   ",
    "code: fn main() { x += 1; } // `backticks` $var @user #tag",
    "ſ ß ﬁ ﬃ K Å ǅ ᾼ İ ı",
    "\u{a0}nbsp\u{2003}em\u{3000}ideo\u{85}nel\u{2028}ls\u{feff}",
    "!!!??? ... --- ___ (((x))) [y] {z} <a href='x'>",
    "aab aaab 123x 1234x abababc xxyyx yx yyyy xyyyz acabc 'llz 'sz z",
];

#[test]
fn pieces_are_oniguruma_s_on_every_family() {
    for (family, source) in FAMILIES {
        let pattern = SplitPattern::new(source).unwrap_or_else(|e| panic!("{family}: {e}"));
        let regex = Regex::new(source).unwrap();
        for text in SAMPLES {
            assert_eq!(
                pieces(&pattern, text),
                reference(&regex, text),
                "{family}: {text:?}"
            );
        }
    }
}

#[test]
fn pieces_are_oniguruma_s_on_random_text() {
    for (family, source) in FAMILIES {
        let pattern = SplitPattern::new(source).unwrap();
        let regex = Regex::new(source).unwrap();
        for text in random_texts(1500) {
            assert_eq!(
                pieces(&pattern, &text),
                reference(&regex, &text),
                "{family}: {text:?}"
            );
        }
    }
}

/// `count` short strings of characters of every kind the patterns tell apart, drawn at random.
fn random_texts(count: usize) -> impl Iterator<Item = String> {
    let alphabet: Vec<char> =
        "aZé日カ한ع١2٣½ ' s\t\r\n\u{a0}\u{3000}!.,-_/ßſﬁ👍🏽\u{301}\u{200d}Kk゛・\u{3040}"
            .chars()
            .collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state = crate::util::splitmix64(state);
        state
    };
    (0..count).map(move |_| {
        let len = (next() % 24) as usize;
        (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect()
    })
}

/// Oniguruma's pieces of `DeepSeek`'s three splits, each cutting the pieces of the one before.
fn deepseek_reference(regexes: &[Regex], text: &str) -> Vec<String> {
    regexes.iter().fold(vec![text.to_owned()], |pieces, regex| {
        (pieces.iter())
            .flat_map(|piece| reference(regex, piece))
            .collect()
    })
}

fn deepseek_pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    deepseek::split(text, &mut |p| out.push(p.to_owned()));
    out
}

#[test]
fn deepseek_s_one_pass_is_its_three_splits() {
    let regexes: Vec<Regex> = (deepseek::PATTERNS.iter())
        .map(|p| Regex::new(p).unwrap())
        .collect();
    let scalars: Vec<char> = (0..=0x10_FFFFu32).filter_map(char::from_u32).collect();
    // Each character alone and beside a letter, a space, a digit and a kana, in runs of 64.
    let every_scalar = (scalars.chunks(64).enumerate())
        .filter(|(i, chunk)| i % 7 == 0 || (chunk[0] as u32) < 0x3_0000)
        .map(|(_, chunk)| {
            (chunk.iter())
                .flat_map(|&c| [c, ' ', c, 'a', c, '1', c, 'カ', c, '\''])
                .collect::<String>()
        });
    let texts = (SAMPLES.iter().map(|&s| s.to_owned()))
        .chain(random_texts(3000))
        .chain(every_scalar);
    for text in texts {
        assert_eq!(
            deepseek_pieces(&text),
            deepseek_reference(&regexes, &text),
            "{text:?}"
        );
    }
}

#[test]
fn every_scalar_value_is_split_as_oniguruma_splits_it() {
    // Each character alone and beside a letter, a space and a digit, in runs of 64.
    let scalars: Vec<char> = (0..=0x10_FFFFu32).filter_map(char::from_u32).collect();
    for (family, source) in FAMILIES {
        let pattern = SplitPattern::new(source).unwrap();
        let regex = Regex::new(source).unwrap();
        for (i, chunk) in scalars.chunks(64).enumerate() {
            if i % 7 != 0 && chunk[0] as u32 >= 0x3_0000 {
                continue; // sampled beyond the planes in use
            }
            let text: String = chunk
                .iter()
                .flat_map(|&c| [c, ' ', c, 'a', c, '1', c, '\''])
                .collect();
            assert_eq!(
                pieces(&pattern, &text),
                reference(&regex, &text),
                "{family}: chunk {i}"
            );
        }
    }
}

#[test]
fn quantified_and_nested_groups_are_refused() {
    for pattern in [r"(?:ab)+c", r"(?:a|b){2,3}", r"(?:a(?:b|c))d", r"(?!ab)c"] {
        let refused = SplitPattern::new(pattern).err().unwrap();
        assert!(
            refused.contains("a quantified or nested group"),
            "{pattern}: {refused}"
        );
    }
}

#[test]
fn a_multi_character_case_fold_is_refused() {
    let refused = SplitPattern::new(r"(?i:'ss)|\s+").err().unwrap();
    assert!(refused.contains("multi-character case fold"), "{refused}");
}
