//! The shaders are compiled without runtime bounds checks (the dispatchers keep every access in
//! bounds), so this test proves the writes stay inside what each op owns: every tensor an op
//! writes gets a guard region after its data, filled with a sentinel, and every op of the
//! backend runs on shapes that exercise each tile variant, split-K and the partial tiles at the
//! edges. The guards lie inside the bound range (the driver could clip a write past a binding,
//! not one past the data inside it), and none may change.

mod common;

use common::{conv, random};
use engine::backend::{Activation, Dropout, Epilogue, GradMask, PoolGeometry, UpdateRule};
use engine::cpu::optim::AdamStep;
use engine::rng::DropoutKey;
use engine::{Device, Tensor};

const GUARD: usize = 67;
const SENTINEL: f32 = -12_345.678;

/// A tensor of `len` values followed by GUARD sentinels.
fn guarded(d: &Device, values: &[f32]) -> Tensor {
    let mut all = values.to_vec();
    all.extend([SENTINEL; GUARD]);
    Tensor::from_host(d, "guarded", &[all.len()], &all).unwrap()
}

fn zeros(d: &Device, len: usize) -> Tensor {
    guarded(d, &vec![0.0; len])
}

#[track_caller]
fn assert_guard(what: &str, t: &Tensor) {
    let v = t.to_host();
    let guard = &v[v.len() - GUARD..];
    if let Some(i) = guard.iter().position(|&x| x.to_bits() != SENTINEL.to_bits()) {
        panic!("{what}: guard value {i} after the data was overwritten with {}", guard[i]);
    }
}

#[test]
fn products_write_nothing_past_their_outputs() {
    let d = common::gpu();
    for (m, n, k) in [(130, 10, 25), (26, 32, 25), (129, 33, 7), (3, 5, 2000), (130, 129, 33), (100, 1024, 520), (31, 19, 2000)] {
        let (a, b) = (guarded(d, &random(m * k, 1)), guarded(d, &random(k * n, 2)));
        let mut c = zeros(d, m * n);
        d.matmul(m, n, k, &a, &b, &mut c);
        assert_guard(&format!("matmul {m}x{n}x{k}"), &c);
    }
    let dropout = Some(Dropout { key: DropoutKey { seed: 1, layer: 0, step: 2 }, rate: 0.3 });
    for (n, inputs, outputs) in [(17, 127, 10), (600, 5, 3), (20, 64, 32), (5, 1024, 10), (100, 3136, 8)] {
        let (x, w, b, dy) = (
            guarded(d, &random(n * inputs, 3)),
            guarded(d, &random(inputs * outputs, 4)),
            guarded(d, &random(outputs, 5)),
            guarded(d, &random(n * outputs, 6)),
        );
        let (mut y, mut dx, mut dw, mut db) = (zeros(d, n * outputs), zeros(d, n * inputs), zeros(d, inputs * outputs), zeros(d, outputs));
        d.dense_forward(
            n,
            inputs,
            outputs,
            &x,
            &w,
            &b,
            Epilogue { activation: Some(Activation::LeakyRelu { alpha: 0.1 }), dropout },
            &mut y,
        );
        let mask = GradMask { epilogue: Epilogue { activation: Some(Activation::LeakyRelu { alpha: 0.1 }), dropout }, activation: &x };
        d.dense_backward_input(n, inputs, outputs, &dy, &w, Some(mask), &mut dx);
        d.dense_backward_weight(n, inputs, outputs, &x, &dy, &mut dw, &mut db);
        let what = format!("dense n={n} {inputs}->{outputs}");
        for (name, t) in [("y", &y), ("dx", &dx), ("dw", &dw), ("db", &db)] {
            assert_guard(&format!("{what} {name}"), t);
        }
    }
}

#[test]
fn convolutions_write_nothing_past_their_outputs() {
    let d = common::gpu();
    let cases = [
        (3, conv((28, 28), 1, 32, 5, 1, 2)),
        (5, conv((14, 14), 32, 64, 5, 1, 2)),
        (3, conv((7, 9), 3, 5, 3, 2, 0)),
        (2, conv((9, 8), 3, 10, 4, 3, 2)),
        (2, conv((7, 7), 4, 8, 3, 2, 1)),
    ];
    for (n, g) in cases {
        let (x, w, b, dy) = (
            guarded(d, &random(n * g.in_len(), 7)),
            guarded(d, &random(g.weight_len(), 8)),
            guarded(d, &random(g.out_c, 9)),
            guarded(d, &random(n * g.out_len(), 10)),
        );
        let (mut y, mut dx, mut dw, mut db) =
            (zeros(d, n * g.out_len()), zeros(d, n * g.in_len()), zeros(d, g.weight_len()), zeros(d, g.out_c));
        d.conv2d_forward(&g, n, &x, &w, &b, Epilogue::relu(), &mut y);
        let mask = GradMask { epilogue: Epilogue::relu(), activation: &x };
        d.conv2d_backward_input(&g, n, &dy, &w, Some(mask), &mut dx);
        d.conv2d_backward_weight(&g, n, &x, &dy, &mut dw, &mut db);
        let pixels: Vec<u8> = (0..n * g.in_len()).map(|i| (i % 251) as u8).collect();
        let mut packed = Tensor::<u32>::from_host(
            d,
            "pixels",
            &[(n * g.in_len()).div_ceil(4) + GUARD],
            &vec![0xdead_beef; (n * g.in_len()).div_ceil(4) + GUARD],
        )
        .unwrap();
        d.stage_pixels(&pixels, &mut packed);
        let mut y_u8 = zeros(d, n * g.out_len());
        d.conv2d_forward(&g, n, &packed, &w, &b, Epilogue::default(), &mut y_u8);
        let what = format!("conv2d n={n} {g:?}");
        for (name, t) in [("y", &y), ("dx", &dx), ("dw", &dw), ("db", &db), ("y from u8", &y_u8)] {
            assert_guard(&format!("{what} {name}"), t);
        }
        let words = packed.to_host();
        assert!(words[words.len() - GUARD..].iter().all(|&w| w == 0xdead_beef), "{what}: staging the pixels wrote past them");
    }
}

