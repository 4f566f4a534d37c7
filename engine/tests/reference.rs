//! Forward ops against naive direct implementations (the gradient checks prove consistency
//! between forward and backward; these prove the forward computes the right function).
#![allow(clippy::needless_range_loop)]

mod common;

use common::random;
use engine::backend::Conv2dGeometry;
use engine::model::{LayerKind, LayerSpec, Shape};
use engine::{Device, Tensor};

/// Direct NHWC convolution with TensorFlow's weight layout `[kh, kw, c_in, c_out]`.
fn naive_conv(g: &Conv2dGeometry, n: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; n * g.out_len()];
    for img in 0..n {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for co in 0..g.out_c {
                    let mut acc = b[co] as f64;
                    for ky in 0..g.kernel_h {
                        for kx in 0..g.kernel_w {
                            let iy = (oy * g.stride_h + ky) as isize - g.pad_top as isize;
                            let ix = (ox * g.stride_w + kx) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                                continue;
                            }
                            for ci in 0..g.in_c {
                                let xv = x[img * g.in_len() + (iy as usize * g.in_w + ix as usize) * g.in_c + ci];
                                let wv = w[((ky * g.kernel_w + kx) * g.in_c + ci) * g.out_c + co];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[img * g.out_len() + (oy * g.out_w + ox) * g.out_c + co] = acc as f32;
                }
            }
        }
    }
    y
}

fn geometry(h: usize, w: usize, c: usize, filters: usize, kernel: usize, stride: usize, padding: &str) -> Conv2dGeometry {
    let padding = serde_json::from_str(padding).unwrap();
    let layer =
        LayerSpec { name: "c".into(), kind: LayerKind::Conv2d { filters, kernel: [kernel, kernel], stride: [stride, stride], padding } };
    layer.conv_geometry(Shape::Image { h, w, c }).unwrap()
}

#[test]
fn conv2d_forward_matches_direct_convolution() {
    let d = Device::cpu();
    for (g, n) in [
        (geometry(28, 28, 1, 32, 5, 1, "\"same\""), 3),
        (geometry(14, 14, 32, 64, 5, 1, "\"same\""), 2),
        // one image alone: its positions split across the threads
        (geometry(14, 14, 32, 64, 5, 1, "\"same\""), 1),
        (geometry(17, 13, 3, 5, 3, 2, "\"same\""), 4),
        // the direct kernel (few input channels, output channels in whole vectors), strided
        (geometry(17, 13, 3, 16, 3, 2, "\"same\""), 2),
        (geometry(9, 7, 2, 32, 4, 3, "\"valid\""), 3),
        (geometry(28, 28, 1, 32, 5, 1, "\"same\""), 1),
        (geometry(9, 7, 2, 3, 4, 3, "\"valid\""), 1),
        (geometry(5, 5, 4, 6, 1, 1, "\"valid\""), 5),
        // Winograd: 5x5, stride 1, 8+ input channels, odd sizes and paddings
        (geometry(17, 13, 9, 11, 5, 1, "\"same\""), 4),
        (geometry(9, 7, 8, 5, 5, 1, "\"valid\""), 5),
        (geometry(3, 2, 16, 8, 5, 1, "4"), 4),
        (geometry(1, 1, 8, 3, 5, 1, "\"same\""), 7),
        // Winograd with output channels in whole vectors (the register-panel products), tile
        // groups that span images and end part-full
        (geometry(17, 13, 9, 48, 5, 1, "\"same\""), 3),
        (geometry(14, 14, 32, 64, 5, 1, "\"same\""), 5),
        (geometry(6, 5, 8, 16, 5, 1, "\"valid\""), 4),
    ] {
        let x = random(n * g.in_len(), 1);
        let w = random(g.weight_len(), 2);
        let b = random(g.out_c, 3);
        let mut y = Tensor::zeros(&d, &[n * g.out_len()]);
        let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
        d.conv2d_forward(&g, n, &t(&x), &t(&w), &t(&b), Default::default(), &mut y);
        let want = naive_conv(&g, n, &x, &w, &b);
        // A sum's rounding grows with its terms' sizes, not with its value: bound each error by
        // the sum of the absolute terms (Winograd's transforms scale them by up to about 40).
        let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
        let terms = naive_conv(&g, n, &abs(&x), &abs(&w), &abs(&b));
        let path = if engine::cpu::winograd::worthwhile(&g, n) { "winograd" } else { "im2col" };
        for (i, ((got, want), terms)) in y.to_host().iter().zip(&want).zip(&terms).enumerate() {
            assert!((got - want).abs() <= 1e-4 + 5e-6 * terms, "{path} {g:?} [{i}]: {got} vs {want} (terms {terms})");
        }
    }
}

