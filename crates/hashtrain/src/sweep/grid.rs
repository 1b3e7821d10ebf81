//! The sweep's grid: the sparse layouts every routing method is trained with (number of experts,
//! positions of the sparse layers: the paper's Figure 3 and Table 1's `NxK` models) and the
//! dense baselines of other shapes (Table 1's wider and deeper Transformers).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;

/// A setting given as one value or as a list of values (one model per value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// One value.
    One(T),
    /// Several values, in order.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// The values, in order.
    pub fn values(&self) -> Vec<T> {
        match self {
            OneOrMany::One(value) => vec![value.clone()],
            OneOrMany::Many(values) => values.clone(),
        }
    }
}

impl<T> From<T> for OneOrMany<T> {
    fn from(value: T) -> Self {
        OneOrMany::One(value)
    }
}

/// The sparse layers of one model: a single layer, or several layers of one model (`[2, 4]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Placement {
    /// One sparse layer (1-based).
    Layer(usize),
    /// Several sparse layers in one model.
    Layers(Vec<usize>),
}

impl Placement {
    /// The sparse layers, in the order given.
    pub fn layers(&self) -> Vec<usize> {
        match self {
            Placement::Layer(layer) => vec![*layer],
            Placement::Layers(layers) => layers.clone(),
        }
    }
}

/// A dense baseline of another shape than the shared model (Table 1's "wider" and "deeper"):
/// trained as `dense-NAME` next to `dense`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseShape {
    /// Names the run (`dense-NAME`) and the row (`Name Transformer`).
    pub name: String,
    /// Layers (default: the shared model's).
    #[serde(default)]
    pub layers: Option<usize>,
    /// Hidden size d (default: the shared model's).
    #[serde(default)]
    pub d_model: Option<i64>,
    /// FFN inner size D (default: the shared model's).
    #[serde(default)]
    pub d_ff: Option<i64>,
    /// Attention heads (default: the shared model's).
    #[serde(default)]
    pub heads: Option<i64>,
}

impl DenseShape {
    /// The shared model with this shape's settings.
    pub fn apply(&self, model: &ModelConfig) -> ModelConfig {
        let mut shaped = model.clone();
        shaped.layers = self.layers.unwrap_or(model.layers);
        shaped.d_model = self.d_model.unwrap_or(model.d_model);
        shaped.d_ff = self.d_ff.unwrap_or(model.d_ff);
        shaped.heads = self.heads.unwrap_or(model.heads);
        shaped
    }

    /// The row's model name: `wider` -> `Wider Transformer`.
    pub fn title(&self) -> String {
        let mut chars = self.name.chars();
        let first: String = chars
            .next()
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default();
        format!("{first}{} Transformer", chars.as_str())
    }
}

/// One point of the grid: K experts in each of the sparse layers `layers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Experts K of every sparse layer.
    pub experts: u32,
    /// The sparse layers (1-based).
    pub layers: Vec<usize>,
    /// Appended to the method's run and table names: `-K32` where `experts` lists several
    /// values, `-L2` (`-L2+4` for several layers) where `layer` does; empty otherwise.
    pub suffix: String,
}

impl Layout {
    /// Every point of `experts` x `layer`, experts outermost.
    pub fn grid(experts: &OneOrMany<u32>, layer: &OneOrMany<Placement>) -> Vec<Layout> {
        let (experts, placements) = (experts.values(), layer.values());
        let mut layouts = Vec::new();
        for &k in &experts {
            for placement in &placements {
                let layers = placement.layers();
                let mut suffix = String::new();
                if experts.len() > 1 {
                    let _ = write!(suffix, "-K{k}");
                }
                if placements.len() > 1 {
                    let names: Vec<String> = layers.iter().map(usize::to_string).collect();
                    let _ = write!(suffix, "-L{}", names.join("+"));
                }
                layouts.push(Layout {
                    experts: k,
                    layers,
                    suffix,
                });
            }
        }
        layouts
    }

    /// The paper's `NxK` notation: N sparse layers of K experts.
    pub fn modules(&self) -> String {
        format!("{}x{}", self.layers.len(), self.experts)
    }
}

/// Whether rows must say where their sparse layers are: `layer` lists several entries, or
/// one model has several sparse layers.
pub(super) fn shows_positions(layer: &OneOrMany<Placement>) -> bool {
    let placements = layer.values();
    placements.len() > 1 || placements.iter().any(|p| p.layers().len() > 1)
}

