//! Finite-difference gradient checks for every backward op, through the device op interface.

mod common;

use common::{check_gradient, distinct, dot, random};
use engine::backend::{Activation, Conv2dGeometry, NormGeometry, PoolGeometry};
use engine::model::{LayerKind, LayerSpec, Shape};
use engine::rng::DropoutKey;
use engine::{Device, Tensor};

fn t(d: &Device, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_host(d, "test", shape, v).unwrap()
}

fn conv_geometry(h: usize, w: usize, c: usize, filters: usize, kernel: [usize; 2], stride: [usize; 2], padding: &str) -> Conv2dGeometry {
    let padding = serde_json::from_str(padding).unwrap();
    let layer = LayerSpec { name: "c".into(), kind: LayerKind::Conv2d { filters, kernel, stride, padding } };
    layer.conv_geometry(Shape::Image { h, w, c }).unwrap()
}

fn check_conv(g: Conv2dGeometry, n: usize) {
    let d = Device::cpu();
    let x = random(n * g.in_len(), 1);
    let w = random(g.weight_len(), 2);
    let b = random(g.out_c, 3);
    let r = random(n * g.out_len(), 4);
    let forward = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = Tensor::zeros(&d, &[n * g.out_len()]);
        d.conv2d_forward(&g, n, &t(&d, &[x.len()], x), &t(&d, &[w.len()], w), &t(&d, &[b.len()], b), Default::default(), &mut y);
        dot(&y.to_host(), &r)
    };
    let dy = t(&d, &[r.len()], &r);
    let mut dx = Tensor::zeros(&d, &[x.len()]);
    d.conv2d_backward_input(&g, n, &dy, &t(&d, &[w.len()], &w), None, &mut dx);
    let (mut dw, mut db) = (Tensor::zeros(&d, &[w.len()]), Tensor::zeros(&d, &[b.len()]));
    d.conv2d_backward_weight(&g, n, &t(&d, &[x.len()], &x), &dy, &mut dw, &mut db);
    let what = format!("{g:?}");
    // The loss is linear in each of x, w and b, so a wide difference step is exact and shrinks
    // the forward's rounding in the numeric gradient.
    let eps = 0.5;
    check_gradient(&format!("conv dx {what}"), &x, &dx.to_host(), eps, 2e-3, 1e-2, |x| forward(x, &w, &b));
    check_gradient(&format!("conv dw {what}"), &w, &dw.to_host(), eps, 2e-3, 1e-2, |w| forward(&x, w, &b));
    check_gradient(&format!("conv db {what}"), &b, &db.to_host(), eps, 2e-3, 1e-2, |b| forward(&x, &w, b));
}

#[test]
fn conv2d_same_padding_5x5() {
    check_conv(conv_geometry(7, 6, 3, 4, [5, 5], [1, 1], "\"same\""), 3);
}

#[test]
fn conv2d_valid_strided_rectangular() {
    check_conv(conv_geometry(9, 8, 2, 5, [3, 2], [2, 3], "\"valid\""), 2);
}

#[test]
fn conv2d_explicit_padding_and_pointwise() {
    check_conv(conv_geometry(5, 5, 3, 2, [3, 3], [1, 1], "1"), 2);
    check_conv(conv_geometry(4, 3, 5, 3, [1, 1], [1, 1], "\"valid\""), 3);
    check_conv(conv_geometry(1, 1, 1, 1, [1, 1], [1, 1], "\"same\""), 1);
}

/// 5x5 stride-1 convolutions with 8+ input channels take the Winograd path (forward, and
/// backward-input when the output has 8+ channels too).
#[test]
fn conv2d_winograd_shapes() {
    use engine::cpu::winograd::{backward_input_geometry, worthwhile};
    for (g, n) in [
        (conv_geometry(7, 5, 9, 10, [5, 5], [1, 1], "\"same\""), 4),
        (conv_geometry(9, 8, 8, 3, [5, 5], [1, 1], "\"valid\""), 5),
        (conv_geometry(6, 7, 12, 9, [5, 5], [1, 1], "3"), 4),
        (conv_geometry(1, 1, 8, 8, [5, 5], [1, 1], "\"same\""), 6),
    ] {
        assert!(worthwhile(&g, n), "{g:?} should take the Winograd path");
        if g.out_c >= 8 {
            assert!(worthwhile(&backward_input_geometry(&g), n));
        }
        check_conv(g, n);
    }
}