#[test]
fn pooling_loss_elementwise_and_optimizers_write_nothing_past_their_outputs() {
    let d = common::gpu();
    let (n, g) = (3, PoolGeometry { in_h: 7, in_w: 7, channels: 5, out_h: 3, out_w: 3, size_h: 3, size_w: 3, stride_h: 2, stride_w: 2 });
    let (x, dy) = (guarded(d, &random(n * g.in_len(), 11)), guarded(d, &random(n * g.out_len(), 12)));
    let (mut y, mut dx) = (zeros(d, n * g.out_len()), zeros(d, n * g.in_len()));
    let mut argmax = Tensor::<u32>::zeros(d, &[n * g.out_len()]);
    d.max_pool_forward(&g, n, &x, &mut y, &mut argmax);
    d.max_pool_backward(&g, n, &dy, &argmax, Some(GradMask { epilogue: Epilogue::relu(), activation: &x }), &mut dx);
    assert_guard("max pool y", &y);
    assert_guard("max pool dx", &dx);

    let (rows, classes) = (17, 10);
    let logits = guarded(d, &random(rows * classes, 13));
    let labels = Tensor::from_host(d, "labels", &[rows], &(0..rows as u32).map(|i| i % 10).collect::<Vec<_>>()).unwrap();
    let (mut dlogits, mut stats, mut outputs) = (zeros(d, rows * classes), zeros(d, 2), zeros(d, rows * (classes + 1)));
    d.softmax_xent(rows, classes, 0.1, &logits, &labels, &mut dlogits, &mut stats, 0);
    d.predict(rows, classes, &logits, &mut outputs);
    for (name, t) in [("dlogits", &dlogits), ("stats", &stats), ("outputs", &outputs)] {
        assert_guard(name, t);
    }

    let len = 1000;
    let (mut relu, mut grad, mut dropped, mut scaled) =
        (guarded(d, &random(len, 14)), guarded(d, &random(len, 15)), guarded(d, &random(len, 16)), zeros(d, len));
    d.activation_in_place(Activation::Tanh, len, &mut relu);
    d.activation_slope_at_output(Activation::Sigmoid, len, &x, &mut grad);
    d.dropout(len, DropoutKey { seed: 2, layer: 1, step: 3 }, 0.4, &mut dropped);
    d.upload_images_u8(&(0..len).map(|i| i as u8).collect::<Vec<_>>(), &mut scaled);
    for (name, t) in [("relu", &relu), ("relu grad", &grad), ("dropout", &dropped), ("u8", &scaled)] {
        assert_guard(name, t);
    }

    let adam =
        AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, epsilon: 1e-7, weight_decay: 0.0, decoupled: false, bias1: 0.1, bias2: 0.001 };
    let rules = [
        (UpdateRule::Sgd { lr: 0.1, weight_decay: 0.0 }, 0),
        (UpdateRule::Momentum { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 }, 1),
        (UpdateRule::Adam(adam), 2),
    ];
    // An update covers the whole tensor it is given (a packed arena, in training), so the guard
    // is the rest of an arena: a second tensor after the first, and the gap between them.
    let shapes = [vec![len + 1], vec![GUARD]];
    for (rule, slots) in rules {
        let (mut params, param_arena) = Tensor::<f32>::zeros_packed(d, &shapes);
        let mut state_arenas = Vec::new();
        let mut state = Vec::new();
        for _ in 0..slots {
            let (mut parts, arena) = Tensor::<f32>::zeros_packed(d, &shapes);
            parts[1].write_host("guard", &[SENTINEL; GUARD]).unwrap();
            state.push(parts.swap_remove(0));
            state_arenas.push(arena.expect("arenas on a GPU"));
        }
        params[0].write_host("param", &random(len + 1, 17)).unwrap();
        params[1].write_host("guard", &[SENTINEL; GUARD]).unwrap();
        let arenas: Vec<&Tensor> = std::iter::once(param_arena.as_ref().expect("arenas on a GPU")).chain(&state_arenas).collect();
        let before: Vec<Vec<f32>> = arenas.iter().map(|a| a.to_host()).collect();
        let grad = guarded(d, &random(len + 1, 18));
        d.optimizer_update(rule, &mut params[0], &grad, &mut state);
        for (arena, before) in arenas.iter().zip(before) {
            let after = arena.to_host();
            assert!(after[..len + 1] != before[..len + 1], "{rule:?} updated its tensor");
            assert_eq!(after[len + 1..], before[len + 1..], "{rule:?} wrote past its tensor");
        }
    }
}