/// Checks the grid's settings against the shared model.
///
/// # Errors
/// An empty list, a repeated value, experts below 2, or a sparse layer outside the model.
pub(super) fn check(
    experts: &OneOrMany<u32>,
    layer: &OneOrMany<Placement>,
    dense: &[DenseShape],
    model: &ModelConfig,
) -> Result<(), String> {
    let experts = experts.values();
    let placements = layer.values();
    if experts.is_empty() || placements.is_empty() {
        return Err("sweep.experts and sweep.layer need at least one value each".into());
    }
    if let Some(k) = experts.iter().find(|&&k| k < 2) {
        return Err(format!("sweep.experts: {k} is fewer than 2 experts"));
    }
    if let Some(k) = repeated(&experts) {
        return Err(format!("sweep.experts: {k} is listed twice"));
    }
    if let Some(p) = repeated(&placements) {
        return Err(format!("sweep.layer: {p:?} is listed twice"));
    }
    for placement in &placements {
        let layers = placement.layers();
        if layers.is_empty() {
            return Err("sweep.layer: an empty list of sparse layers".into());
        }
        if let Some(l) = layers.iter().find(|&&l| l == 0 || l > model.layers) {
            return Err(format!(
                "sweep.layer: layer {l} is not a layer of the {}-layer model (1-based)",
                model.layers
            ));
        }
        if let Some(l) = repeated(&layers) {
            return Err(format!(
                "sweep.layer: layer {l} is listed twice in {layers:?}"
            ));
        }
    }
    let names: Vec<&str> = dense.iter().map(|d| d.name.as_str()).collect();
    if let Some(name) = repeated(&names) {
        return Err(format!("sweep.dense: `{name}` is listed twice"));
    }
    if let Some(d) = dense.iter().find(|d| {
        d.name.is_empty()
            || !d
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        return Err(format!(
            "sweep.dense: name `{}` must be letters, digits or `_` (it names the run folder)",
            d.name
        ));
    }
    Ok(())
}

/// The first value listed a second time.
pub(super) fn repeated<T: PartialEq>(values: &[T]) -> Option<&T> {
    values
        .iter()
        .enumerate()
        .find(|(i, v)| values[..*i].contains(v))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_setting_names_runs_as_before() {
        let layouts = Layout::grid(&16.into(), &Placement::Layer(3).into());
        assert_eq!(
            layouts,
            vec![Layout {
                experts: 16,
                layers: vec![3],
                suffix: String::new()
            }]
        );
        assert_eq!(layouts[0].modules(), "1x16");
    }

    #[test]
    fn lists_span_the_grid_and_name_what_varies() {
        let experts = OneOrMany::Many(vec![16, 64]);
        let layer = OneOrMany::Many(vec![Placement::Layer(3), Placement::Layers(vec![2, 4])]);
        let layouts = Layout::grid(&experts, &layer);
        let names: Vec<(&str, String)> = layouts
            .iter()
            .map(|l| (l.suffix.as_str(), l.modules()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("-K16-L3", "1x16".to_owned()),
                ("-K16-L2+4", "2x16".to_owned()),
                ("-K64-L3", "1x64".to_owned()),
                ("-K64-L2+4", "2x64".to_owned()),
            ]
        );
    }

    #[test]
    fn toml_takes_one_value_a_list_or_a_list_of_layer_lists() {
        #[derive(Deserialize)]
        struct Plan {
            experts: OneOrMany<u32>,
            layer: OneOrMany<Placement>,
        }
        let plan: Plan = toml::from_str("experts = [16, 32]\nlayer = [1, [2, 4]]").unwrap();
        assert_eq!(plan.experts.values(), vec![16, 32]);
        assert_eq!(
            plan.layer.values(),
            vec![Placement::Layer(1), Placement::Layers(vec![2, 4])]
        );
        let plan: Plan = toml::from_str("experts = 16\nlayer = 3").unwrap();
        assert_eq!(plan.experts.values(), vec![16]);
        assert_eq!(plan.layer.values(), vec![Placement::Layer(3)]);
    }

    fn model() -> ModelConfig {
        toml::from_str("layers = 4\nd_model = 8\nd_ff = 16\nheads = 2\ncontext = 8").unwrap()
    }

    #[test]
    fn bad_grids_are_refused_by_setting() {
        type Case = (
            OneOrMany<u32>,
            OneOrMany<Placement>,
            Vec<DenseShape>,
            &'static str,
        );

        let one = |l: usize| OneOrMany::One(Placement::Layer(l));
        let cases: Vec<Case> = vec![
            (
                OneOrMany::Many(vec![]),
                one(3),
                vec![],
                "at least one value",
            ),
            (1.into(), one(3), vec![], "fewer than 2"),
            (
                OneOrMany::Many(vec![16, 16]),
                one(3),
                vec![],
                "16 is listed twice",
            ),
            (
                16.into(),
                one(5),
                vec![],
                "layer 5 is not a layer of the 4-layer",
            ),
            (16.into(), one(0), vec![], "layer 0 is not"),
            (
                16.into(),
                OneOrMany::One(Placement::Layers(vec![2, 2])),
                vec![],
                "layer 2 is listed twice",
            ),
            (
                16.into(),
                one(3),
                vec![shape("a b")],
                "name `a b` must be letters",
            ),
            (
                16.into(),
                one(3),
                vec![shape("wide"), shape("wide")],
                "`wide` is listed twice",
            ),
        ];
        for (experts, layer, dense, expected) in cases {
            let error = check(&experts, &layer, &dense, &model()).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
        check(&16.into(), &one(4), &[shape("wider")], &model()).unwrap();
    }

    fn shape(name: &str) -> DenseShape {
        DenseShape {
            name: name.into(),
            layers: None,
            d_model: Some(16),
            d_ff: None,
            heads: None,
        }
    }

    #[test]
    fn a_dense_shape_overrides_only_what_it_sets() {
        let shaped = shape("wider").apply(&model());
        assert_eq!(
            (shaped.layers, shaped.d_model, shaped.d_ff, shaped.heads),
            (4, 16, 16, 2)
        );
        assert_eq!(shape("wider").title(), "Wider Transformer");
    }
}
