//! Config parsing and validation: every kind of error names its key or layer.

use engine::EngineError;
use engine::model::Config;

const REFERENCE: &str = include_str!("../../trainer/HyperParams.config");

fn err(text: &str) -> String {
    Config::parse(text).expect_err("config should be rejected").to_string()
}

fn with_layers(layers: &str) -> String {
    format!("[model]\n{layers}\n")
}

#[test]
fn reference_config_is_the_tutorial_cnn() {
    let config = Config::parse(REFERENCE).unwrap();
    let spec = config.model_spec().unwrap();
    let kinds: Vec<&str> = spec.layers.iter().map(|l| l.kind.type_name()).collect();
    assert_eq!(kinds, ["conv2d", "relu", "maxpool", "conv2d", "relu", "maxpool", "flatten", "dense", "relu", "dropout", "dense"]);
    let params: usize = spec.parameters().unwrap().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(params, 3_274_634);
    assert_eq!((config.train.epochs, config.train.batch_size, config.train.learning_rate), (3, 100, 2e-3));
    let one_cycle = engine::model::DecayConfig::Onecycle { pct_start: 0.25, div_factor: 25.0, final_div_factor: 1e4 };
    assert_eq!(config.train.schedule.decay, one_cycle);
}

#[test]
fn unknown_keys_are_named() {
    let e = err(&format!("{REFERENCE}\n[extra]\nx = 1\n"));
    assert!(e.contains("extra"), "{e}");
    let e = err(&REFERENCE.replace("epochs = 3", "epochs = 3\nepoch = 4"));
    assert!(e.contains("`epoch`"), "{e}");
    let e = err(&with_layers("[[model.layers]]\ntype = \"conv2d\"\nfilter = 32\nkernel_size = 5"));
    assert!(e.contains("filter"), "{e}");
    assert!(e.contains("line"), "parse errors give a location: {e}");
}

