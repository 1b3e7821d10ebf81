//! Every shipped config in `pipelines/` loads and validates: run configs as `hashtrain run`
//! reads them, sweep configs as `hashtrain sweep` does.

use hashtrain::RunConfig;
use hashtrain::SweepConfig;

use crate::common::repo;

#[test]
fn every_shipped_pipeline_config_is_valid() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("\n[sweep]") {
            let config = SweepConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(!config.methods().unwrap().is_empty());
        } else {
            RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} configs in pipelines/");
}
