//! The CPU kernels' pool entry, `in_pool`: results and panics come back to the caller, calls
//! nest, and the threads it keeps awake go back to sleep once calls stop.

use std::time::{Duration, Instant};

use engine::cpu::threads::{in_pool, threads_staying_awake};

#[test]
fn in_pool_returns_the_result_and_passes_a_panic_on() {
    let sum: u64 = in_pool(|| {
        use rayon::prelude::*;
        (1..=1000u64).into_par_iter().sum()
    });
    assert_eq!(sum, 500_500);
    let panicked = std::panic::catch_unwind(|| in_pool(|| panic!("inside the pool")));
    assert!(panicked.is_err(), "the work's panic reaches the caller");
    assert_eq!(in_pool(|| 7), 7, "the pool still works after a panic");
}

#[test]
fn in_pool_calls_nest_inside_pool_jobs() {
    let (a, b) = in_pool(|| rayon::join(|| in_pool(|| 1), || in_pool(|| in_pool(|| 2))));
    assert_eq!((a, b), (1, 2));
}

#[test]
fn threads_kept_awake_go_back_to_sleep_when_calls_stop() {
    in_pool(|| ());
    assert!(threads_staying_awake() <= rayon::current_num_threads(), "at most every pool thread");
    let deadline = Instant::now() + Duration::from_secs(20);
    while threads_staying_awake() > 0 {
        assert!(Instant::now() < deadline, "{} threads still awake 20 s after the last call", threads_staying_awake());
        std::thread::sleep(Duration::from_millis(1));
    }
}
