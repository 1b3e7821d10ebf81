//! The shape of the families' patterns, matched without the general engine's closures: an
//! alternation of flat sequences whose items are runs of one character class (`\p{L}+`,
//! `\s*`, `\p{N}{1,3}`, `[...]?`), a choice among fixed strings (`(?i:'s|'t|...)`, maybe
//! optional), or a lookahead at one character (`(?!\S)`). Backtracking is the same: runs give
//! back characters longest first (shortest first when lazy), choices are tried in order.

use super::Node;

/// One character: a set or a literal.
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
}

impl Flat {
    /// The flat form of `root`, if it has that shape.
    pub(super) fn of(root: &Node) -> Option<Self> {
        let alternatives = match root {
            Node::Alt(alternatives) => alternatives.iter().map(sequence).collect(),
            other => sequence(other).map(|items| vec![items]),
        }?;
        Some(Self { alternatives })
    }
}

fn atom(node: &Node) -> Option<Atom> {
    match node {
        Node::Set(set) => Some(Atom::Set(*set)),
        Node::Char(c) => Some(Atom::Char(*c)),
        _ => None,
    }
}

fn sequence(node: &Node) -> Option<Vec<Item>> {
    match node {
        Node::Concat(nodes) => nodes.iter().map(item).collect(),
        other => item(other).map(|item| vec![item]),
    }
}

/// A fixed string of atoms.
fn string(node: &Node) -> Option<Vec<Atom>> {
    match node {
        Node::Concat(nodes) => nodes.iter().map(atom).collect(),
        other => atom(other).map(|a| vec![a]),
    }
}

fn choice(node: &Node) -> Option<Vec<Vec<Atom>>> {
    match node {
        Node::Alt(options) => options.iter().map(string).collect(),
        _ => None,
    }
}

fn item(node: &Node) -> Option<Item> {
    if let Some(atom) = atom(node) {
        return Some(Item::Run {
            atom,
            min: 1,
            max: 1,
            greedy: true,
        });
    }
    match node {
        Node::Repeat {
            node,
            min,
            max,
            greedy,
        } => match (atom(node), choice(node)) {
            (Some(atom), _) => Some(Item::Run {
                atom,
                min: *min,
                max: *max,
                greedy: *greedy,
            }),
            // `(?:a|b)?`, greedy: the choice first, then none.
            (None, Some(options)) if (*min, *max, *greedy) == (0, 1, true) => Some(Item::Choice {
                options,
                optional: true,
            }),
            _ => None,
        },
        Node::Alt(_) => choice(node).map(|options| Item::Choice {
            options,
            optional: false,
        }),
        Node::Look { node, negate } => atom(node).map(|atom| Item::LookOne {
            atom,
            negate: *negate,
        }),
        _ => None,
    }
}
