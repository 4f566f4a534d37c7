//! Square matrix products on a device: GFLOP/s at each size (fastest of `REPS`, 10 by default,
//! waiting for the device each time; inputs stay on the device, nothing is read back).
//! `[DEVICE=gpu] [SIZES=1024,4096] cargo run --release -p engine --example matmul_flops`

use std::time::Instant;

use engine::{Device, Tensor};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let device = Device::open(env_or("DEVICE", "gpu").parse().expect("DEVICE is cpu, gpu or auto")).expect("device");
    let reps: usize = env_or("REPS", "10").parse().expect("REPS is a number");
    println!("{}", device.describe());
    for size in env_or("SIZES", "1024,4096").split(',').map(|s| s.trim().parse::<usize>().expect("SIZES are numbers")) {
        let values: Vec<f32> = (0..size * size).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let a = Tensor::from_host(&device, "a", &[size, size], &values).unwrap();
        let b = Tensor::from_host(&device, "b", &[size, size], &values).unwrap();
        let mut c = Tensor::zeros(&device, &[size, size]);
        device.matmul(size, size, size, &a, &b, &mut c);
        device.synchronize();
        let best = (0..reps)
            .map(|_| {
                let start = Instant::now();
                device.matmul(size, size, size, &a, &b, &mut c);
                device.synchronize();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let gflops = 2.0 * (size as f64).powi(3) / best / 1e9;
        println!("matmul {size}^3: {:.3} ms, {gflops:.1} GFLOP/s", best * 1e3);
    }
}
