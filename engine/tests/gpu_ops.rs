//! Every op on the GPU against the CPU oracle: one test body runs on both devices, on awkward
//! shapes (1, 3, 17, 28, 127 ...), with capacity beyond `n` to catch writes past the batch.

mod common;

use common::{conv, distinct, random, same_on_both};
use engine::backend::{Activation, ConvInput, Dropout, Epilogue, GradMask, NormGeometry, NormParams, PoolGeometry, UpdateRule};
use engine::cpu::optim::AdamStep;
use engine::rng::DropoutKey;
use engine::{Device, Tensor};

fn upload(d: &Device, name: &str, values: &[f32]) -> Tensor {
    Tensor::from_host(d, name, &[values.len()], values).unwrap()
}

/// The epilogues a layer can carry: none, each activation whose slope follows from its output,
/// a dropout, and a dropout with each activation that commutes with it.
fn epilogues() -> Vec<Epilogue> {
    let dropout = Some(Dropout { key: DropoutKey { seed: 3, layer: 0, step: 5 }, rate: 0.4 });
    let leaky = Some(Activation::LeakyRelu { alpha: 0.15 });
    let mut all = vec![Epilogue::default(), Epilogue { activation: None, dropout }];
    for f in [Activation::Relu, Activation::LeakyRelu { alpha: 0.15 }, Activation::Tanh, Activation::Sigmoid] {
        all.push(Epilogue { activation: Some(f), dropout: None });
    }
    all.push(Epilogue { activation: Some(Activation::Relu), dropout });
    all.push(Epilogue { activation: leaky, dropout });
    all
}

/// The epilogues whose gradient masks multiply by exact values (0, 1, alpha, the dropout scale).
fn exact_epilogues() -> Vec<Epilogue> {
    epilogues().into_iter().filter(|e| e.activation.is_none_or(|f| f.commutes_with_dropout())).collect()
}

#[test]
fn matmul_matches_cpu() {
    // Every tile variant (by the number of columns: up to 16, 32 with few or many rows, 64,
    // more), each with M, N, K off and on multiples of 4 and 8 (aligned operands are read as
    // vec4), K = 25 and N = 10 and 32; the shapes with few output tiles and a long reduction
    // take the split-K path.
    let shapes = [
        (1, 1, 1),
        (3, 17, 5),
        (17, 3, 127),
        (28, 127, 65),
        (64, 64, 64),
        (130, 70, 33),
        (3, 5, 2000),
        (65, 17, 1500),
        (130, 10, 25),
        (132, 16, 24),
        (26, 32, 25),
        (31, 19, 2000),
        (129, 32, 44),
        (200, 31, 9),
        (130, 64, 800),
        (257, 63, 3),
        (130, 129, 33),
        (256, 128, 64),
        (100, 1024, 520),
        (12, 8, 4000),
    ];
    for (m, n, k) in shapes {
        let (a, b) = (random(m * k, 1), random(k * n, 2));
        same_on_both(&format!("matmul {m}x{n}x{k}"), 1e-5 * k as f32, 1e-4, |d| {
            let mut c = Tensor::zeros(d, &[m, n]);
            d.matmul(m, n, k, &upload(d, "a", &a), &upload(d, "b", &b), &mut c);
            vec![("c", c.to_host())]
        });
    }
}

