//! Classification metrics: confusion matrix, accuracy, per-class precision / recall / F1.

use serde::Serialize;

/// `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    pub counts: Vec<Vec<u64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        Self { counts: vec![vec![0; classes]; classes] }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.counts.len()).map(|i| self.counts[i][i]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        let k = self.counts.len();
        (0..k)
            .map(|c| {
                let tp = self.counts[c][c] as f64;
                let predicted: u64 = (0..k).map(|t| self.counts[t][c]).sum();
                let support: u64 = self.counts[c].iter().sum();
                let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
                let recall = if support > 0 { tp / support as f64 } else { 0.0 };
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                ClassMetrics { class: c, precision, recall, f1, support }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_f1() {
        let mut m = ConfusionMatrix::new(2);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1)] {
            m.add(t, p);
        }
        assert_eq!(m.accuracy(), 0.75);
        let pc = m.per_class();
        assert_eq!((pc[0].precision, pc[0].recall), (1.0, 2.0 / 3.0));
        assert_eq!((pc[1].precision, pc[1].recall), (0.5, 1.0));
        assert!((pc[1].f1 - 2.0 / 3.0).abs() < 1e-12);
    }
}
