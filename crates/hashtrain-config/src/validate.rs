//! The checks a config passes before anything is allocated: ranges, what each sparse layer's
//! kind needs, and bounds on sizes that no real run reaches. Each names its setting by path.

use std::path::Path;

use crate::error::ConfigError;
use crate::layer_id::Stack;
use crate::model::{ModelKind, SparseKind};
use crate::run::RunConfig;
use crate::train::Freeze;

/// The most experts a Switch, Token-Switch or BASE layer may have (`experts`): 64 times
/// DeepSeek-V3's 256, and a bound on what a mistyped value allocates.
pub const MAX_EXPERTS: u32 = 1 << 16;

/// A setting that fails a check, before it is placed in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The setting's path in the config (`model.sparse[0].top_k`).
    pub setting: String,
    /// What is wrong, following the setting's name.
    pub problem: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.setting, self.problem)
    }
}

impl Invalid {
    fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
        }
    }

    /// The error of this problem in the config file `origin`.
    pub fn in_file(self, origin: &Path) -> ConfigError {
        ConfigError::Setting {
            origin: origin.to_owned(),
            setting: self.setting,
            problem: self.problem,
        }
    }
}

type Checked = Result<(), Invalid>;

fn at_least_one(setting: &str, value: u64) -> Checked {
    if value == 0 {
        return Err(Invalid::new(setting, "0 must be at least 1"));
    }
    Ok(())
}

fn in_unit_interval(setting: &str, value: f64) -> Checked {
    if !(0.0..1.0).contains(&value) {
        return Err(Invalid::new(setting, format!("{value} must be in [0, 1)")));
    }
    Ok(())
}

impl RunConfig {
    /// Checks ranges and that each sparse layer has what its kind needs.
    ///
    /// # Errors
    /// The first setting that fails, named by its path.
    pub fn validate(&self) -> Checked {
        self.check_finite()?;
        self.check_model()?;
        self.check_sparse_layers()?;
        self.check_train()?;
        self.check_sizes()
    }

    fn check_model(&self) -> Checked {
        let m = &self.model;
        for (setting, value) in [
            ("model.layers", i64::try_from(m.layers).unwrap_or(i64::MAX)),
            ("model.d_model", m.d_model),
            ("model.d_ff", m.d_ff),
            ("model.heads", m.heads),
            (
                "model.context",
                i64::try_from(m.context).unwrap_or(i64::MAX),
            ),
        ] {
            if value < 1 {
                return Err(Invalid::new(setting, format!("{value} must be at least 1")));
            }
        }
        match m.kind {
            ModelKind::Seq2seq if m.encoder_layers == 0 => {
                return Err(Invalid::new(
                    "model.encoder_layers",
                    "0 must be at least 1 for model.kind = \"seq2seq\"",
                ))
            }
            ModelKind::Decoder if m.encoder_layers > 0 || m.encoder_context.is_some() => {
                let setting = if m.encoder_layers > 0 {
                    "model.encoder_layers"
                } else {
                    "model.encoder_context"
                };
                return Err(Invalid::new(
                    setting,
                    "is a setting of model.kind = \"seq2seq\", not of a decoder-only model",
                ));
            }
            _ => {}
        }
        if m.encoder_context == Some(0) {
            return Err(Invalid::new(
                "model.encoder_context",
                "0 must be at least 1",
            ));
        }
        if m.d_model % m.heads != 0 {
            return Err(Invalid::new(
                "model.d_model",
                format!("{} is not a multiple of model.heads {}", m.d_model, m.heads),
            ));
        }
        in_unit_interval("model.dropout", m.dropout)
    }

    fn check_sparse_layers(&self) -> Checked {
        let m = &self.model;
        let mut seen = Vec::new();
        for (i, s) in m.sparse.iter().enumerate() {
            let setting = |name: &str| format!("model.sparse[{i}].{name}");
            let kind = s.kind.name();
            if s.stack == Stack::Encoder && m.kind != ModelKind::Seq2seq {
                return Err(Invalid::new(
                    setting("stack"),
                    "= \"encoder\": only a model.kind = \"seq2seq\" has an encoder",
                ));
            }
            let layers = m.layers_of(s.stack);
            if s.at == 0 || s.at > layers {
                let count = match s.stack {
                    Stack::Decoder => "model.layers",
                    Stack::Encoder => "model.encoder_layers",
                };
                return Err(Invalid::new(
                    setting("at"),
                    format!("= {}: layers count from 1 to {count} = {layers}", s.at),
                ));
            }
            if seen.contains(&s.layer()) {
                return Err(Invalid::new(
                    setting("at"),
                    format!("= {}: {} is given twice", s.at, s.layer()),
                ));
            }
            seen.push(s.layer());
            if s.kind.uses_table() && s.table.is_none() {
                return Err(Invalid::new(
                    setting("table"),
                    format!("is missing: kind {kind} needs a table"),
                ));
            }
            if !s.kind.uses_table() && s.table.is_some() {
                return Err(Invalid::new(
                    setting("table"),
                    format!("is given, but kind {kind} takes no table"),
                ));
            }
            if s.kind.is_switch() && s.experts.unwrap_or(0) < 1 {
                return Err(Invalid::new(
                    setting("experts"),
                    format!("must be at least 1 for kind {kind}"),
                ));
            }
            if s.load_bal < 0.0 {
                return Err(Invalid::new(
                    setting("load_bal"),
                    format!("{} must not be negative", s.load_bal),
                ));
            }
            if let Some(c) = s.capacity_factor.filter(|&c| c <= 0.0) {
                return Err(Invalid::new(
                    setting("capacity_factor"),
                    format!("{c} must be positive"),
                ));
            }
            if s.kind == SparseKind::Dense && s.d_ff.is_some() {
                return Err(Invalid::new(
                    setting("d_ff"),
                    "is the experts' width; a dense layer uses model.d_ff",
                ));
            }
            if let Some(d) = s.d_ff.filter(|&d| d < 1) {
                return Err(Invalid::new(
                    setting("d_ff"),
                    format!("{d} must be at least 1"),
                ));
            }
            if s.kind != SparseKind::Hash {
                let given = [
                    ("top_k", s.top_k.is_some()),
                    ("scoring", s.scoring.is_some()),
                ];
                if let Some((name, _)) = given.iter().find(|(_, given)| *given) {
                    return Err(Invalid::new(
                        setting(name),
                        format!("is a setting of kind hash, not {kind}"),
                    ));
                }
            }
            if s.top_k == Some(0) {
                return Err(Invalid::new(setting("top_k"), "0 must be at least 1"));
            }
        }
        Ok(())
    }

