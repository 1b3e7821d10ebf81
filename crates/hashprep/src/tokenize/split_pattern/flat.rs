//! The shape of the families' patterns, the one the scanner matches: an alternation of flat
//! sequences whose items are runs of one character class (`\p{L}+`, `\s*`, `\p{N}{1,3}`,
//! `[...]?`), a choice among fixed strings (`(?i:'s|'t|...)`, maybe optional), or a lookahead
//! at one character (`(?!\S)`). Backtracking is Oniguruma's: runs give back characters longest
//! first (shortest first when lazy), choices are tried in order.

use super::parse::Ast;

/// One character: a set (its number among the pattern's class sources) or a literal.
#[derive(Debug, Clone, Copy)]
pub(super) enum Atom {
    Set(usize),
    Char(char),
}

/// One item of a flat sequence.
#[derive(Debug)]
pub(super) enum Item {
    Run {
        atom: Atom,
        min: u32,
        max: u32,
        greedy: bool,
    },
    Choice {
        options: Vec<Vec<Atom>>,
        optional: bool,
    },
    LookOne {
        atom: Atom,
        negate: bool,
    },
}

/// A pattern of flat alternatives.
#[derive(Debug)]
pub(super) struct Flat {
    pub(super) alternatives: Vec<Vec<Item>>,
}

impl Flat {
    /// The atoms one of which the first character of any match is in (`None`: a lookahead
    /// comes first, and no such list is made).
    pub(super) fn first_atoms(&self) -> Option<Vec<Atom>> {
        let mut atoms = Vec::new();
        for items in &self.alternatives {
            for item in items {
                match item {
                    Item::Run { atom, min, .. } => {
                        atoms.push(*atom);
                        if *min > 0 {
                            break;
                        }
                    }
                    Item::Choice { options, optional } => {
                        atoms.extend(options.iter().filter_map(|o| o.first().copied()));
                        if !optional {
                            break;
                        }
                    }
                    Item::LookOne { .. } => return None,
                }
            }
        }
        Some(atoms)
    }

    /// The flat form of `root`, if it has that shape; its classes' sources numbered into
    /// `sources` (one number per distinct source).
    pub(super) fn of(root: &Ast, sources: &mut Vec<String>) -> Option<Self> {
        let mut flat = Flattener { sources };
        let alternatives = match root {
            Ast::Alt(alternatives) => alternatives.iter().map(|a| flat.sequence(a)).collect(),
            other => flat.sequence(other).map(|items| vec![items]),
        }?;
        Some(Self { alternatives })
    }
}

/// Turns parsed nodes into flat items, numbering the class sources met.
struct Flattener<'s> {
    sources: &'s mut Vec<String>,
}

impl Flattener<'_> {
    fn atom(&mut self, node: &Ast) -> Option<Atom> {
        match node {
            Ast::Class(source) => {
                let known = self.sources.iter().position(|s| s == source);
                Some(Atom::Set(known.unwrap_or_else(|| {
                    self.sources.push(source.clone());
                    self.sources.len() - 1
                })))
            }
            Ast::Char(c) => Some(Atom::Char(*c)),
            _ => None,
        }
    }

    fn sequence(&mut self, node: &Ast) -> Option<Vec<Item>> {
        match node {
            Ast::Concat(nodes) => nodes.iter().map(|n| self.item(n)).collect(),
            other => self.item(other).map(|item| vec![item]),
        }
    }

    /// A fixed string of atoms.
    fn string(&mut self, node: &Ast) -> Option<Vec<Atom>> {
        match node {
            Ast::Concat(nodes) => nodes.iter().map(|n| self.atom(n)).collect(),
            other => self.atom(other).map(|a| vec![a]),
        }
    }

    fn choice(&mut self, node: &Ast) -> Option<Vec<Vec<Atom>>> {
        match node {
            Ast::Alt(options) => options.iter().map(|o| self.string(o)).collect(),
            _ => None,
        }
    }

    fn item(&mut self, node: &Ast) -> Option<Item> {
        if let Some(atom) = self.atom(node) {
            return Some(Item::Run {
                atom,
                min: 1,
                max: 1,
                greedy: true,
            });
        }
        match node {
            Ast::Repeat {
                node,
                min,
                max,
                greedy,
            } => match (self.atom(node), self.choice(node)) {
                (Some(atom), _) => Some(Item::Run {
                    atom,
                    min: *min,
                    max: max.unwrap_or(u32::MAX),
                    greedy: *greedy,
                }),
                // `(?:a|b)?`, greedy: the choice first, then none.
                (None, Some(options)) if (*min, *max, *greedy) == (0, Some(1), true) => {
                    Some(Item::Choice {
                        options,
                        optional: true,
                    })
                }
                _ => None,
            },
            Ast::Alt(_) => self.choice(node).map(|options| Item::Choice {
                options,
                optional: false,
            }),
            Ast::Look { node, negate } => self.atom(node).map(|atom| Item::LookOne {
                atom,
                negate: *negate,
            }),
            _ => None,
        }
    }
}