#[test]
fn dense_backward() {
    let d = Device::cpu();
    let (n, inputs, outputs) = (3, 7, 5);
    let x = random(n * inputs, 1);
    let w = random(inputs * outputs, 2);
    let b = random(outputs, 3);
    let r = random(n * outputs, 4);
    let forward = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = Tensor::zeros(&d, &[n * outputs]);
        d.dense_forward(
            n,
            inputs,
            outputs,
            &t(&d, &[x.len()], x),
            &t(&d, &[w.len()], w),
            &t(&d, &[b.len()], b),
            Default::default(),
            &mut y,
        );
        dot(&y.to_host(), &r)
    };
    let dy = t(&d, &[r.len()], &r);
    let mut dx = Tensor::zeros(&d, &[x.len()]);
    d.dense_backward_input(n, inputs, outputs, &dy, &t(&d, &[w.len()], &w), None, &mut dx);
    let (mut dw, mut db) = (Tensor::zeros(&d, &[w.len()]), Tensor::zeros(&d, &[b.len()]));
    d.dense_backward_weight(n, inputs, outputs, &t(&d, &[x.len()], &x), &dy, &mut dw, &mut db);
    check_gradient("dense dx", &x, &dx.to_host(), 1e-2, 1e-3, 1e-2, |x| forward(x, &w, &b));
    check_gradient("dense dw", &w, &dw.to_host(), 1e-2, 1e-3, 1e-2, |w| forward(&x, w, &b));
    check_gradient("dense db", &b, &db.to_host(), 1e-2, 1e-3, 1e-2, |b| forward(&x, &w, b));
}

#[test]
fn max_pool_backward() {
    let d = Device::cpu();
    for (h, w, c, size, stride) in [(6, 6, 3, 2, 2), (7, 5, 2, 3, 2), (5, 5, 1, 2, 1)] {
        let n = 2;
        let (out_h, out_w) = ((h - size) / stride + 1, (w - size) / stride + 1);
        let g =
            PoolGeometry { in_h: h, in_w: w, channels: c, out_h, out_w, size_h: size, size_w: size, stride_h: stride, stride_w: stride };
        let x = distinct(n * g.in_len(), 5);
        let r = random(n * g.out_len(), 6);
        let mut argmax = Tensor::<u32>::zeros(&d, &[n * g.out_len()]);
        let forward = |x: &[f32], argmax: &mut Tensor<u32>| {
            let mut y = Tensor::zeros(&d, &[n * g.out_len()]);
            d.max_pool_forward(&g, n, &t(&d, &[x.len()], x), &mut y, argmax);
            dot(&y.to_host(), &r)
        };
        forward(&x, &mut argmax);
        let mut dx = Tensor::zeros(&d, &[x.len()]);
        d.max_pool_backward(&g, n, &t(&d, &[r.len()], &r), &argmax, None, &mut dx);
        let mut scratch = Tensor::<u32>::zeros(&d, &[n * g.out_len()]);
        check_gradient("maxpool dx", &x, &dx.to_host(), 1e-3, 1e-3, 1e-2, |x| forward(x, &mut scratch));
    }
}

/// Every activation's backward, both ways it runs: the slope at the output (in place, all but
/// GELU) and the slope at the input.
#[test]
fn activation_backward() {
    let d = Device::cpu();
    let x = distinct(37, 7);
    let r = random(37, 8);
    let kinds = [Activation::Relu, Activation::LeakyRelu { alpha: 0.2 }, Activation::Tanh, Activation::Sigmoid, Activation::Gelu];
    for f in kinds {
        let forward = |x: &[f32]| {
            let mut y = Tensor::zeros(&d, &[x.len()]);
            d.activation(f, x.len(), &t(&d, &[x.len()], x), &mut y);
            (dot(&y.to_host(), &r), y)
        };
        let (_, y) = forward(&x);
        let mut dx = Tensor::zeros(&d, &[37]);
        d.activation_slope_at_input(f, 37, &t(&d, &[37], &x), &t(&d, &[37], &r), &mut dx);
        check_gradient(&format!("{f:?} dx"), &x, &dx.to_host(), 1e-3, 1e-3, 1e-2, |x| forward(x).0);
        if f.slope_from_output() {
            let mut dy = t(&d, &[37], &r);
            d.activation_slope_at_output(f, 37, &y, &mut dy);
            check_gradient(&format!("{f:?} dx from the output"), &x, &dy.to_host(), 1e-3, 1e-3, 1e-2, |x| forward(x).0);
        }
    }
}