/// Batches of several and of one (the single-row path that streams the weights, split by
/// columns across threads; some inputs zero, as after a ReLU).
#[test]
fn dense_forward_matches_direct_product() {
    let d = Device::cpu();
    for (n, i, o) in [(3, 17, 5), (1, 17, 5), (1, 300, 1500), (2, 300, 1500)] {
        let mut x = random(n * i, 4);
        x.iter_mut().step_by(3).for_each(|v| *v = 0.0);
        let (w, b) = (random(i * o, 5), random(o, 6));
        let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
        let mut y = Tensor::zeros(&d, &[n * o]);
        d.dense_forward(n, i, o, &t(&x), &t(&w), &t(&b), Default::default(), &mut y);
        let y = y.to_host();
        for r in 0..n {
            for c in 0..o {
                let want: f32 = b[c] + (0..i).map(|k| x[r * i + k] * w[k * o + c]).sum::<f32>();
                assert!((y[r * o + c] - want).abs() < 1e-4 * (1.0 + want.abs()), "n={n} i={i} o={o} [{r},{c}]: {} vs {want}", y[r * o + c]);
            }
        }
    }
}

/// The reference CNN's dense shapes (large K, threaded GEMM): forward and both backwards
/// against f64 sums on sampled entries.
#[test]
fn dense_at_full_size_matches_direct_sums() {
    let d = Device::cpu();
    let (n, i, o) = (100, 3136, 1024);
    let (x, w, b, dy) = (random(n * i, 7), random(i * o, 8), random(o, 9), random(n * o, 10));
    let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
    let (mut y, mut dx, mut dw, mut db) =
        (Tensor::zeros(&d, &[n * o]), Tensor::zeros(&d, &[n * i]), Tensor::zeros(&d, &[i * o]), Tensor::zeros(&d, &[o]));
    d.dense_forward(n, i, o, &t(&x), &t(&w), &t(&b), Default::default(), &mut y);
    d.dense_backward_input(n, i, o, &t(&dy), &t(&w), None, &mut dx);
    d.dense_backward_weight(n, i, o, &t(&x), &t(&dy), &mut dw, &mut db);
    let (y, dx, dw, db) = (y.to_host(), dx.to_host(), dw.to_host(), db.to_host());
    let close = |got: f32, want: f64, what: &str| assert!((got as f64 - want).abs() <= 1e-3 + 1e-4 * want.abs(), "{what}: {got} vs {want}");
    let mut rng = engine::rng::SplitMix64::new(3);
    for _ in 0..200 {
        let (r, c, k) = (rng.below(n), rng.below(o), rng.below(i));
        close(y[r * o + c], b[c] as f64 + (0..i).map(|j| x[r * i + j] as f64 * w[j * o + c] as f64).sum::<f64>(), "y");
        close(dx[r * i + k], (0..o).map(|j| dy[r * o + j] as f64 * w[k * o + j] as f64).sum::<f64>(), "dx");
        close(dw[k * o + c], (0..n).map(|j| x[j * i + k] as f64 * dy[j * o + c] as f64).sum::<f64>(), "dw");
        close(db[c], (0..n).map(|j| dy[j * o + c] as f64).sum::<f64>(), "db");
    }
}

/// conv2 of the reference CNN at batch 100 (the chunked, per-thread path).
#[test]
fn conv2d_at_full_batch_matches_direct_convolution() {
    let d = Device::cpu();
    let g = geometry(14, 14, 32, 64, 5, 1, "\"same\"");
    let n = 100;
    let (x, w, b) = (random(n * g.in_len(), 11), random(g.weight_len(), 12), random(g.out_c, 13));
    let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
    let mut y = Tensor::zeros(&d, &[n * g.out_len()]);
    d.conv2d_forward(&g, n, &t(&x), &t(&w), &t(&b), Default::default(), &mut y);
    let y = y.to_host();
    for img in [0, 37, 49, 50, 99] {
        let want = naive_conv(&g, 1, &x[img * g.in_len()..(img + 1) * g.in_len()], &w, &b);
        for (j, want) in want.iter().enumerate() {
            let got = y[img * g.out_len() + j];
            assert!((got - want).abs() <= 1e-3 + 1e-4 * want.abs(), "image {img} [{j}]: {got} vs {want}");
        }
    }
}