#[test]
fn dense_passes_match_cpu() {
    // (examples, inputs, outputs); the last has a batch long enough to split the weight gradient.
    // With inputs and outputs multiples of 4, the transposed operands (W in backward input, x
    // in backward weight) are read as vec4 too.
    for (n, inputs, outputs) in
        [(1, 3, 17), (17, 127, 10), (3, 28, 65), (2, 1, 1), (600, 5, 3), (7, 25, 32), (20, 64, 32), (600, 8, 12), (5, 1024, 10)]
    {
        let cap = n + 1;
        let (x, w, b, dy) = (random(cap * inputs, 3), random(inputs * outputs, 4), random(outputs, 5), random(cap * outputs, 6));
        same_on_both(&format!("dense n={n} {inputs}->{outputs}"), 1e-5 * n.max(inputs) as f32, 1e-4, |d| {
            let (xt, wt, bt, dyt) = (upload(d, "x", &x), upload(d, "w", &w), upload(d, "b", &b), upload(d, "dy", &dy));
            let mut y = Tensor::zeros(d, &[cap, outputs]);
            let mut dx = Tensor::zeros(d, &[cap, inputs]);
            let (mut dw, mut db) = (Tensor::zeros(d, &[inputs, outputs]), Tensor::zeros(d, &[outputs]));
            d.dense_forward(n, inputs, outputs, &xt, &wt, &bt, Epilogue::default(), &mut y);
            d.dense_backward_input(n, inputs, outputs, &dyt, &wt, None, &mut dx);
            d.dense_backward_weight(n, inputs, outputs, &xt, &dyt, &mut dw, &mut db);
            vec![("y", y.to_host()), ("dx", dx.to_host()), ("dw", dw.to_host()), ("db", db.to_host())]
        });
    }
}

/// A dense layer's fused epilogue (forward) and gradient masks (backward, the mask read from an
/// activation `act` of the input's shape), against the CPU, which applies them as separate layers.
#[test]
fn dense_epilogues_match_cpu() {
    for (n, inputs, outputs) in [(3, 28, 65), (17, 127, 10), (100, 3136, 8)] {
        let cap = n + 1;
        let (x, w, b, dy, act) =
            (random(cap * inputs, 3), random(inputs * outputs, 4), random(outputs, 5), random(cap * outputs, 6), random(cap * inputs, 7));
        for epilogue in epilogues() {
            same_on_both(&format!("dense n={n} {inputs}->{outputs} {epilogue:?}"), 1e-5 * n.max(inputs) as f32, 1e-4, |d| {
                let (xt, wt, bt, dyt, actt) =
                    (upload(d, "x", &x), upload(d, "w", &w), upload(d, "b", &b), upload(d, "dy", &dy), upload(d, "act", &act));
                let mut y = Tensor::zeros(d, &[cap, outputs]);
                let mut dx = Tensor::zeros(d, &[cap, inputs]);
                d.dense_forward(n, inputs, outputs, &xt, &wt, &bt, epilogue, &mut y);
                d.dense_backward_input(n, inputs, outputs, &dyt, &wt, Some(GradMask { epilogue, activation: &actt }), &mut dx);
                vec![("y", y.to_host()), ("dx", dx.to_host())]
            });
        }
    }
}

