//! Evaluation on a data set: accuracy, loss, confusion matrix and the most confident mistakes,
//! against a brute-force pass over the same predictions.

mod common;

use common::SMALL_CNN;
use engine::Device;
use engine::data::Dataset;
use engine::model::{Config, Network};
use engine::predictor::{CONFIDENT_MISTAKES, Inference, Mistake};

/// `n` noisy images (labels `i % 10`): an untrained network gets most of them wrong.
fn noisy(n: usize) -> Dataset {
    let mut rng = engine::rng::SplitMix64::new(23);
    Dataset {
        images: (0..n * 784).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        rows: 28,
        cols: 28,
        images_path: "noisy".into(),
    }
}

#[test]
fn confident_mistakes_are_the_top_wrong_predictions_by_probability() {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let net = Network::new(spec, Device::cpu(), 8).unwrap();
    let data = noisy(250);
    let prediction = Inference::new(&net, 250).predict_u8(&net, &data.images);
    let mut want: Vec<Mistake> = (0..data.len())
        .filter(|&i| prediction.classes[i] != data.labels[i] as i64)
        .map(|i| {
            let predicted = prediction.classes[i] as usize;
            Mistake { index: i, label: data.labels[i] as usize, predicted, probability: prediction.probabilities[i * 10 + predicted] }
        })
        .collect();
    assert!(want.len() > CONFIDENT_MISTAKES, "the test needs more mistakes than are kept: {}", want.len());
    want.sort_by(|a, b| b.probability.total_cmp(&a.probability).then(a.index.cmp(&b.index)));
    want.truncate(CONFIDENT_MISTAKES);

    // Any batch size gives the same answer: batches of 7 (a short last one) and one of 1000.
    for batch in [7, 1000] {
        let ev = Inference::new(&net, batch).evaluate(&net, &data, |_| {}).unwrap();
        assert_eq!(ev.confident_mistakes, want, "batch {batch}");
        assert_eq!(ev.confusion.total(), 250);
        for m in &ev.confident_mistakes {
            assert_ne!(m.label, m.predicted);
            assert!(ev.confusion.counts[m.label][m.predicted] > 0);
        }
    }
}

#[test]
fn fewer_mistakes_than_kept_are_all_listed() {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let net = Network::new(spec, Device::cpu(), 8).unwrap();
    let data = noisy(12);
    let ev = Inference::new(&net, 5).evaluate(&net, &data, |_| {}).unwrap();
    let wrong = (ev.confusion.total() - ev.confusion.correct()) as usize;
    assert_eq!(ev.confident_mistakes.len(), wrong);
    assert!(ev.confident_mistakes.windows(2).all(|w| w[0].probability >= w[1].probability));
}