/// Adjoint identities at the reference CNN's full batch: `<conv(x, w), dy> = <x, dx(dy, w)>`
/// and `<conv(x, w), dy> = <w, dw(x, dy)>` (bias zero), `<1, dy> per channel = db`.
#[test]
fn conv2d_backwards_are_adjoint_at_full_batch() {
    let d = Device::cpu();
    let n = 100;
    for g in [geometry(28, 28, 1, 32, 5, 1, "\"same\""), geometry(14, 14, 32, 64, 5, 1, "\"same\"")] {
        let (x, w, dy) = (random(n * g.in_len(), 21), random(g.weight_len(), 22), random(n * g.out_len(), 23));
        let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
        let mut y = Tensor::zeros(&d, &[n * g.out_len()]);
        d.conv2d_forward(&g, n, &t(&x), &t(&w), &Tensor::zeros(&d, &[g.out_c]), Default::default(), &mut y);
        let (mut dx, mut dw, mut db) = (Tensor::zeros(&d, &[x.len()]), Tensor::zeros(&d, &[w.len()]), Tensor::zeros(&d, &[g.out_c]));
        d.conv2d_backward_input(&g, n, &t(&dy), &t(&w), None, &mut dx);
        d.conv2d_backward_weight(&g, n, &t(&x), &t(&dy), &mut dw, &mut db);
        let dot64 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
        let lhs = dot64(&y.to_host(), &dy);
        let (via_x, via_w) = (dot64(&x, &dx.to_host()), dot64(&w, &dw.to_host()));
        let tol = 1e-4 * lhs.abs().max(1.0) * 10.0;
        assert!((lhs - via_x).abs() < tol, "{g:?}: <y,dy> {lhs} vs <x,dx> {via_x}");
        assert!((lhs - via_w).abs() < tol, "{g:?}: <y,dy> {lhs} vs <w,dw> {via_w}");
        let db = db.to_host();
        for c in 0..g.out_c {
            let want: f64 = dy.iter().skip(c).step_by(g.out_c).map(|v| *v as f64).sum();
            assert!((db[c] as f64 - want).abs() < 1e-2, "db[{c}] {} vs {want}", db[c]);
        }
    }
}

/// CPU inference runs a conv2d and the max pool after it in one pass (inside Winograd's output
/// transform for 2x2 pools): the same values, bitwise, as the conv, its activation and the
/// pool one after another, on both conv paths, odd sizes (a pool that drops the last row and
/// column), overlapping pools, and batches smaller than the thread count (one image's
/// positions split across threads).
#[test]
fn conv2d_with_max_pool_in_one_pass_matches_the_layers_in_turn() {
    use engine::activation::Activation;
    let d = Device::cpu();
    let pool_of = |g: &Conv2dGeometry, size: usize, stride: usize| {
        let layer = LayerSpec { name: "p".into(), kind: LayerKind::MaxPool { size: [size, size], stride: [stride, stride] } };
        layer.pool_geometry(Shape::Image { h: g.out_h, w: g.out_w, c: g.out_c }).unwrap()
    };
    for (g, n, (size, stride), f) in [
        (geometry(28, 28, 1, 32, 5, 1, "\"same\""), 3, (2, 2), Some(Activation::Relu)),
        (geometry(14, 14, 32, 64, 5, 1, "\"same\""), 5, (2, 2), Some(Activation::Relu)),
        (geometry(14, 14, 32, 64, 5, 1, "\"same\""), 1, (2, 2), Some(Activation::Relu)),
        (geometry(13, 11, 16, 48, 5, 1, "\"same\""), 1, (2, 2), Some(Activation::Relu)),
        (geometry(15, 13, 9, 11, 5, 1, "\"same\""), 1, (2, 2), None),
        (geometry(15, 13, 9, 11, 5, 1, "\"same\""), 6, (2, 2), Some(Activation::LeakyRelu { alpha: 0.1 })),
        (geometry(15, 13, 9, 11, 5, 1, "\"same\""), 4, (3, 2), None),
        (geometry(17, 13, 3, 5, 3, 2, "\"same\""), 2, (2, 1), Some(Activation::Relu)),
    ] {
        let pool = pool_of(&g, size, stride);
        let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
        let (x, w, b) = (t(&random(n * g.in_len(), 7)), t(&random(g.weight_len(), 8)), t(&random(g.out_c, 9)));
        let mut conv = Tensor::zeros(&d, &[n * g.out_len()]);
        let epilogue = engine::backend::Epilogue { activation: f, dropout: None };
        d.conv2d_forward(&g, n, &x, &w, &b, epilogue, &mut conv);
        let (mut want, mut argmax) = (Tensor::zeros(&d, &[n * pool.out_len()]), Tensor::<u32>::zeros(&d, &[n * pool.out_len()]));
        d.max_pool_forward(&pool, n, &conv, &mut want, &mut argmax);
        let mut got = Tensor::zeros(&d, &[n * pool.out_len()]);
        d.conv2d_max_pool_inference(&g, &pool, n, &x, &w, None, &b, f, &mut got);
        assert_bitwise_equal(&got.to_host(), &want.to_host(), &format!("{g:?} n={n} pool {size}/{stride} {f:?}"));
        if !engine::cpu::winograd::applies(&g) {
            continue;
        }
        // Filters transformed in advance take Winograd at every batch size: the values of the
        // layers in turn on a batch large enough for Winograd (each tile's result is its own).
        let transformed = engine::cpu::winograd::transformed_filters(&g, &w.to_host());
        d.conv2d_max_pool_inference(&g, &pool, n, &x, &w, Some(&transformed), &b, f, &mut got);
        let m = n.max(4);
        let mut padded = x.to_host();
        padded.resize(m * g.in_len(), 0.5);
        let mut conv = Tensor::zeros(&d, &[m * g.out_len()]);
        d.conv2d_forward(&g, m, &t(&padded), &w, &b, epilogue, &mut conv);
        let (mut want, mut argmax) = (Tensor::zeros(&d, &[m * pool.out_len()]), Tensor::<u32>::zeros(&d, &[m * pool.out_len()]));
        d.max_pool_forward(&pool, m, &conv, &mut want, &mut argmax);
        let want = want.to_host();
        assert_bitwise_equal(
            &got.to_host(),
            &want[..n * pool.out_len()],
            &format!("transformed filters, {g:?} n={n} pool {size}/{stride}"),
        );
    }
}