#[test]
fn conv2d_passes_match_cpu() {
    let cases = [
        (2, conv((28, 28), 1, 4, 5, 1, 2)),  // the reference model's first layer, "same"
        (3, conv((7, 9), 3, 5, 3, 2, 0)),    // stride 2, valid, odd sizes
        (1, conv((5, 5), 17, 3, 1, 1, 0)),   // pointwise
        (2, conv((6, 6), 2, 3, 3, 2, 1)),    // stride 2 with padding: taps off the stride grid
        (1, conv((3, 3), 1, 1, 3, 1, 1)),    // 1 channel in and out
        (5, conv((14, 14), 8, 16, 5, 1, 2)), // the second layer's shape, small: split-K weights
        (3, conv((28, 28), 1, 32, 5, 1, 2)), // conv1 of the default model: K = 25, N = 32
        (2, conv((9, 8), 3, 10, 4, 3, 2)),   // stride 3 with padding: every tap remainder, N = 10
        (1, conv((2, 3), 2, 3, 2, 1, 0)),    // fewer output positions than a K step moves over
        (2, conv((7, 7), 4, 8, 3, 2, 1)),    // four-channel groups (vec4 loads) with stride and padding
        (2, conv((6, 5), 12, 20, 1, 1, 0)),  // pointwise, vec4
        (2, conv((7, 7), 32, 64, 5, 1, 2)),  // conv2 of the default model, small
    ];
    for (n, g) in cases {
        let cap = n + 1;
        let (x, w, b) = (random(cap * g.in_len(), 7), random(g.weight_len(), 8), random(g.out_c, 9));
        let dy = random(cap * g.out_len(), 10);
        let what = format!("conv2d n={n} {g:?}");
        same_on_both(&what, 1e-5 * (n * g.positions()).max(g.patch_len()) as f32, 1e-4, |d| {
            let (xt, wt, bt, dyt) = (upload(d, "x", &x), upload(d, "w", &w), upload(d, "b", &b), upload(d, "dy", &dy));
            let mut y = Tensor::zeros(d, &[cap, g.out_len()]);
            let mut dx = Tensor::zeros(d, &[cap, g.in_len()]);
            let (mut dw, mut db) = (Tensor::zeros(d, &[g.weight_len()]), Tensor::zeros(d, &[g.out_c]));
            d.conv2d_forward(&g, n, &xt, &wt, &bt, Epilogue::default(), &mut y);
            d.conv2d_backward_input(&g, n, &dyt, &wt, None, &mut dx);
            d.conv2d_backward_weight(&g, n, &xt, &dyt, &mut dw, &mut db);
            vec![("y", y.to_host()), ("dx", dx.to_host()), ("dw", dw.to_host()), ("db", db.to_host())]
        });
    }
}

/// A first convolution reading u8 pixels (four to a word) scales them as the input
/// normalisation would: the same outputs as from the scaled floats, on both devices.
#[test]
fn conv2d_reads_u8_pixels_as_scaled_values() {
    for (n, g) in [(3, conv((28, 28), 1, 32, 5, 1, 2)), (2, conv((5, 6), 4, 8, 3, 1, 1)), (2, conv((7, 5), 3, 5, 3, 2, 0))] {
        let cap = n + 1;
        let pixels: Vec<u8> = (0..n * g.in_len()).map(|i| (i * 131 % 256) as u8).collect();
        let (w, b, dy) = (random(g.weight_len(), 8), random(g.out_c, 9), random(cap * g.out_len(), 10));
        same_on_both(&format!("u8 conv2d n={n} {g:?}"), 1e-5 * (n * g.positions()).max(g.patch_len()) as f32, 1e-4, |d| {
            let (wt, bt, dyt) = (upload(d, "w", &w), upload(d, "b", &b), upload(d, "dy", &dy));
            let mut packed = Tensor::<u32>::zeros(d, &[(cap * g.in_len()).div_ceil(4)]);
            d.stage_pixels(&pixels, &mut packed);
            let mut scaled = Tensor::zeros(d, &[cap * g.in_len()]);
            d.upload_images_u8(&pixels, &mut scaled);
            let run = |x: ConvInput| {
                let mut y = Tensor::zeros(d, &[cap, g.out_len()]);
                let (mut dw, mut db) = (Tensor::zeros(d, &[g.weight_len()]), Tensor::zeros(d, &[g.out_c]));
                d.conv2d_forward(&g, n, x, &wt, &bt, Epilogue::relu(), &mut y);
                d.conv2d_backward_weight(&g, n, x, &dyt, &mut dw, &mut db);
                [y.to_host(), dw.to_host(), db.to_host()]
            };
            let from_u8 = run((&packed).into());
            assert_eq!(from_u8, run((&scaled).into()), "u8 pixels and their scaled floats give the same results on {}", d.describe());
            let [y, dw, db] = from_u8;
            vec![("y", y), ("dw", dw), ("db", db)]
        });
    }
}

