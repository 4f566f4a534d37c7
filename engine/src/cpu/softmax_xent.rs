//! Fused softmax + cross-entropy (mean over the batch), and the inference-side softmax / argmax.

/// Returns (sum of per-example losses, number of correct argmax predictions) and writes
/// `dlogits = (softmax(logits) - onehot(label)) / n`.
pub fn forward_backward(n: usize, classes: usize, logits: &[f32], labels: &[u32], dlogits: &mut [f32]) -> (f32, u32) {
    let mut loss = 0.0f64;
    let mut correct = 0u32;
    let inv_n = 1.0 / n as f32;
    for ((row, d), &label) in logits.chunks(classes).zip(dlogits.chunks_mut(classes)).zip(labels).take(n) {
        let (max, arg) = max_and_argmax(row);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let label = label as usize;
        loss += (max + sum.ln() - row[label]) as f64;
        correct += (arg == label) as u32;
        for (j, (dv, v)) in d.iter_mut().zip(row).enumerate() {
            let p = (v - max).exp() / sum;
            *dv = (p - (j == label) as u32 as f32) * inv_n;
        }
    }
    (loss as f32, correct)
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