#[test]
fn dropout_backward_uses_the_forward_mask() {
    let d = Device::cpu();
    let key = DropoutKey { seed: 3, layer: 1, step: 17 };
    let x = random(301, 9);
    let r = random(301, 10);
    let forward = |x: &[f32]| {
        let mut y = t(&d, &[x.len()], x);
        d.dropout(x.len(), key, 0.4, &mut y);
        dot(&y.to_host(), &r)
    };
    let mut dy = t(&d, &[301], &r);
    d.dropout(301, key, 0.4, &mut dy);
    let dx = dy.to_host();
    let dropped = dx.iter().filter(|v| **v == 0.0).count();
    assert!((60..180).contains(&dropped), "dropped {dropped} of 301 at rate 0.4");
    check_gradient("dropout dx", &x, &dx, 1e-2, 1e-3, 1e-2, forward);
}

/// The fused loss with plain and smoothed targets: its value against an f64 reference of
/// `-sum_j target_j * log_softmax_j` with `target = (1 - e) * onehot + e / k`, and its gradient
/// against finite differences of that value.
#[test]
fn softmax_cross_entropy_backward() {
    let d = Device::cpu();
    let (n, k) = (4, 10);
    let logits: Vec<f32> = random(n * k, 11).iter().map(|v| v * 3.0).collect();
    let label_values = [3usize, 0, 9, 3];
    let labels = Tensor::<u32>::from_host(&d, "labels", &[n], &label_values.map(|l| l as u32)).unwrap();
    for smoothing in [0.0f32, 0.1, 0.45, 0.9] {
        let run = |z: &[f32]| {
            let mut dz = Tensor::zeros(&d, &[n * k]);
            let mut stats = Tensor::zeros(&d, &[2]);
            d.softmax_xent(n, k, smoothing, &t(&d, &[n * k], z), &labels, &mut dz, &mut stats, 0);
            (stats.to_host(), dz.to_host())
        };
        let (stats, dz) = run(&logits);
        let mut want = 0.0f64;
        for (row, &l) in logits.chunks(k).zip(&label_values) {
            let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            for (j, &v) in row.iter().enumerate() {
                let target = (1.0 - smoothing as f64) * (j == l) as u8 as f64 + smoothing as f64 / k as f64;
                want += target * (lse - v as f64);
            }
        }
        assert!((stats[0] as f64 - want).abs() < 1e-4, "smoothing {smoothing}: loss {} vs {want}", stats[0]);
        let what = format!("softmax-xent dlogits, smoothing {smoothing}");
        check_gradient(&what, &logits, &dz, 1e-2, 5e-4, 1e-2, |z| run(z).0[0] / n as f32);
        // Each row's gradient sums to zero (softmax and target both sum to one).
        for row in dz.chunks(k) {
            assert!(row.iter().sum::<f32>().abs() < 1e-6, "{what}: row sums to {}", row.iter().sum::<f32>());
        }
    }
}

/// Smoothing 0 is the plain cross-entropy bit for bit (so configs without it train as before).
#[test]
fn zero_label_smoothing_is_the_plain_loss_exactly() {
    let d = Device::cpu();
    let (n, k) = (5, 10);
    let logits: Vec<f32> = random(n * k, 12).iter().map(|v| v * 5.0).collect();
    let labels: Vec<u32> = vec![1, 4, 4, 9, 0];
    let (mut dz, mut stats) = (vec![0.0; n * k], 0.0f64);
    for ((row, d), &l) in logits.chunks(k).zip(dz.chunks_mut(k)).zip(&labels) {
        let m = row.iter().cloned().fold(f32::MIN, f32::max);
        let sum: f32 = row.iter().map(|v| (v - m).exp()).sum();
        stats += (m + sum.ln() - row[l as usize]) as f64;
        for (j, (dv, v)) in d.iter_mut().zip(row).enumerate() {
            *dv = ((v - m).exp() / sum - (j == l as usize) as u32 as f32) * (1.0 / n as f32);
        }
    }
    let labels = Tensor::<u32>::from_host(&d, "labels", &[n], &labels).unwrap();
    let mut got_dz = Tensor::zeros(&d, &[n * k]);
    let mut got_stats = Tensor::zeros(&d, &[2]);
    d.softmax_xent(n, k, 0.0, &t(&d, &[n * k], &logits), &labels, &mut got_dz, &mut got_stats, 0);
    assert_eq!(got_dz.to_host(), dz);
    assert_eq!(got_stats.to_host()[0], stats as f32);
}