#[test]
fn conv2d_epilogues_match_cpu() {
    for (n, g) in [(2, conv((28, 28), 1, 4, 5, 1, 2)), (3, conv((7, 9), 3, 5, 3, 2, 0))] {
        let cap = n + 1;
        let (x, w, b) = (random(cap * g.in_len(), 7), random(g.weight_len(), 8), random(g.out_c, 9));
        let (dy, act) = (random(cap * g.out_len(), 10), random(cap * g.in_len(), 11));
        for epilogue in epilogues() {
            same_on_both(&format!("conv2d n={n} {g:?} {epilogue:?}"), 1e-5 * (n * g.positions()).max(g.patch_len()) as f32, 1e-4, |d| {
                let (xt, wt, bt, dyt, actt) =
                    (upload(d, "x", &x), upload(d, "w", &w), upload(d, "b", &b), upload(d, "dy", &dy), upload(d, "act", &act));
                let mut y = Tensor::zeros(d, &[cap, g.out_len()]);
                let mut dx = Tensor::zeros(d, &[cap, g.in_len()]);
                d.conv2d_forward(&g, n, &xt, &wt, &bt, epilogue, &mut y);
                d.conv2d_backward_input(&g, n, &dyt, &wt, Some(GradMask { epilogue, activation: &actt }), &mut dx);
                vec![("y", y.to_host()), ("dx", dx.to_host())]
            });
        }
    }
}

#[test]
fn max_pool_matches_cpu_exactly() {
    let pool = |in_h: usize, in_w: usize, channels: usize, size: usize, stride: usize| PoolGeometry {
        in_h,
        in_w,
        channels,
        out_h: (in_h - size) / stride + 1,
        out_w: (in_w - size) / stride + 1,
        size_h: size,
        size_w: size,
        stride_h: stride,
        stride_w: stride,
    };
    // Non-overlapping, overlapping (3 over 2), stride 1, and a window that leaves a border unused.
    for (n, g) in [(2, pool(28, 28, 3, 2, 2)), (3, pool(7, 7, 5, 3, 2)), (1, pool(4, 5, 1, 3, 1)), (2, pool(5, 5, 17, 2, 2))] {
        let cap = n + 1;
        let (x, dy) = (distinct(cap * g.in_len(), 11), random(cap * g.out_len(), 12));
        same_on_both(&format!("max pool n={n} {g:?}"), 0.0, 0.0, |d| {
            let (xt, dyt) = (upload(d, "x", &x), upload(d, "dy", &dy));
            let mut y = Tensor::zeros(d, &[cap, g.out_len()]);
            let mut argmax = Tensor::<u32>::zeros(d, &[cap, g.out_len()]);
            let mut dx = Tensor::zeros(d, &[cap, g.in_len()]);
            d.max_pool_forward(&g, n, &xt, &mut y, &mut argmax);
            d.max_pool_backward(&g, n, &dyt, &argmax, None, &mut dx);
            let mut out = vec![("y", y.to_host()), ("dx", dx.to_host())];
            // With the gradient masks of an activation and a dropout before the pool (x as the
            // activation).
            for epilogue in exact_epilogues() {
                d.max_pool_backward(&g, n, &dyt, &argmax, Some(GradMask { epilogue, activation: &xt }), &mut dx);
                out.push(("masked dx", dx.to_host()));
            }
            let mut avg = Tensor::zeros(d, &[cap, g.out_len()]);
            d.avg_pool_forward(&g, n, &xt, &mut avg);
            out.push(("avg y", avg.to_host()));
            for epilogue in exact_epilogues() {
                d.avg_pool_backward(&g, n, &dyt, Some(GradMask { epilogue, activation: &xt }), &mut dx);
                out.push(("avg masked dx", dx.to_host()));
            }
            out.push(("argmax", argmax.to_host().into_iter().map(|a| a as f32).collect()));
            out
        });
    }
}

