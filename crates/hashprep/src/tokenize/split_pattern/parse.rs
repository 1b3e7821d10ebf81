//! The regex constructs the split scanner reproduces, parsed from a `Split` pattern; anything
//! else is refused with its place in the pattern, and the tokenizer falls back to `tokenizers`.
//!
//! Parsed (Oniguruma's syntax, as `tokenizers` compiles the pattern; the matcher then takes only
//! their flat shape, [`super::flat`]):
//! - alternation `|`, groups `(...)` and `(?:...)` (captures are not used), `(?i:...)` over
//!   plain characters only;
//! - one-character atoms: a literal character, an escaped punctuation character, `\r \n \t \f
//!   \v \a \e`, `.`, `\s \S \d \D \w \W \h \H`, `\p{..}` / `\P{..}` / `\p{^..}`, and bracket
//!   classes `[...]` / `[^...]` of those and ranges (which characters each holds is asked of
//!   Oniguruma itself, so both agree on every code point);
//! - quantifiers `? * + {n} {n,} {n,m} {,m}`, greedy or lazy (`??`, `*?`, ...), on anything
//!   that cannot match the empty string;
//! - lookahead `(?=...)` and `(?!...)`.
//!
//! Refused: anchors (`^ $ \A \z \b ...`), lookbehind, atomic groups, possessive and nested
//! quantifiers, backreferences, named groups, inline options other than a scoped `(?i:`,
//! nested classes and class intersections, control and code-point escapes, a pattern that can
//! match the empty string.

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ast {
    /// One character of a class, given as Oniguruma source (`\p{L}`, `[^\r\n]`, `(?i:s)`).
    Class(String),
    /// One exact character.
    Char(char),
    /// Each in turn.
    Concat(Vec<Ast>),
    /// The first that matches (then the next, on backtracking).
    Alt(Vec<Ast>),
    /// `min..=max` times (`max` `None`: unbounded), most first when greedy.
    Repeat {
        node: Box<Ast>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    /// Zero-width: whether `node` matches here (or, `negate`, does not).
    Look { node: Box<Ast>, negate: bool },
}

impl Ast {
    /// Whether it can match without consuming a character.
    pub(super) fn nullable(&self) -> bool {
        match self {
            Ast::Class(_) | Ast::Char(_) => false,
            Ast::Concat(nodes) => nodes.iter().all(Ast::nullable),
            Ast::Alt(nodes) => nodes.iter().any(Ast::nullable),
            Ast::Repeat { node, min, .. } => *min == 0 || node.nullable(),
            Ast::Look { .. } => true,
        }
    }
}

/// Parses `pattern`.
///
/// # Errors
/// A construct outside the list above, named with its byte offset.
pub(super) fn parse(pattern: &str) -> Result<Ast, String> {
    let mut parser = Parser {
        src: pattern,
        at: 0,
    };
    let ast = parser.alternation(false)?;
    if parser.at < pattern.len() {
        return Err(parser.refuse("an unmatched `)`"));
    }
    if ast.nullable() {
        return Err("it can match the empty string".into());
    }
    Ok(ast)
}

struct Parser<'p> {
    src: &'p str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, prefix: &str) -> bool {
        let found = self.src[self.at..].starts_with(prefix);
        if found {
            self.at += prefix.len();
        }
        found
    }

    fn refuse(&self, what: &str) -> String {
        format!("{what} at byte {} of the pattern", self.at)
    }

    /// `a|b|...` up to the end or a `)`; `fold`: inside `(?i:`.
    fn alternation(&mut self, fold: bool) -> Result<Ast, String> {
        let mut alternatives = vec![self.concatenation(fold)?];
        while self.eat("|") {
            alternatives.push(self.concatenation(fold)?);
        }
        Ok(match alternatives.len() {
            1 => alternatives.pop().expect("one"),
            _ => Ast::Alt(alternatives),
        })
    }

    fn concatenation(&mut self, fold: bool) -> Result<Ast, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(fold)?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            1 => items.pop().expect("one"),
            _ => Ast::Concat(items),
        })
    }

    fn atom(&mut self, fold: bool) -> Result<Ast, String> {
        let start = self.at;
        match self.bump().expect("not at the end") {
            '(' => self.group(fold),
            '[' if fold => Err(self.refuse("a class inside `(?i:`")),
            '[' => self.class(start),
            '\\' => self.escape(start, fold),
            '.' if fold => Err(self.refuse("`.` inside `(?i:`")),
            '.' => Ok(Ast::Class(".".into())),
            '^' | '$' => Err(self.refuse("an anchor")),
            '*' | '+' | '?' | '{' => Err(self.refuse("a quantifier with nothing before it")),
            c if fold && c.is_alphabetic() => Ok(Ast::Class(format!("(?i:{c})"))),
            c if fold && !c.is_ascii() => Err(self.refuse("a non-ASCII character inside `(?i:`")),
            c => Ok(Ast::Char(c)),
        }
    }

    fn group(&mut self, fold: bool) -> Result<Ast, String> {
        let (inner_fold, look) = if self.eat("?:") {
            (fold, None)
        } else if self.eat("?i:") {
            (true, None)
        } else if self.eat("?=") {
            (fold, Some(false))
        } else if self.eat("?!") {
            (fold, Some(true))
        } else if self.peek() == Some('?') {
            return Err(self.refuse("a group kind other than `(?:`, `(?i:`, `(?=`, `(?!`"));
        } else {
            (fold, None)
        };
        let inner = self.alternation(inner_fold)?;
        if !self.eat(")") {
            return Err(self.refuse("an unclosed group"));
        }
        Ok(match look {
            None => inner,
            Some(negate) => Ast::Look {
                node: Box::new(inner),
                negate,
            },
        })
    }

    /// After a `\`: one-character escapes only.
    fn escape(&mut self, start: usize, fold: bool) -> Result<Ast, String> {
        let Some(c) = self.bump() else {
            return Err(self.refuse("a `\\` at the end"));
        };
        match c {
            'r' => Ok(Ast::Char('\r')),
            'n' => Ok(Ast::Char('\n')),
            't' => Ok(Ast::Char('\t')),
            'f' => Ok(Ast::Char('\u{c}')),
            'v' => Ok(Ast::Char('\u{b}')),
            'a' => Ok(Ast::Char('\u{7}')),
            'e' => Ok(Ast::Char('\u{1b}')),
            _ if fold => Err(self.refuse("an escape inside `(?i:`")),
            's' | 'S' | 'd' | 'D' | 'w' | 'W' | 'h' | 'H' => {
                Ok(Ast::Class(self.src[start..self.at].to_owned()))
            }
            'p' | 'P' => {
                self.property()?;
                Ok(Ast::Class(self.src[start..self.at].to_owned()))
            }
            c if c.is_ascii_punctuation() => Ok(Ast::Char(c)),
            _ => Err(self.refuse(&format!("the escape `\\{c}`"))),
        }
    }

    /// The `{Name}` of `\p` / `\P` (letters, digits, `_`, spaces, a leading `^`).
    fn property(&mut self) -> Result<(), String> {
        if !self.eat("{") {
            return Err(self.refuse("`\\p` without `{`"));
        }
        self.eat("^");
        while let Some(c) = self.bump() {
            match c {
                '}' => return Ok(()),
                c if c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '-' => {}
                _ => break,
            }
        }
        Err(self.refuse("a property name of other characters than letters and digits"))
    }

    /// After a `[`: finds the class's end; its content is left to Oniguruma.
    fn class(&mut self, start: usize) -> Result<Ast, String> {
        self.eat("^");
        if self.peek() == Some(']') {
            return Err(self.refuse("`]` first in a class"));
        }
        loop {
            match self.bump() {
                None => return Err(self.refuse("an unclosed class")),
                Some(']') => break,
                Some('[') => return Err(self.refuse("a nested class")),
                Some('&') if self.peek() == Some('&') => {
                    return Err(self.refuse("a class intersection"))
                }
                Some('\\') => match self.bump() {
                    Some('p' | 'P') => self.property()?,
                    Some(c) if c.is_ascii_punctuation() || "rntfvaesSdDwWhH".contains(c) => {}
                    Some(c) => return Err(self.refuse(&format!("the escape `\\{c}` in a class"))),
                    None => return Err(self.refuse("an unclosed class")),
                },
                Some(_) => {}
            }
        }
        Ok(Ast::Class(self.src[start..self.at].to_owned()))
    }

    /// `atom` with the quantifiers after it.
    fn quantified(&mut self, atom: Ast) -> Result<Ast, String> {
        let (min, max) = match self.peek() {
            Some('?') => (0, Some(1)),
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('{') => return self.interval(atom),
            _ => return Ok(atom),
        };
        self.bump();
        self.repeat(atom, min, max)
    }

    fn interval(&mut self, atom: Ast) -> Result<Ast, String> {
        let rest = &self.src[self.at..];
        let close = rest
            .find('}')
            .ok_or_else(|| self.refuse("a `{` that is not a count"))?;
        let body = &rest[1..close];
        let number = |s: &str| -> Result<Option<u32>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<u32>() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) && n <= 1000 => Ok(Some(n)),
                _ => Err(self.refuse("a `{` that is not a count")),
            }
        };
        let (min, max) = match body.split_once(',') {
            None => {
                let n = number(body)?.ok_or_else(|| self.refuse("an empty count"))?;
                (n, Some(n))
            }
            Some((low, high)) => (number(low)?.unwrap_or(0), number(high)?),
        };
        if max.is_some_and(|max| max < min) {
            return Err(self.refuse("a count whose maximum is below its minimum"));
        }
        self.at += close + 1;
        self.repeat(atom, min, max)
    }

    fn repeat(&mut self, atom: Ast, min: u32, max: Option<u32>) -> Result<Ast, String> {
        let greedy = !self.eat("?");
        if matches!(self.peek(), Some('+' | '*' | '?' | '{')) {
            return Err(self.refuse("a possessive or nested quantifier"));
        }
        if atom.nullable() {
            return Err(self.refuse("a quantifier on what can match the empty string"));
        }
        Ok(Ast::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Ast {
        Ast::Class(s.into())
    }

    fn plus(node: Ast) -> Ast {
        Ast::Repeat {
            node: Box::new(node),
            min: 1,
            max: None,
            greedy: true,
        }
    }

    #[test]
    fn the_families_patterns_parse() {
        let llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        let Ast::Alt(alternatives) = parse(llama3).unwrap() else {
            panic!("an alternation");
        };
        assert_eq!(alternatives.len(), 7);
        assert_eq!(
            alternatives[2],
            Ast::Repeat {
                node: Box::new(class(r"\p{N}")),
                min: 1,
                max: Some(3),
                greedy: true,
            }
        );
        assert_eq!(
            alternatives[5],
            Ast::Concat(vec![
                plus(class(r"\s")),
                Ast::Look {
                    node: Box::new(class(r"\S")),
                    negate: true
                }
            ])
        );
        let Ast::Alt(contractions) = &alternatives[0] else {
            panic!("contractions");
        };
        assert_eq!(
            contractions[2],
            Ast::Concat(vec![Ast::Char('\''), class("(?i:r)"), class("(?i:e)")])
        );
        let deepseek = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
        assert!(parse(deepseek).is_ok());
        assert!(parse("[一-龥\u{3040}-ゟ゠-ヿ]+").is_ok());
        assert!(parse(r"\p{N}{1,3}").is_ok());
    }

    #[test]
    fn constructs_outside_the_list_are_refused() {
        for (pattern, why) in [
            (r"^a", "anchor"),
            (r"a\b", "escape `\\b`"),
            (r"(?<=a)b", "group kind"),
            (r"(?>a)", "group kind"),
            (r"a++", "possessive"),
            (r"a{2}{3}", "possessive or nested"),
            (r"[a[b]]", "nested class"),
            (r"[a&&b]", "intersection"),
            (r"(a)\1", "escape `\\1`"),
            (r"\x41", "escape `\\x`"),
            (r"(?i:[a-z])", "class inside"),
            (r"(?i)a", "group kind"),
            (r"a*", "empty string"),
            (r"(?=a)", "empty string"),
            (r"(a*)+", "empty string"),
            (r"a{x}", "not a count"),
            (r"(a", "unclosed group"),
            (r"a)", "unmatched"),
            (r"[ab", "unclosed class"),
            (r"\p{L", "property name"),
        ] {
            let refused = parse(pattern).unwrap_err();
            assert!(refused.contains(why), "{pattern}: {refused}");
        }
    }
}
