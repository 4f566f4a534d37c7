//! Every kept fuzz input (seeds, and each crash once found and fixed) through the server's fuzz
//! targets: what once broke stays fixed without running the fuzzer.

use std::path::PathBuf;

use engine::fuzzing::replay_kept_inputs;
use server::fuzzing;

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    assert!(replay_kept_inputs(&fuzz, target, run) > 0, "no seeds for {target} (scripts/fuzz seeds)");
}

#[test]
fn predict_request_inputs_never_panic() {
    replay("predict_request", fuzzing::predict_request);
}

#[test]
fn rest_body_inputs_never_panic() {
    replay("rest_body", fuzzing::rest_body);
}

#[test]
fn model_config_inputs_never_panic() {
    replay("model_config", fuzzing::model_config);
}