#[test]
fn elementwise_ops_match_cpu_exactly() {
    for len in [1, 3, 17, 127, 1000] {
        let (x, y, dy) = (random(len + 1, 13), random(len + 1, 14), random(len + 1, 15));
        let pixels: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
        let key = DropoutKey { seed: 3, layer: 1, step: 7 };
        same_on_both(&format!("elementwise len={len}"), 0.0, 0.0, |d| {
            let leaky = Activation::LeakyRelu { alpha: 0.25 };
            let mut relu = upload(d, "x", &x);
            d.activation_in_place(Activation::Relu, len, &mut relu);
            d.activation_in_place(leaky, len, &mut relu);
            let mut relu_grad = upload(d, "dy", &dy);
            d.activation_slope_at_output(Activation::Relu, len, &upload(d, "y", &y), &mut relu_grad);
            d.activation_slope_at_output(leaky, len, &upload(d, "x", &x), &mut relu_grad);
            let mut dropped = upload(d, "x", &x);
            d.dropout(len, key, 0.3, &mut dropped);
            let mut images = Tensor::zeros(d, &[len + 1]);
            d.upload_images_u8(&pixels, &mut images);
            vec![("relu", relu.to_host()), ("relu grad", relu_grad.to_host()), ("dropout", dropped.to_host()), ("u8", images.to_host())]
        });
    }
}

/// tanh, sigmoid and GELU (exp and division round differently on each device): forward in
/// place and into another tensor, backward from the output and from the input.
#[test]
fn smooth_activations_match_cpu() {
    for len in [1, 17, 1000] {
        let (x, dy) = (random(len + 1, 13).iter().map(|v| v * 6.0).collect::<Vec<_>>(), random(len + 1, 15));
        for f in [Activation::Tanh, Activation::Sigmoid, Activation::Gelu, Activation::LeakyRelu { alpha: 0.3 }] {
            same_on_both(&format!("{f:?} len={len}"), 1e-6, 1e-5, |d| {
                let xt = upload(d, "x", &x);
                let mut y = Tensor::zeros(d, &[len + 1]);
                d.activation(f, len, &xt, &mut y);
                let mut in_place = upload(d, "x", &x);
                if f.slope_from_output() {
                    d.activation_in_place(f, len, &mut in_place);
                }
                let mut from_input = Tensor::zeros(d, &[len + 1]);
                d.activation_slope_at_input(f, len, &xt, &upload(d, "dy", &dy), &mut from_input);
                let mut from_output = upload(d, "dy", &dy);
                if f.slope_from_output() {
                    d.activation_slope_at_output(f, len, &y, &mut from_output);
                }
                vec![
                    ("y", y.to_host()),
                    ("in place", in_place.to_host()),
                    ("dx", from_input.to_host()),
                    ("dx from y", from_output.to_host()),
                ]
            });
        }
    }
}

