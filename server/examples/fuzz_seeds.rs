//! Writes the fuzz targets' seed corpora (`fuzz/seeds/<target>/`) from real inputs: the repo's
//! configs, an exported model, the head of the real MNIST test files, Predict requests and REST
//! bodies as clients send them. `scripts/fuzz seeds` runs it; the seeds are kept in the repo.
//!
//!     cargo run -p server --example fuzz_seeds -- [REPO_ROOT]

use std::path::{Path, PathBuf};

use engine::Device;
use engine::model::{Config, Network};
use prost::Message;
use proto::tensorflow::serving::{ModelSpec, PredictRequest};
use proto::tensorflow::tensor_shape_proto::Dim;
use proto::tensorflow::{DataType, TensorProto, TensorShapeProto};
use serde_json::json;

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A real-looking digit: a stroke of bright pixels on black, in [0, 1].
fn digit(seed: usize) -> Vec<f32> {
    (0..784).map(|i| if (i % 28 + seed) % 9 < 2 && (i / 28) > 4 && (i / 28) < 24 { 1.0 } else { 0.0 }).collect()
}

fn tensor(dims: &[i64], values: &[f32], content: bool) -> TensorProto {
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: dims.iter().map(|&size| Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        tensor_content: if content { values.iter().flat_map(|v| v.to_le_bytes()).collect() } else { Vec::new() },
        float_val: if content { Vec::new() } else { values.to_vec() },
        ..Default::default()
    }
}

fn predict_requests(root: &Path) {
    let spec = Some(ModelSpec { name: "mnist".into(), version_choice: None, signature_name: String::new() });
    let one = digit(0);
    let two: Vec<f32> = [digit(1), digit(2)].concat();
    let cases = [
        ("content_1x784", tensor(&[1, 784], &one, true), vec![]),
        ("float_val_2x28x28", tensor(&[2, 28, 28], &two, false), vec![]),
        ("content_1x28x28x1_filtered", tensor(&[1, 28, 28, 1], &one, true), vec!["classes".to_string()]),
    ];
    for (name, t, output_filter) in cases {
        let request = PredictRequest { model_spec: spec.clone(), inputs: [("images".to_string(), t)].into(), output_filter };
        write(root, "predict_request", name, &request.encode_to_vec());
    }
}

fn rest_bodies(root: &Path) {
    let rows = |x: &[f32]| -> Vec<Vec<f32>> { x.chunks(28).map(<[f32]>::to_vec).collect() };
    let bodies = [
        ("instances_flat", json!({"instances": [digit(0)]}).to_string()),
        ("instances_28x28", json!({"signature_name": "serving_default", "instances": [rows(&digit(1))]}).to_string()),
        ("instances_named", json!({"instances": [{"images": digit(2)}]}).to_string()),
        ("inputs_columnar", json!({"inputs": {"images": [digit(3), digit(4)]}}).to_string()),
        ("inputs_nan_literal", format!("{{\"inputs\": [[NaN, Infinity, -Infinity{}]]}}", ", 0.5".repeat(781))),
    ];
    for (name, body) in bodies {
        write(root, "rest_body", name, body.as_bytes());
    }
}

fn model_files(root: &Path) {
    let tmp = std::env::temp_dir().join(format!("fuzz-seeds-{}", std::process::id()));
    let tiny = std::fs::read_to_string(root.join("engine/tests/fixtures/tiny_cnn.toml")).unwrap();
    // Every layer kind and both paddings, still small.
    let every_layer = "[model]\n[[model.layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel_size = 5\npadding = \"same\"\n\
                       activation = \"relu\"\n[[model.layers]]\ntype = \"maxpool\"\npool_size = 3\nstrides = 2\n\
                       [[model.layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = [3, 2]\nstrides = [2, 1]\npadding = 1\n\
                       [[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dropout\"\n\
                       rate = 0.3\n[[model.layers]]\ntype = \"dense\"\nunits = 10\n";
    for (name, config) in [("tiny_cnn", tiny.as_str()), ("every_layer", every_layer)] {
        let spec = Config::parse(config).unwrap().model_spec().unwrap();
        let net = Network::new(spec, Device::cpu(), 1).unwrap();
        let dir = engine::export::write(&tmp, name, &net, json!({}), 0).unwrap();
        let model = std::fs::read(dir.join(engine::export::MODEL_FILE)).unwrap();
        let weights = std::fs::read(dir.join(engine::export::WEIGHTS_FILE)).unwrap();
        write(root, "model_files", name, &engine::fuzzing::join_model_files(&model, &weights));
    }
    let _ = std::fs::remove_dir_all(tmp);
}

/// The first images and labels of the real MNIST test set, as IDX files of their own.
fn idx_files(root: &Path) {
    let data = root.join("data/mnist");
    let images = std::fs::read(data.join("t10k-images-idx3-ubyte")).expect("MNIST (scripts/fetch-mnist)");
    let labels = std::fs::read(data.join("t10k-labels-idx1-ubyte")).expect("MNIST (scripts/fetch-mnist)");
    let n: u32 = 3;
    let mut head = images[..4].to_vec();
    head.extend_from_slice(&n.to_be_bytes());
    head.extend_from_slice(&images[8..16]);
    head.extend_from_slice(&images[16..16 + n as usize * 784]);
    write(root, "idx_file", "t10k_images_3", &head);
    let mut head = labels[..4].to_vec();
    head.extend_from_slice(&n.to_be_bytes());
    head.extend_from_slice(&labels[8..8 + n as usize]);
    write(root, "idx_file", "t10k_labels_3", &head);
}

fn toml_configs(root: &Path) {
    let mut configs: Vec<PathBuf> = vec![root.join("trainer/HyperParams.config"), root.join("engine/tests/fixtures/tiny_cnn.toml")];
    if let Ok(dir) = std::fs::read_dir(root.join("trainer/configs")) {
        configs.extend(dir.flatten().map(|e| e.path()));
    }
    for path in configs {
        let name = path.file_name().unwrap().to_string_lossy().replace('.', "_");
        write(root, "toml_config", &name, &std::fs::read(&path).unwrap());
    }
}

fn model_configs(root: &Path) {
    let configs = [
        (
            "one_model",
            "model_config_list {\n  config {\n    name: 'mnist'\n    base_path: '/models/mnist'\n    model_platform: 'tensorflow'\n  }\n}\n",
        ),
        (
            "policies",
            "# several models\nmodel_config_list {\n  config { name: \"a\" base_path: \"a\" model_version_policy { specific { versions: 1 versions: 3 } } }\n  config { name: 'b' base_path: '/b' model_version_policy: { all: {} } }\n  config { name: 'c' base_path: 'c' model_version_policy { latest { num_versions: 2 } } }\n}\n",
        ),
    ];
    for (name, text) in configs {
        write(root, "model_config", name, text.as_bytes());
    }
}

fn main() {
    let root = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    predict_requests(&root);
    rest_bodies(&root);
    model_files(&root);
    idx_files(&root);
    toml_configs(&root);
    model_configs(&root);
    println!("seeds written to {}", root.join("fuzz/seeds").display());
}
