//! Every kept fuzz input (seeds, and each crash once found and fixed) through the server's fuzz
//! targets: what once broke stays fixed without running the fuzzer.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = ["seeds", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no seeds for {target} (cargo run -p server --example fuzz_seeds)");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target} panics on {}", file.display());
        }
    }
}

#[test]
fn predict_request_inputs_never_panic() {
    replay("predict_request", server::fuzzing::predict_request);
}

#[test]
fn rest_body_inputs_never_panic() {
    replay("rest_body", server::fuzzing::rest_body);
}

#[test]
fn model_config_inputs_never_panic() {
    replay("model_config", server::fuzzing::model_config);
}