/// Batch normalisation per channel of an image (rows = pixels) and per feature (rows = 1): the
/// training forward (statistics, running averages, output with each epilogue), the inference
/// forward, and the backward with and without an input mask.
#[test]
fn batchnorm_matches_cpu() {
    for (rows, channels, n) in [(49, 3, 5), (1, 17, 40), (784, 32, 3), (6, 1, 1), (1, 40, 300)] {
        let g = NormGeometry { rows, channels, momentum: 0.9, epsilon: 1e-3 };
        let cap = n + 1;
        let x: Vec<f32> = random(cap * g.len(), 31).iter().map(|v| 3.0 * v + 0.5).collect();
        let (gamma, beta, dy, act) = (random(channels, 32), random(channels, 33), random(cap * g.len(), 34), random(cap * g.len(), 35));
        let running: Vec<f32> = random(channels, 36).iter().map(|v| v.abs() + 0.1).collect();
        for epilogue in [Epilogue::default(), Epilogue::relu(), epilogues()[7]] {
            same_on_both(&format!("batchnorm rows {rows} channels {channels} n {n} {epilogue:?}"), 1e-4, 1e-3, |d| {
                let (xt, gt, bt, dyt, actt) =
                    (upload(d, "x", &x), upload(d, "g", &gamma), upload(d, "b", &beta), upload(d, "dy", &dy), upload(d, "act", &act));
                let (mut mean, mut var) = (upload(d, "mean", &running), upload(d, "var", &running));
                let mut saved = Tensor::zeros(d, &[2 * channels]);
                let mut y = Tensor::zeros(d, &[cap * g.len()]);
                d.batchnorm_forward_training(&g, n, &xt, &gt, &bt, (&mut mean, &mut var), &mut saved, epilogue, &mut y);
                let mut inferred = Tensor::zeros(d, &[cap * g.len()]);
                let p = NormParams { gamma: &gt, beta: &bt, running_mean: &mean, running_var: &var };
                d.batchnorm_forward_inference(&g, n, &xt, &p, epilogue, &mut inferred);
                let (mut dgamma, mut dbeta) = (Tensor::zeros(d, &[channels]), Tensor::zeros(d, &[channels]));
                let mut dx = Tensor::zeros(d, &[cap * g.len()]);
                let mask = GradMask { epilogue, activation: &actt };
                d.batchnorm_backward(&g, n, &xt, &dyt, &gt, &saved, (&mut dgamma, &mut dbeta), Some(mask), Some(&mut dx));
                vec![
                    ("saved", saved.to_host()),
                    ("running mean", mean.to_host()),
                    ("running var", var.to_host()),
                    ("y", y.to_host()),
                    ("inference y", inferred.to_host()),
                    ("dgamma", dgamma.to_host()),
                    ("dbeta", dbeta.to_host()),
                    ("dx", dx.to_host()),
                ]
            });
        }
    }
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    let cases =
        [(1, 10, 0.0), (3, 3, 0.0), (17, 10, 0.0), (127, 10, 0.0), (300, 1, 0.0), (1, 10, 0.1), (17, 10, 0.1), (300, 10, 0.3), (5, 1, 0.5)];
    for (n, classes, smoothing) in cases {
        let logits: Vec<f32> = random((n + 1) * classes, 16).iter().map(|v| v * 8.0).collect();
        let labels: Vec<u32> = (0..n as u32 + 1).map(|i| i * 7 % classes as u32).collect();
        same_on_both(&format!("softmax xent n={n} classes={classes} label smoothing {smoothing}"), 1e-5, 1e-5, |d| {
            let lt = upload(d, "logits", &logits);
            let labels = Tensor::from_host(d, "labels", &[n + 1], &labels).unwrap();
            let mut dlogits = Tensor::zeros(d, &[n + 1, classes]);
            // The step's values go to pair 2 of the stats; the others stay untouched.
            let mut stats = upload(d, "stats", &[7.0; 8]);
            d.softmax_xent(n, classes, smoothing, &lt, &labels, &mut dlogits, &mut stats, 2);
            let mut outputs = upload(d, "outputs", &vec![-1.0; (n + 1) * (classes + 1)]);
            d.predict(n, classes, &lt, &mut outputs);
            let stats = stats.to_host();
            assert_eq!([stats[0..4].to_vec(), stats[6..8].to_vec()].concat(), [7.0; 6], "stats outside the step's slot");
            let outputs = outputs.to_host();
            assert!(outputs[n * (classes + 1)..].iter().all(|&v| v == -1.0), "predict wrote past n rows");
            vec![
                ("dlogits", dlogits.to_host()),
                ("loss", vec![stats[4] / n as f32]),
                ("correct", vec![stats[5]]),
                ("probs", outputs[..n * classes].to_vec()),
                ("argmax", outputs[n * classes..n * (classes + 1)].to_vec()),
            ]
        });
    }
}

