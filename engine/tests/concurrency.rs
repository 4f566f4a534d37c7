//! Several threads predicting at once on one CPU device, as the server's request threads do
//! without batching: every answer equals the one-thread answer, and none waits forever (a pool
//! thread waiting inside one request's kernel may run another request's kernel, so no kernel
//! may hold a lock that another needs while it runs).

use std::sync::mpsc;
use std::time::Duration;

use engine::Device;
use engine::model::{Config, Network};
use engine::predictor::Predictor;

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