#[test]
fn unknown_layer_type_is_named() {
    let e = err(&with_layers("[[model.layers]]\ntype = \"conv3d\"\nfilters = 2"));
    assert!(e.contains("conv3d"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    for (from, to, key) in [
        ("batch_size = 100", "batch_size = 0", "train.batch_size"),
        ("epochs = 3", "epochs = 0", "train.epochs"),
        ("learning_rate = 0.002", "learning_rate = -1.0", "train.learning_rate"),
        ("weight_decay = 0.0", "weight_decay = -0.5", "train.weight_decay"),
        ("beta1 = 0.9", "beta1 = 1.5", "train.optimizer.beta1"),
        ("epsilon = 1e-8", "epsilon = 0.0", "train.optimizer.epsilon"),
        ("rate = 0.4", "rate = 1.0", "layer 6 (dropout 'dropout1'): rate must be in [0, 1)"),
        ("units = 1024", "units = 0", "layer 5 (dense 'dense1'): units must be at least 1"),
        ("filters = 64", "filters = 0", "layer 2 (conv2d 'conv2'): filters must be at least 1"),
    ] {
        assert!(REFERENCE.contains(from), "{from}");
        let e = err(&REFERENCE.replacen(from, to, 1));
        assert!(e.contains(key), "{to}: {e}");
    }
    let e = err(&with_schedule("type = \"step\"\ndecay_rate = 2.0"));
    assert!(e.contains("train.schedule.decay_rate"), "{e}");
    let e = err(&REFERENCE.replace("padding = \"same\"", "padding = \"full\""));
    assert!(e.contains("padding") && e.contains("full"), "{e}");
    let e = err(&REFERENCE.replace("type = \"adam\"", "type = \"adagrad\""));
    assert!(e.contains("adagrad"), "{e}");
    let e = err(&REFERENCE.replace("epochs = 3", "epochs = \"three\""));
    assert!(e.contains("line"), "{e}");
}

#[test]
fn shape_errors_name_the_layer_and_the_shapes() {
    let dense_on_image =
        with_layers("[[model.layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel_size = 3\n[[model.layers]]\ntype = \"dense\"\nunits = 10");
    let e = Config::parse(&dense_on_image).unwrap_err();
    assert!(matches!(e, EngineError::Shape { index: 1, .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("layer 1 (dense") && e.contains("26x26x4") && e.contains("flatten"), "{e}");

    let big_kernel = with_layers(
        "[[model.layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel_size = 30\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10",
    );
    let e = err(&big_kernel);
    assert!(e.contains("layer 0 (conv2d 'conv1')") && e.contains("30x30") && e.contains("28x28x1"), "{e}");

    let wrong_classes = with_layers("[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 7");
    let e = err(&wrong_classes);
    assert!(e.contains("layer 1 (dense 'dense1')") && e.contains("10 class logits") && e.contains("7"), "{e}");

    let pool_too_big = with_layers(
        "[[model.layers]]\ntype = \"maxpool\"\npool_size = 29\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10",
    );
    let e = err(&pool_too_big);
    assert!(e.contains("layer 0 (maxpool") && e.contains("29x29"), "{e}");

    let conv_on_flat =
        with_layers("[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = 1");
    let e = err(&conv_on_flat);
    assert!(e.contains("layer 1 (conv2d") && e.contains("flat vector of 784"), "{e}");
}

#[test]
fn duplicate_names_and_empty_models_are_rejected() {
    let dup =
        with_layers("[[model.layers]]\ntype = \"flatten\"\nname = \"a\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10\nname = \"a\"");
    assert!(err(&dup).contains("'a'"));
    assert!(err("[model]\nlayers = []\n").contains("no layers"));
}

#[test]
fn missing_file_names_the_path() {
    let e = Config::load(std::path::Path::new("/nonexistent/HyperParams.config")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/HyperParams.config"), "{e}");
}

#[test]
fn load_prefixes_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.config");
    std::fs::write(&path, REFERENCE.replacen("batch_size = 100", "batch_size = 0", 1)).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("bad.config") && e.contains("train.batch_size"), "{e}");
}

#[test]
fn new_layers_and_activation_keys_parse() {
    let config = with_layers(
        r#"[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
activation = { type = "leaky_relu", alpha = 0.1 }
[[model.layers]]
type = "batchnorm"
[[model.layers]]
type = "avgpool"
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
activation = "gelu"
[[model.layers]]
type = "global_avgpool"
[[model.layers]]
type = "dense"
units = 10
activation = "linear""#,
    );
    let spec = Config::parse(&config).unwrap().model_spec().unwrap();
    let kinds: Vec<&str> = spec.layers.iter().map(|l| l.kind.type_name()).collect();
    assert_eq!(kinds, ["conv2d", "leaky_relu", "batchnorm", "avgpool", "conv2d", "gelu", "global_avgpool", "dense"]);
    let names: Vec<&str> = spec.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names[1..4], ["leaky_relu1", "batchnorm1", "avgpool1"]);
    assert_eq!(spec.layers[1].kind, engine::model::LayerKind::LeakyRelu { alpha: 0.1 });
    assert_eq!(spec.layers[2].kind, engine::model::LayerKind::BatchNorm { momentum: 0.99, epsilon: 1e-3 });
    let state: Vec<String> = spec.state().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(state, ["batchnorm1.moving_mean", "batchnorm1.moving_variance"]);
}

#[test]
fn new_layers_bad_values_name_their_key_or_layer() {
    let cases = [
        ("[[model.layers]]\ntype = \"batchnorm\"\nmomentum = 1.5", "momentum must be in [0, 1)"),
        ("[[model.layers]]\ntype = \"batchnorm\"\nepsilon = 0.0", "epsilon must be in (0, 1]"),
        ("[[model.layers]]\ntype = \"leaky_relu\"\nalpha = -1.0", "alpha must be in [0, 1]"),
        (
            "[[model.layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = 3\nactivation = { type = \"tanh\", alpha = 0.1 }",
            "model.layers[0].activation",
        ),
        ("[[model.layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel_size = 3\nactivation = \"swish\"", "activation"),
        ("[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"avgpool\"", "needs an image input"),
    ];
    for (layers, want) in cases {
        let e =
            err(&with_layers(&format!("{layers}\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10")));
        assert!(e.contains(want), "{layers}: {e}");
    }
}

/// The reference config with its `[train.schedule]` table replaced by `schedule`.
fn with_schedule(schedule: &str) -> String {
    let table = REFERENCE.find("[train.schedule]").expect("the reference config has a schedule, its last table");
    format!("{}[train.schedule]\n{schedule}\n", &REFERENCE[..table])
}

#[test]
fn warmup_one_cycle_and_label_smoothing_parse() {
    use engine::model::{DecayConfig, ScheduleConfig};
    let c = Config::parse(&with_schedule("type = \"cosine\"\nwarmup_epochs = 0.5\nmin_learning_rate = 1e-5")).unwrap();
    assert_eq!(
        c.train.schedule,
        ScheduleConfig { decay: DecayConfig::Cosine { min_learning_rate: 1e-5 }, warmup_epochs: 0.5, warmup_steps: 0 }
    );
    let c = Config::parse(&with_schedule("type = \"step\"\ndecay_rate = 0.5\nwarmup_steps = 100")).unwrap();
    assert_eq!(c.train.schedule.warmup_steps, 100);
    let c = Config::parse(&with_schedule("type = \"onecycle\"\npct_start = 0.2")).unwrap();
    assert_eq!(c.train.schedule.decay, DecayConfig::Onecycle { pct_start: 0.2, div_factor: 25.0, final_div_factor: 1e4 });
    let c = Config::parse(&REFERENCE.replace("seed = 1234", "seed = 1234\nlabel_smoothing = 0.1")).unwrap();
    assert_eq!(c.train.label_smoothing, 0.1);
    // A constant schedule and no smoothing write neither warm-up nor smoothing back (results and
    // model files as before).
    let reference = Config::parse(&with_schedule("type = \"constant\"")).unwrap();
    assert_eq!(reference.train.schedule, ScheduleConfig::default());
    let json = serde_json::to_value(&reference).unwrap();
    assert_eq!(json["train"]["schedule"], serde_json::json!({"type": "constant"}));
    assert!(json["train"].get("label_smoothing").is_none());
    assert_eq!(Config::parse(&toml::to_string(&reference).unwrap()).unwrap(), reference, "a config written back parses to itself");
}

#[test]
fn bad_schedule_and_smoothing_values_name_their_key() {
    for (schedule, key) in [
        ("type = \"cosine\"\nwarmup_epochs = 3", "train.schedule.warmup_epochs"),
        ("type = \"cosine\"\nwarmup_epochs = -1", "train.schedule.warmup_epochs"),
        ("type = \"constant\"\nwarmup_epochs = 1\nwarmup_steps = 10", "train.schedule.warmup_steps"),
        ("type = \"onecycle\"\npct_start = 1.0", "train.schedule.pct_start"),
        ("type = \"onecycle\"\ndiv_factor = 0.5", "train.schedule.div_factor"),
        ("type = \"onecycle\"\nfinal_div_factor = -1", "train.schedule.final_div_factor"),
        ("type = \"onecycle\"\nwarmup_steps = 10", "train.schedule.warmup_steps"),
        ("type = \"exponential\"\ndecay_rate = 0.5\ndecay_epochs = 0", "train.schedule.decay_epochs"),
        ("type = \"step\"\ndecay_rate = 0.5\nstep_epochs = 0", "train.schedule.step_epochs"),
    ] {
        let e = err(&with_schedule(schedule));
        assert!(e.contains(key), "{schedule}: {e}");
    }
    let e = err(&with_schedule("type = \"constant\"\nwarmup_epoch = 1"));
    assert!(e.contains("warmup_epoch"), "a misspelt key is refused: {e}");
    let e = err(&with_schedule("type = \"cosine\"\nwarmup_epoch = 1"));
    assert!(e.contains("warmup_epoch"), "a misspelt key is refused: {e}");
    for v in ["1.0", "-0.1", "nan"] {
        let e = err(&REFERENCE.replace("seed = 1234", &format!("seed = 1234\nlabel_smoothing = {v}")));
        assert!(e.contains("train.label_smoothing"), "{v}: {e}");
    }
}
