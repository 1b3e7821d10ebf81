//! # hashtrain-config
//!
//! hashtrain's run config: one TOML file (`pipelines/NAME.toml`) with `[data]`, `[model]` (and
//! its `[[model.sparse]]` layers) and `[train]`, plus `--set key.path=value` overrides applied
//! before it is checked. Relative paths are taken from the working directory, as on the
//! command line. Format: `schemas/run-config.md`.
//!
//! It does not link libtorch: hashtrain (tch) and the Python trainer (`hashprep.RunConfig`, on
//! torch) read, default and check a config with this one crate, so both accept and refuse the
//! same configs with the same words. Errors name a setting by its path in the config
//! (`model.sparse[0].top_k`); the command lines write `` `set` `` as their flag.
//!
//! ```
//! use std::path::Path;
//! let text = "[data]\ntrain = \"t\"\nvalid = \"v\"\n\
//!             [model]\nlayers = 2\nd_model = 8\nd_ff = 16\nheads = 2\ncontext = 4\n";
//! let config = hashtrain_config::RunConfig::parse(text, Path::new("run.toml"), &["train.steps=5".into()])?;
//! assert_eq!(config.train.runtime.steps, 5);
//! assert_eq!(config.train.optimization.lr, 0.002); // the default
//! let err = hashtrain_config::RunConfig::parse(text, Path::new("run.toml"), &["model.heads=3".into()]).unwrap_err();
//! assert_eq!(err.to_string(), "run.toml: model.d_model 8 is not a multiple of model.heads 3");
//! # Ok::<(), hashtrain_config::ConfigError>(())
//! ```

mod error;
mod layer_id;
mod model;
mod overrides;
mod routing;
mod run;
mod train;
mod validate;

pub use error::{ConfigError, Result};
pub use layer_id::{LayerId, Stack};
pub use model::{ModelConfig, ModelKind, Positions, Scoring, SparseKind, SparseLayer};
pub use overrides::parse_toml;
pub use routing::{LayerRouting, Placement};
pub use run::{DataConfig, RunConfig};
pub use train::{ExpertMatmulSetting, Freeze, Optimization, Precision, Runtime, TrainConfig};
pub use validate::{Invalid, MAX_EXPERTS};

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[data]
train = "t"
valid = "v"

[model]
layers = 2
d_model = 8
d_ff = 16
heads = 2
context = 4

[[model.sparse]]
at = 2
kind = "switch"
experts = 4

[train]
steps = 10
lr = 0.001
"#;

    fn parsed(overrides: &[&str]) -> Result<RunConfig> {
        let overrides: Vec<String> = overrides.iter().map(ToString::to_string).collect();
        RunConfig::parse(BASE, Path::new("base.toml"), &overrides)
    }

    #[test]
    fn overrides_take_toml_values_bare_strings_and_array_indices() {
        let config = parsed(&[
            "train.steps=200",
            "train.betas=[0.8, 0.9]",
            "train.device = cuda:1",
            "model.sparse.0.kind=token-switch",
            "model.sparse.0.capacity_factor=1.5",
            "data.test=elsewhere",
        ])
        .unwrap();
        assert_eq!(config.train.runtime.steps, 200);
        assert_eq!(config.train.optimization.betas, (0.8, 0.9));
        assert_eq!(config.train.runtime.device, "cuda:1");
        assert_eq!(config.model.sparse[0].kind, SparseKind::TokenSwitch);
        assert_eq!(config.model.sparse[0].capacity_factor, Some(1.5));
        assert_eq!(config.data.test.as_deref(), Some(Path::new("elsewhere")));
        // Untouched settings keep the file's values and the defaults.
        assert_eq!(config.train.optimization.lr, 0.001);
        assert_eq!(config.train.runtime.log_every, 10);
    }

    #[test]
    fn bad_overrides_are_refused_naming_the_override() {
        for (item, said) in [
            ("train.steps", "expected key=value"),
            ("train.stepz=3", "stepz"),
            ("model.sparse.x.kind=hash", "`x` is not an index"),
            ("model.sparse.3.kind=hash", "no element 3"),
            ("train.steps.deeper=1", "not a table"),
            ("train.lr=nan", "train.lr"),
        ] {
            let err = parsed(&[item]).unwrap_err().to_string();
            assert!(err.contains(said), "{item}: {err}");
        }
        let err = parsed(&["model.sparse.3.kind=hash"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`set` model.sparse.3.kind=hash"), "{err}");
    }

    #[test]
    fn train_is_one_flat_table_split_into_optimization_and_runtime() {
        let config = parsed(&["train.threads=3", "train.seed=7"]).unwrap();
        assert_eq!(config.train.runtime.threads, 3);
        assert_eq!(config.train.optimization.seed, 7);
        let text = config.to_toml();
        let train = text.split("[train]").nth(1).expect("a [train] table");
        assert!(
            train.contains("threads = 3") && train.contains("seed = 7"),
            "{text}"
        );
        assert!(
            !text.contains("optimization") && !text.contains("runtime"),
            "{text}"
        );
        let again = RunConfig::parse(&text, Path::new("again.toml"), &[]).unwrap();
        assert_eq!(again, config);
        // Settings at their defaults that earlier versions did not have are not written, so an
        // earlier run's config.toml is still the text this version writes for it.
        assert!(
            !text.contains("precision") && !text.contains("expert_matmul"),
            "{text}"
        );
        let set = parsed(&["train.precision=bf16", "train.expert_matmul=grouped"]).unwrap();
        assert_eq!(set.train.optimization.precision, Precision::Bf16);
        let text = set.to_toml();
        assert!(
            text.contains("precision = \"bf16\"") && text.contains("expert_matmul = \"grouped\"")
        );
        assert_eq!(
            RunConfig::parse(&text, Path::new("again.toml"), &[]).unwrap(),
            set
        );
        assert!(parsed(&["train.precision=fp16"]).is_err());
    }
}
