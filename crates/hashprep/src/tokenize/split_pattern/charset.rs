//! Which characters a one-character atom of a pattern matches, asked of Oniguruma (the engine
//! `tokenizers` runs the pattern with) so that both agree on every code point whatever Unicode
//! version each was built with: the atom is searched for in a text of every character of a
//! plane, once per plane, the Basic Multilingual Plane when the pattern is compiled and each
//! other plane the first time one of its characters is met.

use std::sync::OnceLock;

use onig::Regex;

/// Code points per plane.
const PLANE: u32 = 0x1_0000;

/// Planes of Unicode.
const PLANES: usize = 17;

/// One bit per code point of a plane.
type PlaneBits = Box<[u64; (PLANE / 64) as usize]>;

/// The characters of one atom.
pub(crate) struct CharSet {
    regex: Regex,
    ascii: u128,
    planes: [OnceLock<PlaneBits>; PLANES],
}

impl CharSet {
    /// The set of the atom `source` (Oniguruma syntax).
    ///
    /// # Errors
    /// Oniguruma refuses it, or it matches more than one character somewhere.
    pub(crate) fn new(source: &str) -> Result<Self, String> {
        let regex = Regex::new(source).map_err(|e| format!("{source}: {e}"))?;
        let planes: [OnceLock<PlaneBits>; PLANES] = Default::default();
        let bmp = match shipped_first_plane(source) {
            Some(bits) => bits,
            None => members(&regex, 0).map_err(|e| format!("{source}: {e}"))?,
        };
        let ascii = (0..128u32).fold(0u128, |bits, c| {
            bits | u128::from(bmp[(c / 64) as usize] >> (c % 64) & 1) << c
        });
        planes[0].set(bmp).expect("a fresh cell");
        Ok(Self {
            regex,
            ascii,
            planes,
        })
    }

    /// Whether `c` is in the set.
    #[inline]
    pub(crate) fn contains(&self, c: char) -> bool {
        let code = c as u32;
        if code < 128 {
            return self.ascii >> code & 1 == 1;
        }
        let plane = (code / PLANE) as usize;
        let bits = self.planes[plane].get_or_init(|| {
            // Checked single-character on the first plane; an atom matches one character.
            members(&self.regex, plane).unwrap_or_else(|_| Box::new([0; (PLANE / 64) as usize]))
        });
        let at = code % PLANE;
        bits[(at / 64) as usize] >> (at % 64) & 1 == 1
    }
}

/// Characters' classes from sets asked of Oniguruma: the first plane as a table, characters
/// beyond it classified from the sets when met (a plane of each set at a time).
pub(crate) struct ClassTable<T> {
    sets: Vec<CharSet>,
    classify: fn(&[CharSet], char) -> T,
    bmp: Box<[T]>,
}

impl<T: Copy> ClassTable<T> {
    /// The table of `classify`, which tells a character's class from its membership of the
    /// sets of `sources` (in that order).
    pub(crate) fn new(sources: &[&str], classify: fn(&[CharSet], char) -> T) -> Self {
        let sets: Vec<CharSet> = (sources.iter())
            .map(|source| CharSet::new(source).expect("a valid class pattern"))
            .collect();
        // Surrogates are not characters and are never looked up: their slots hold NUL's class.
        let bmp = (0..PLANE)
            .map(|code| classify(&sets, char::from_u32(code).unwrap_or('\0')))
            .collect();
        Self {
            sets,
            classify,
            bmp,
        }
    }

    /// The classes of the ASCII characters.
    pub(crate) fn ascii(&self) -> &[T; 128] {
        self.bmp[..128]
            .try_into()
            .expect("the first plane holds ASCII")
    }

    /// The class of `c`.
    #[inline]
    pub(crate) fn of(&self, c: char) -> T {
        match self.bmp.get(c as usize) {
            Some(&class) => class,
            None => (self.classify)(&self.sets, c),
        }
    }

    /// The class of the character at byte `at` of `text` and its length, if one is there
    /// (ASCII without decoding).
    #[inline]
    pub(crate) fn class_at(&self, text: &str, at: usize) -> Option<(T, usize)> {
        let &byte = text.as_bytes().get(at)?;
        if byte.is_ascii() {
            return Some((self.bmp[usize::from(byte)], 1));
        }
        let c = text[at..].chars().next()?;
        Some((self.of(c), c.len_utf8()))
    }

    /// Where the run of characters whose class passes `keep` from byte `at` of `text` ends.
    #[inline]
    pub(crate) fn run_end(&self, text: &str, mut at: usize, keep: impl Fn(T) -> bool) -> usize {
        let (bytes, ascii) = (text.as_bytes(), self.ascii());
        loop {
            // ASCII without decoding, the common case.
            while let Some(&byte) = bytes.get(at).filter(|b| b.is_ascii()) {
                if !keep(ascii[usize::from(byte)]) {
                    return at;
                }
                at += 1;
            }
            match self.class_at(text, at) {
                Some((class, len)) if keep(class) => at += len,
                _ => return at,
            }
        }
    }
}

/// Runs `build` (a class table's first use) on a thread of its own, started now: a table built
/// while the tokenizer loads is ready, or nearly, when encoding starts, rather than built by its
/// first call while every encoding thread waits (`DeepSeek`'s took 23 ms). Where no thread
/// starts, the first use builds it as before.
pub(crate) fn build_in_background(build: fn()) {
    let _ = std::thread::Builder::new()
        .name("hashprep-classes".into())
        .spawn(build);
}