    fn check_train(&self) -> Checked {
        let (o, r) = (&self.train.optimization, &self.train.runtime);
        at_least_one("train.steps", r.steps)?;
        at_least_one("train.batch_size", o.batch_size as u64)?;
        at_least_one("train.log_every", r.log_every)?;
        at_least_one("train.keep_checkpoints", r.keep_checkpoints as u64)?;
        for (setting, value) in [("train.lr", o.lr), ("train.eps", o.eps)] {
            if value <= 0.0 {
                return Err(Invalid::new(setting, format!("{value} must be positive")));
            }
        }
        if o.clip < 0.0 {
            return Err(Invalid::new(
                "train.clip",
                format!("{} must not be negative", o.clip),
            ));
        }
        in_unit_interval("train.betas[0]", o.betas.0)?;
        in_unit_interval("train.betas[1]", o.betas.1)?;
        self.check_freeze()
    }

    /// Each entry of `train.freeze` once, and only where the model has the weights it names.
    fn check_freeze(&self) -> Checked {
        let freeze = &self.train.optimization.freeze;
        let sparse = || {
            self.model
                .sparse
                .iter()
                .filter(|s| s.kind != SparseKind::Dense)
        };
        for (i, entry) in freeze.iter().enumerate() {
            let setting = format!("train.freeze[{i}]");
            let name = entry.name();
            if freeze[..i].contains(entry) {
                return Err(Invalid::new(
                    setting,
                    format!("= \"{name}\" is listed twice"),
                ));
            }
            let missing = match entry {
                Freeze::Experts | Freeze::AllButSparse => {
                    (sparse().count() == 0).then_some("the model has no sparse layer")
                }
                // A hash layer's gate exists only with a top-k table; the trainer refuses
                // `router` where no weight is one (it knows the tables).
                Freeze::Router => sparse()
                    .all(|s| !s.kind.is_switch() && s.kind != SparseKind::Hash)
                    .then_some("the model has no learned router (switch, token-switch, base or a top-k hash layer's gate)"),
                Freeze::AllButLast => None,
            };
            if let Some(problem) = missing {
                return Err(Invalid::new(setting, format!("= \"{name}\": {problem}")));
            }
        }
        Ok(())
    }

    /// Refuses sizes that no real run reaches before anything is allocated: a mistyped
    /// `prefetch` or `experts` would otherwise abort the process on a failed allocation.
    fn check_sizes(&self) -> Checked {
        let (m, t) = (&self.model, &self.train);
        for (setting, value, cap) in [
            ("train.workers", t.runtime.workers, hashprep::MAX_WORKERS),
            ("train.prefetch", t.runtime.prefetch, hashprep::MAX_PREFETCH),
        ] {
            if value > cap {
                return Err(Invalid::new(
                    setting,
                    format!("{value} is above the limit of {cap}"),
                ));
            }
        }
        let longest = m.context.max(m.encoder_positions().unwrap_or(0));
        let positions = (t.optimization.batch_size as u64).saturating_mul(longest as u64);
        if positions > hashprep::MAX_BATCH_POSITIONS {
            return Err(Invalid::new(
                "train.batch_size",
                format!(
                    "{} x model.context {} = {positions} positions per batch, more than the \
                     limit of {}",
                    t.optimization.batch_size,
                    m.context,
                    hashprep::MAX_BATCH_POSITIONS
                ),
            ));
        }
        for (i, s) in m.sparse.iter().enumerate() {
            if let Some(experts) = s.experts.filter(|&k| k > MAX_EXPERTS) {
                return Err(Invalid::new(
                    format!("model.sparse[{i}].experts"),
                    format!("{experts} is above the limit of {MAX_EXPERTS}"),
                ));
            }
        }
        Ok(())
    }

    /// Refuses `nan` and `inf` in every real-valued setting (comparisons let NaN through).
    fn check_finite(&self) -> Checked {
        let (m, t) = (&self.model, &self.train);
        let mut settings = vec![
            ("model.dropout".to_owned(), m.dropout),
            ("train.lr".to_owned(), t.optimization.lr),
            ("train.clip".to_owned(), t.optimization.clip),
            ("train.betas[0]".to_owned(), t.optimization.betas.0),
            ("train.betas[1]".to_owned(), t.optimization.betas.1),
            ("train.eps".to_owned(), t.optimization.eps),
        ];
        for (i, s) in m.sparse.iter().enumerate() {
            settings.push((format!("model.sparse[{i}].load_bal"), s.load_bal));
            if let Some(c) = s.capacity_factor {
                settings.push((format!("model.sparse[{i}].capacity_factor"), c));
            }
        }
        match settings.into_iter().find(|(_, v)| !v.is_finite()) {
            Some((setting, value)) => Err(Invalid::new(
                setting,
                format!("= {value} is not a finite number"),
            )),
            None => Ok(()),
        }
    }
}