fn assert_bitwise_equal(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let differ = got.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(differ.is_none(), "{what}: [{}] {} vs {}", differ.unwrap(), got[differ.unwrap()], want[differ.unwrap()]);
}

/// The weight gradient against direct f64 sums, element by element: Winograd's (5x5, stride 1,
/// 8+ input channels, batches of 4+, odd sizes, paddings "same", "valid" and 4) and im2col's.
#[test]
fn conv2d_weight_gradient_matches_direct_sums() {
    let d = Device::cpu();
    for (g, n) in [
        (geometry(15, 13, 9, 11, 5, 1, "\"same\""), 6),
        (geometry(9, 7, 8, 5, 5, 1, "\"valid\""), 4),
        (geometry(3, 2, 16, 8, 5, 1, "4"), 5),
        (geometry(14, 14, 32, 64, 5, 1, "\"same\""), 9),
        (geometry(11, 9, 9, 48, 5, 1, "\"same\""), 5),
        (geometry(17, 13, 3, 5, 3, 2, "\"same\""), 3),
    ] {
        let (x, dy) = (random(n * g.in_len(), 11), random(n * g.out_len(), 12));
        let t = |v: &[f32]| Tensor::from_host(&d, "t", &[v.len()], v).unwrap();
        let (mut dw, mut db) = (Tensor::zeros(&d, &[g.weight_len()]), Tensor::zeros(&d, &[g.out_c]));
        d.conv2d_backward_weight(&g, n, &t(&x), &t(&dy), &mut dw, &mut db);
        let (dw, db) = (dw.to_host(), db.to_host());
        let path = if engine::cpu::winograd::worthwhile(&g, n) { "winograd" } else { "im2col" };
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                for ci in 0..g.in_c {
                    for co in 0..g.out_c {
                        let mut want = 0.0f64;
                        for img in 0..n {
                            for oy in 0..g.out_h {
                                for ox in 0..g.out_w {
                                    let iy = (oy * g.stride_h + ky) as isize - g.pad_top as isize;
                                    let ix = (ox * g.stride_w + kx) as isize - g.pad_left as isize;
                                    if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                                        continue;
                                    }
                                    let xv = x[img * g.in_len() + (iy as usize * g.in_w + ix as usize) * g.in_c + ci];
                                    want += xv as f64 * dy[img * g.out_len() + (oy * g.out_w + ox) * g.out_c + co] as f64;
                                }
                            }
                        }
                        let got = dw[((ky * g.kernel_w + kx) * g.in_c + ci) * g.out_c + co] as f64;
                        assert!(
                            (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                            "{path} {g:?} n={n} dw[{ky},{kx},{ci},{co}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
        for co in 0..g.out_c {
            let want: f64 = (0..n * g.positions()).map(|i| dy[i * g.out_c + co] as f64).sum();
            assert!((db[co] as f64 - want).abs() <= 1e-3 * (1.0 + want.abs()), "{path} {g:?} db[{co}]: {} vs {want}", db[co]);
        }
    }
}