/// Atoms of the pre-tokenizers met most (GPT-2's, `DeepSeek`'s), whose first plane ships in
/// `class_sets.zst` as Oniguruma answers it (asking took 20-30 ms of a thread in every run).
/// A test checks the file against the linked Oniguruma, and rewrites it with
/// `HASHPREP_WRITE_CLASS_SETS=1`.
const SHIPPED_ATOMS: [&str; 7] = [
    r"\p{L}",
    r"\p{N}",
    r"\s",
    r"\p{M}",
    r"\p{P}",
    r"\p{S}",
    super::deepseek::CJK_CLASS,
];

/// The first plane of each of [`SHIPPED_ATOMS`], in order: 8,192 bytes each (bit `k` of byte
/// `j`: code point `8j + k`), compressed with zstd.
const SHIPPED_SETS: &[u8] = include_bytes!("class_sets.zst");

/// The first plane of `source`'s characters, where it is one of [`SHIPPED_ATOMS`].
fn shipped_first_plane(source: &str) -> Option<PlaneBits> {
    static SETS: OnceLock<Vec<PlaneBits>> = OnceLock::new();
    let at = SHIPPED_ATOMS.iter().position(|&atom| atom == source)?;
    let sets = SETS.get_or_init(|| {
        let bytes = zstd::decode_all(SHIPPED_SETS).expect("the shipped sets decompress");
        (bytes.chunks_exact(PLANE as usize / 8))
            .map(|set| {
                let mut bits: PlaneBits = Box::new([0; (PLANE / 64) as usize]);
                for (word, bytes) in bits.iter_mut().zip(set.chunks_exact(8)) {
                    *word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
                }
                bits
            })
            .collect()
    });
    sets.get(at).cloned()
}

/// Every character of `plane`, back to back (surrogates are not characters).
fn plane_text(plane: usize) -> &'static str {
    static TEXTS: [OnceLock<String>; PLANES] = [const { OnceLock::new() }; PLANES];
    TEXTS[plane].get_or_init(|| {
        let first = plane as u32 * PLANE;
        (first..first + PLANE).filter_map(char::from_u32).collect()
    })
}

/// The characters of `plane` that `regex` matches.
///
/// # Errors
/// A match of more than one character.
fn members(regex: &Regex, plane: usize) -> Result<PlaneBits, String> {
    let text = plane_text(plane);
    let mut bits: PlaneBits = Box::new([0; (PLANE / 64) as usize]);
    for (start, end) in regex.find_iter(text) {
        let mut chars = text[start..end].chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return Err(format!(
                "matches {:?}, not one character",
                &text[start..end]
            ));
        };
        let at = c as u32 % PLANE;
        bits[(at / 64) as usize] |= 1 << (at % 64);
    }
    Ok(bits)
}

/// Whether some single character is matched by the case-insensitive `literal` (of two or more
/// characters), as `ß` is by `(?i:ss)`: Oniguruma's multi-character case folding, which the
/// scanner does not reproduce.
pub(super) fn folds_to_one_character(literal: &str) -> bool {
    let escaped: String = literal
        .chars()
        .map(|c| {
            if c.is_ascii_punctuation() {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect();
    let Ok(regex) = Regex::new(&format!("(?i:{escaped})")) else {
        return true;
    };
    (0..PLANES).any(|plane| {
        let text = plane_text(plane);
        (regex.find_iter(text)).any(|(start, end)| text[start..end].chars().nth(1).is_none())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_oniguruma_matches() {
        let letters = CharSet::new(r"\p{L}").unwrap();
        for (c, member) in [
            ('a', true),
            ('é', true),
            ('日', true),
            ('1', false),
            (' ', false),
        ] {
            assert_eq!(letters.contains(c), member, "{c:?}");
        }
        // Beyond the first plane: Mathematical Alphanumeric Symbols are letters, emoji are not.
        assert!(letters.contains('\u{1d400}'));
        assert!(!letters.contains('🙂'));
        let folded = CharSet::new("(?i:s)").unwrap();
        // `ſ` (long s) folds to `s` in Oniguruma.
        for (c, member) in [('s', true), ('S', true), ('\u{17f}', true), ('t', false)] {
            assert_eq!(folded.contains(c), member, "{c:?}");
        }
        let class = CharSet::new(r"[^\r\n\p{L}\p{N}]").unwrap();
        assert!(class.contains(' ') && class.contains('!') && !class.contains('\n'));
        assert!(!class.contains('x') && class.contains('🙂'));
    }

    #[test]
    fn the_shipped_sets_are_oniguruma_s() {
        let asked: Vec<u8> = (SHIPPED_ATOMS.iter())
            .flat_map(|atom| {
                let bits = members(&Regex::new(atom).unwrap(), 0).unwrap();
                bits.into_iter()
                    .flat_map(u64::to_le_bytes)
                    .collect::<Vec<_>>()
            })
            .collect();
        crate::tokenize::shipped::check(
            SHIPPED_SETS,
            &asked,
            "split_pattern/class_sets.zst",
            "what Oniguruma answers",
            "HASHPREP_WRITE_CLASS_SETS",
        );
        for atom in SHIPPED_ATOMS {
            let shipped = shipped_first_plane(atom).unwrap();
            assert!(
                shipped == members(&Regex::new(atom).unwrap(), 0).unwrap(),
                "{atom}"
            );
        }
        assert!(shipped_first_plane(r"\p{Lu}").is_none());
    }

    #[test]
    fn multi_character_folds_are_found() {
        assert!(folds_to_one_character("ss"));
        assert!(folds_to_one_character("st"));
        assert!(!folds_to_one_character("re"));
        assert!(!folds_to_one_character("ll"));
        assert!(!folds_to_one_character("ve"));
    }
}