#[test]
fn optimizer_updates_match_cpu() {
    let adam = |decoupled| {
        UpdateRule::Adam(AdamStep {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.01,
            decoupled,
            bias1: 1.0 - 0.9f32.powi(3),
            bias2: 1.0 - 0.999f32.powi(3),
        })
    };
    let rules = [
        ("sgd", UpdateRule::Sgd { lr: 0.1, weight_decay: 0.01 }, 0),
        ("momentum", UpdateRule::Momentum { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 }, 1),
        ("nesterov", UpdateRule::Momentum { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1e-3 }, 1),
        ("adam", adam(false), 2),
        ("adamw", adam(true), 2),
    ];
    for len in [1, 17, 1000] {
        for (name, rule, slots) in rules {
            let (p, g) = (random(len, 17), random(len, 18));
            let state: Vec<Vec<f32>> = (0..slots).map(|s| random(len, 19 + s as u64).iter().map(|v| v.abs()).collect()).collect();
            same_on_both(&format!("{name} len={len}"), 1e-6, 1e-5, |d| {
                let mut param = upload(d, "param", &p);
                let mut st: Vec<Tensor> = state.iter().map(|s| upload(d, "state", s)).collect();
                // Two steps, so the state written by the first is read by the second.
                for _ in 0..2 {
                    d.optimizer_update(rule, &mut param, &upload(d, "grad", &g), &mut st);
                }
                let mut out = vec![("param", param.to_host())];
                out.extend(st.iter().map(|s| ("state", s.to_host())));
                out
            });
        }
    }
}

/// On a GPU, tensors packed into one buffer (at aligned offsets, gaps between them) are updated
/// by one dispatch over the whole arena, with the same result as one update per tensor.
#[test]
fn one_update_over_packed_tensors_matches_one_per_tensor() {
    let shapes = [vec![5, 3], vec![3], vec![1], vec![100, 7]];
    let rule = UpdateRule::Adam(AdamStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
        weight_decay: 0.01,
        decoupled: true,
        bias1: 0.1,
        bias2: 0.001,
    });
    let values: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(i, s)| random(s.iter().product(), 30 + i as u64)).collect();
    let grads: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(i, s)| random(s.iter().product(), 40 + i as u64)).collect();
    same_on_both("packed adam", 1e-6, 1e-5, |d| {
        let (mut params, param_arena) = Tensor::zeros_packed(d, &shapes);
        let (mut grad_t, grad_arena) = Tensor::<f32>::zeros_packed(d, &shapes);
        let (mut m, m_arena) = Tensor::<f32>::zeros_packed(d, &shapes);
        let (mut v, v_arena) = Tensor::<f32>::zeros_packed(d, &shapes);
        for i in 0..shapes.len() {
            params[i].write_host("p", &values[i]).unwrap();
            grad_t[i].write_host("g", &grads[i]).unwrap();
        }
        match (param_arena, grad_arena, m_arena, v_arena) {
            (Some(mut p), Some(g), Some(ma), Some(va)) => {
                assert!(matches!(d, Device::Gpu(_)), "arenas on the GPU only");
                let mut state = [ma, va];
                d.optimizer_update(rule, &mut p, &g, &mut state);
            }
            _ => {
                for i in 0..shapes.len() {
                    let mut state =
                        [std::mem::replace(&mut m[i], Tensor::zeros(d, &[1])), std::mem::replace(&mut v[i], Tensor::zeros(d, &[1]))];
                    d.optimizer_update(rule, &mut params[i], &grad_t[i], &mut state);
                    [m[i], v[i]] = state;
                }
            }
        }
        params.iter().map(|p| ("param", p.to_host())).chain(m.iter().map(|t| ("m", t.to_host()))).collect()
    });
}

/// More than 65,535 workgroups: the dispatch is folded into a 2-D grid and every element is
/// still covered exactly once.
#[test]
fn dispatches_beyond_65535_workgroups_cover_every_element() {
    let len = 256 * 65_535 + 300;
    let x: Vec<f32> = (0..len).map(|i| if i % 3 == 0 { -(i as f32) } else { i as f32 }).collect();
    same_on_both("relu over 65,537 workgroups", 0.0, 0.0, |d| {
        let mut t = upload(d, "x", &x);
        d.activation_in_place(Activation::Relu, len, &mut t);
        vec![("relu", t.to_host())]
    });
}
