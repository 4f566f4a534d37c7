//! Every kept fuzz input (seeds, and each crash once found and fixed) through the engine's fuzz
//! targets: what once broke stays fixed without running the fuzzer.

use std::path::PathBuf;

use engine::fuzzing::{self, replay_kept_inputs};

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    assert!(replay_kept_inputs(&fuzz, target, run) > 0, "no seeds for {target} (scripts/fuzz seeds)");
}

#[test]
fn model_files_inputs_never_panic() {
    replay("model_files", fuzzing::model_files);
}

#[test]
fn idx_file_inputs_never_panic() {
    replay("idx_file", fuzzing::idx_file);
}

#[test]
fn toml_config_inputs_never_panic() {
    replay("toml_config", fuzzing::toml_config);
}