#[test]
fn avg_pool_backward() {
    let d = Device::cpu();
    // (h, w, c, window, stride): non-overlapping, overlapping, a global pool, stride 1.
    for (h, w, c, size, stride) in [(6, 5, 3, 2, 2), (7, 7, 2, 3, 2), (4, 4, 5, 4, 4), (5, 6, 1, 2, 1)] {
        let g = PoolGeometry {
            in_h: h,
            in_w: w,
            channels: c,
            out_h: (h - size) / stride + 1,
            out_w: (w - size) / stride + 1,
            size_h: size,
            size_w: size,
            stride_h: stride,
            stride_w: stride,
        };
        let n = 2;
        let (x, r) = (random(n * g.in_len(), 11), random(n * g.out_len(), 12));
        let forward = |x: &[f32]| {
            let mut y = Tensor::zeros(&d, &[n * g.out_len()]);
            d.avg_pool_forward(&g, n, &t(&d, &[x.len()], x), &mut y);
            dot(&y.to_host(), &r)
        };
        let mut dx = Tensor::zeros(&d, &[n * g.in_len()]);
        d.avg_pool_backward(&g, n, &t(&d, &[r.len()], &r), None, &mut dx);
        check_gradient(&format!("avgpool {g:?} dx"), &x, &dx.to_host(), 1e-3, 1e-3, 1e-2, forward);
    }
}

/// Batch normalisation in training (batch statistics), per channel of an image and per feature
/// of a flat input: the gradients of the input, gamma and beta.
#[test]
fn batchnorm_backward() {
    let d = Device::cpu();
    for (rows, channels, n) in [(12, 3, 2), (1, 5, 7)] {
        let g = NormGeometry { rows, channels, momentum: 0.9, epsilon: 1e-3 };
        let (x, gamma, beta, r) = (random(n * g.len(), 21), random(channels, 22), random(channels, 23), random(n * g.len(), 24));
        let run = |x: &[f32], gamma: &[f32], beta: &[f32]| {
            let (mut mean, mut var) = (Tensor::zeros(&d, &[channels]), t(&d, &[channels], &vec![1.0; channels]));
            let mut saved = Tensor::zeros(&d, &[2 * channels]);
            let mut y = Tensor::zeros(&d, &[n * g.len()]);
            let xt = t(&d, &[x.len()], x);
            let (gt, bt) = (t(&d, &[channels], gamma), t(&d, &[channels], beta));
            d.batchnorm_forward_training(&g, n, &xt, &gt, &bt, (&mut mean, &mut var), &mut saved, Default::default(), &mut y);
            (dot(&y.to_host(), &r), xt, gt, saved)
        };
        let (_, xt, gt, saved) = run(&x, &gamma, &beta);
        let (mut dgamma, mut dbeta, mut dx) =
            (Tensor::zeros(&d, &[channels]), Tensor::zeros(&d, &[channels]), Tensor::zeros(&d, &[n * g.len()]));
        d.batchnorm_backward(&g, n, &xt, &t(&d, &[r.len()], &r), &gt, &saved, (&mut dgamma, &mut dbeta), None, Some(&mut dx));
        let what = format!("batchnorm rows {rows} channels {channels} n {n}");
        check_gradient(&format!("{what} dx"), &x, &dx.to_host(), 1e-2, 2e-3, 2e-2, |x| run(x, &gamma, &beta).0);
        check_gradient(&format!("{what} dgamma"), &gamma, &dgamma.to_host(), 1e-2, 2e-3, 2e-2, |g| run(&x, g, &beta).0);
        check_gradient(&format!("{what} dbeta"), &beta, &dbeta.to_host(), 1e-2, 2e-3, 2e-2, |b| run(&x, &gamma, b).0);
    }
}
