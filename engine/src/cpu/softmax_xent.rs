//! Fused softmax + cross-entropy (mean over the batch), and the inference-side softmax / argmax.

/// Returns (sum of per-example losses, number of correct argmax predictions) and writes
/// `dlogits = (softmax(logits) - target) / n`, where the target is the label's one-hot vector
/// smoothed by `label_smoothing` = e: `(1 - e) * onehot + e / classes`. The loss is the
/// cross-entropy against that target (with e = 0, the plain cross-entropy, bit for bit).
pub fn forward_backward(n: usize, classes: usize, label_smoothing: f32, logits: &[f32], labels: &[u32], dlogits: &mut [f32]) -> (f32, u32) {
    let mut loss = 0.0f64;
    let mut correct = 0u32;
    let inv_n = 1.0 / n as f32;
    let (off, on) = smoothed_targets(label_smoothing, classes);
    for ((row, d), &label) in logits.chunks(classes).zip(dlogits.chunks_mut(classes)).zip(labels).take(n) {
        let (max, arg) = max_and_argmax(row);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let label = label as usize;
        // The target-weighted logits: sum_j target_j * logit_j.
        let target_dot = if off == 0.0 { row[label] } else { (1.0 - label_smoothing) * row[label] + off * row.iter().sum::<f32>() };
        loss += (max + sum.ln() - target_dot) as f64;
        correct += (arg == label) as u32;
        for (j, (dv, v)) in d.iter_mut().zip(row).enumerate() {
            let p = (v - max).exp() / sum;
            *dv = (p - if j == label { on } else { off }) * inv_n;
        }
    }
    (loss as f32, correct)
}

/// The smoothed target's value off and on the label: `e / classes` and `1 - e + e / classes`.
pub fn smoothed_targets(label_smoothing: f32, classes: usize) -> (f32, f32) {
    let off = label_smoothing / classes as f32;
    (off, 1.0 - label_smoothing + off)
}

/// Row-wise softmax.
pub fn softmax(n: usize, classes: usize, logits: &[f32], probs: &mut [f32]) {
    for (row, p) in logits.chunks(classes).zip(probs.chunks_mut(classes)).take(n) {
        let (max, _) = max_and_argmax(row);
        let mut sum = 0.0;
        for (p, v) in p.iter_mut().zip(row) {
            *p = (v - max).exp();
            sum += *p;
        }
        p.iter_mut().for_each(|p| *p /= sum);
    }
}

/// Row-wise index of the largest value (the first one on ties), as a float (exact below 2^24).
pub fn argmax_f32(n: usize, classes: usize, logits: &[f32], out: &mut [f32]) {
    for (row, o) in logits.chunks(classes).zip(out.iter_mut()).take(n) {
        *o = max_and_argmax(row).1 as f32;
    }
}

fn max_and_argmax(row: &[f32]) -> (f32, usize) {
    let mut best = (row[0], 0);
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > best.0 {
            best = (v, i);
        }
    }
    best
}
