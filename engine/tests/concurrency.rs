//! Several threads predicting at once on one CPU device, as the server's request threads do
//! without batching: every answer equals the one-thread answer, and none waits forever (a pool
//! thread waiting inside one request's kernel may run another request's kernel, so no kernel
//! may hold a lock that another needs while it runs).

use std::sync::{Arc, mpsc};
use std::time::Duration;

use engine::Device;
use engine::model::{Config, Network};
use engine::predictor::{Inference, Predictor};

#[test]
fn concurrent_cpu_predictions_agree_and_finish() {
    let spec = Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap().model_spec().unwrap();
    let device = Device::cpu();
    let images: Vec<f32> = (0..5 * 784).map(|i| ((i * 37) % 256) as f32 / 255.0).collect();
    let mut alone = Predictor::new(Network::new(spec.clone(), device.clone(), 7).unwrap(), 5);
    // a batch of 1 and one of 5 take different kernels: each has its own expected answer
    let want = [alone.predict(&images[..784]).unwrap(), alone.predict(&images).unwrap()];
    let (done, finished) = mpsc::channel();
    for t in 0..4 {
        let (spec, device, images, want, done) = (spec.clone(), device.clone(), images.clone(), want.clone(), done.clone());
        std::thread::spawn(move || {
            let mut predictor = Predictor::new(Network::new(spec, device, 7).unwrap(), 5);
            for round in 0..40 {
                // batches of 1 (an image's convolutions split across the threads) and of 5
                let (n, want) = if (round + t) % 2 == 0 { (1, &want[0]) } else { (5, &want[1]) };
                let got = predictor.predict(&images[..n * 784]).unwrap();
                assert_eq!(got, *want, "thread {t} round {round}, batch {n}");
            }
            done.send(t).unwrap();
        });
    }
    for _ in 0..4 {
        finished.recv_timeout(Duration::from_secs(120)).expect("every thread finishes (a deadlock otherwise)");
    }
}

/// One network shared by every thread and pool job from its very first inference, as the server
/// shares a loaded version: its Winograd filters are made once, by one request, while the others wait,
/// and no request holds a lock while it computes (a pool thread waiting inside one request may
/// run another request's inference).
#[test]
fn a_shared_network_answers_concurrent_requests_from_the_first() {
    let spec = Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap().model_spec().unwrap();
    let device = Device::cpu();
    let images: Vec<f32> = (0..5 * 784).map(|i| ((i * 29) % 256) as f32 / 255.0).collect();
    let alone = Network::new(spec.clone(), device.clone(), 11).unwrap();
    let mut inference = Inference::new(&alone, 5);
    let want = [inference.predict(&alone, &images[..784]).unwrap(), inference.predict(&alone, &images).unwrap()];
    let shared = Arc::new(Network::new(spec, device, 11).unwrap());
    let (done, finished) = mpsc::channel();
    for t in 0..4 {
        let (shared, images, want, done) = (shared.clone(), images.clone(), want.clone(), done.clone());
        let requests = move || {
            let mut inference = Inference::new(&shared, 5);
            for round in 0..30 {
                let (n, want) = if (round + t) % 2 == 0 { (1, &want[0]) } else { (5, &want[1]) };
                assert_eq!(inference.predict(&shared, &images[..n * 784]).unwrap(), *want, "thread {t} round {round}, batch {n}");
            }
            done.send(t).unwrap();
        };
        // Threads of their own, and jobs of the kernels' pool as the server's requests are.
        if t % 2 == 0 {
            std::thread::spawn(requests);
        } else {
            rayon::spawn(requests);
        }
    }
    for _ in 0..4 {
        finished.recv_timeout(Duration::from_secs(120)).expect("every thread finishes (a deadlock otherwise)");
    }
}
