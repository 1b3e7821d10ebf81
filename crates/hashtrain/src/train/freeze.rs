//! `train.freeze`: which of the model's weights a fine-tuning run keeps fixed (the paper's
//! Table 8), found by the names the model gives its weights (`layers.7.ffn.experts.3.w1`).
//! Frozen weights get no gradient and are left out of Adam, so they stay bit-identical.

use std::collections::BTreeSet;

use crate::config::{Freeze, RunConfig, SparseKind};
use crate::error::{Error, Result};

/// What a weight is, by its name.
struct WeightNames {
    /// `layers.N.ffn.` (`encoder.layers.N.ffn.`) of each sparse layer (dense kinds excluded).
    sparse_ffns: Vec<String>,
    /// `layers.L.` of the (decoder's) last layer.
    last_layer: String,
}

impl WeightNames {
    fn new(config: &RunConfig) -> Self {
        Self {
            sparse_ffns: config
                .model
                .sparse
                .iter()
                .filter(|s| s.kind != SparseKind::Dense)
                .map(|s| format!("{}ffn.", s.layer().weight_prefix()))
                .collect(),
            last_layer: format!("layers.{}.", config.model.layers),
        }
    }

    /// The rest of `name` after its sparse layer's `layers.N.ffn.`, if it is in one.
    fn in_sparse_ffn<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.sparse_ffns
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix.as_str()))
    }

    fn frozen_by(&self, entry: Freeze, name: &str) -> bool {
        match entry {
            Freeze::Experts => self
                .in_sparse_ffn(name)
                .is_some_and(|rest| rest.starts_with("experts.")),
            // Switch's `router.weight`/`router.bias`, Token-Switch's `router_embedding`,
            // BASE's `router`, a top-k hash layer's `gate`.
            Freeze::Router => self
                .in_sparse_ffn(name)
                .is_some_and(|rest| rest.starts_with("router") || rest == "gate"),
            Freeze::AllButLast => {
                !(name.starts_with(&self.last_layer)
                    || name.starts_with("ln_final.")
                    || name == "head")
            }
            Freeze::AllButSparse => self.in_sparse_ffn(name).is_none(),
        }
    }
}

/// The names among `names` (the model's weights) that `config`'s `train.freeze` keeps fixed.
///
/// # Errors
/// An entry that names none of the model's weights (`router` in a model whose hash layers are
/// top-1), or that would leave nothing to train.
pub(crate) fn frozen_names(config: &RunConfig, names: &[&str]) -> Result<BTreeSet<String>> {
    let weights = WeightNames::new(config);
    let mut frozen = BTreeSet::new();
    for (i, &entry) in config.train.optimization.freeze.iter().enumerate() {
        let before = frozen.len();
        frozen.extend(
            names
                .iter()
                .filter(|name| weights.frozen_by(entry, name))
                .map(|&name| name.to_owned()),
        );
        if frozen.len() == before {
            return Err(Error::Setting {
                setting: format!("train.freeze[{i}]"),
                problem: format!(
                    "= \"{}\" names none of this model's weights (no learned router: a hash \
                     layer has a gate only with a top-k table)",
                    entry.name()
                ),
            });
        }
    }
    if names.iter().all(|&name| frozen.contains(name)) && !frozen.is_empty() {
        return Err(Error::Setting {
            setting: "train.freeze".into(),
            problem: "freezes every weight of the model: nothing would train".into(),
        });
    }
    Ok(frozen)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(sparse: &str, freeze: &str) -> RunConfig {
        let text = format!(
            "[data]\ntrain = \"t\"\nvalid = \"v\"\n[model]\nlayers = 3\nd_model = 8\nd_ff = 16\n\
             heads = 2\ncontext = 4\n{sparse}\n[train]\nfreeze = {freeze}\n"
        );
        RunConfig::parse(&text, Path::new("c.toml"), &[]).unwrap()
    }

    const NAMES: [&str; 12] = [
        "embedding",
        "positions",
        "layers.1.attn.qkv.weight",
        "layers.1.ffn.a.weight",
        "layers.2.attn.out.bias",
        "layers.2.ffn.experts.0.w1",
        "layers.2.ffn.experts.1.b2",
        "layers.2.ffn.router.weight",
        "layers.2.ffn.router_embedding",
        "layers.3.ln_ffn.weight",
        "layers.3.ffn.b.weight",
        "ln_final.weight",
    ];

    fn frozen(freeze: &str) -> Result<Vec<String>> {
        let sparse = "[[model.sparse]]\nat = 2\nkind = \"token-switch\"\nexperts = 2\n";
        frozen_names(&config(sparse, freeze), &NAMES).map(|set| set.into_iter().collect())
    }

    #[test]
    fn each_entry_freezes_the_weights_the_paper_names() {
        assert!(frozen("[]").unwrap().is_empty());
        assert_eq!(
            frozen(r#"["experts"]"#).unwrap(),
            ["layers.2.ffn.experts.0.w1", "layers.2.ffn.experts.1.b2"]
        );
        assert_eq!(
            frozen(r#"["router"]"#).unwrap(),
            [
                "layers.2.ffn.router.weight",
                "layers.2.ffn.router_embedding"
            ]
        );
        let all_but_last = frozen(r#"["all-but-last"]"#).unwrap();
        assert_eq!(all_but_last.len(), 9, "{all_but_last:?}");
        assert!(!all_but_last
            .iter()
            .any(|n| n.starts_with("layers.3.") || n == "ln_final.weight"));
        let all_but_sparse = frozen(r#"["all-but-sparse"]"#).unwrap();
        assert_eq!(all_but_sparse.len(), 8, "{all_but_sparse:?}");
        assert!(!all_but_sparse
            .iter()
            .any(|n| n.starts_with("layers.2.ffn.")));
        // Entries add up.
        assert_eq!(frozen(r#"["experts", "router"]"#).unwrap().len(), 4);
    }

    #[test]
    fn entries_that_freeze_nothing_or_everything_are_refused() {
        let hash = "[[model.sparse]]\nat = 2\nkind = \"hash\"\ntable = \"t.arrow\"\n";
        let names = ["embedding", "layers.2.ffn.experts.0.w1"];
        let err = frozen_names(&config(hash, r#"["router"]"#), &names)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("train.freeze[0] = \"router\" names none"),
            "{err}"
        );
        let err = frozen("[\"all-but-last\", \"all-but-sparse\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing would train"), "{err}");
    }
}
