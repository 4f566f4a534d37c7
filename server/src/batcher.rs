//! Dynamic batching with TensorFlow Serving's knobs: requests queue up; a batch thread takes
//! the oldest, waits up to `batch_timeout_micros` (from that request's arrival) for more, and
//! runs them as one engine call of at most `max_batch_size` images, then splits the outputs
//! back. A request that would overfill `max_enqueued_batches` batches is refused at once.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::predictor::Prediction;
use tokio::sync::oneshot;

use crate::cli::BatchingOptions;

/// Runs one merged batch: `n` examples in, their prediction out.
pub type Runner = Arc<dyn Fn(&[f32]) -> Result<Prediction, String> + Send + Sync>;

pub type Reply = oneshot::Receiver<Result<Prediction, String>>;

struct Task {
    images: Vec<f32>,
    n: usize,
    arrived: Instant,
    reply: oneshot::Sender<Result<Prediction, String>>,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    images: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_batch: usize,
    max_queued_images: usize,
    timeout: Duration,
    classes: usize,
}

/// The queue is full: the caller answers UNAVAILABLE.
#[derive(Debug)]
pub struct QueueFull {
    pub queued_images: usize,
}

pub struct Batcher {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Batcher {
    pub fn new(options: &BatchingOptions, classes: usize, runner: Runner) -> Self {
        let max_batch = options.max_batch_size.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            max_batch,
            max_queued_images: max_batch * options.max_enqueued_batches.max(1),
            timeout: Duration::from_micros(options.batch_timeout_micros),
            classes,
        });
        let count = if options.num_batch_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.num_batch_threads
        };
        let threads = (0..count)
            .map(|i| {
                let (shared, runner) = (shared.clone(), runner.clone());
                std::thread::Builder::new()
                    .name(format!("batch-{i}"))
                    .spawn(move || batch_loop(&shared, &runner))
                    .expect("spawn a batch thread")
            })
            .collect();
        Self { shared, threads }
    }

    /// Queues `n` examples; the reply arrives when their batch has run.
    pub fn submit(&self, images: Vec<f32>, n: usize) -> Result<Reply, QueueFull> {
        let (reply, receiver) = oneshot::channel();
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.images > 0 && queue.images + n > self.shared.max_queued_images {
            return Err(QueueFull { queued_images: queue.images });
        }
        queue.images += n;
        queue.tasks.push_back(Task { images, n, arrived: Instant::now(), reply });
        drop(queue);
        self.shared.ready.notify_one();
        Ok(receiver)
    }
}

impl Drop for Batcher {
    /// Runs what is queued, then stops the threads.
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn batch_loop(shared: &Shared, runner: &Runner) {
    let mut batch: Vec<Task> = Vec::new();
    let mut images: Vec<f32> = Vec::new();
    loop {
        {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while queue.tasks.is_empty() {
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            let deadline = queue.tasks[0].arrived + shared.timeout;
            let mut total = 0;
            loop {
                while let Some(next) = queue.tasks.front() {
                    if total > 0 && total + next.n > shared.max_batch {
                        break;
                    }
                    let task = queue.tasks.pop_front().expect("front exists");
                    queue.images -= task.n;
                    total += task.n;
                    batch.push(task);
                }
                let now = Instant::now();
                if total >= shared.max_batch || now >= deadline || queue.closed || !queue.tasks.is_empty() {
                    break;
                }
                queue = shared.ready.wait_timeout(queue, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        images.clear();
        for task in &batch {
            images.extend_from_slice(&task.images);
        }
        let result = runner(&images);
        let mut first = 0;
        for task in batch.drain(..) {
            let reply = result.as_ref().map_err(Clone::clone).map(|p| Prediction {
                classes: p.classes[first..first + task.n].to_vec(),
                probabilities: p.probabilities[first * shared.classes..(first + task.n) * shared.classes].to_vec(),
            });
            first += task.n;
            let _ = task.reply.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_batch_size: usize, timeout_micros: u64, max_enqueued_batches: usize) -> BatchingOptions {
        BatchingOptions {
            enable_batching: true,
            max_batch_size,
            batch_timeout_micros: timeout_micros,
            num_batch_threads: 1,
            max_enqueued_batches,
        }
    }

    /// Predicts class = first pixel, and records each call's batch size.
    fn echo_runner(calls: Arc<Mutex<Vec<usize>>>, gate: Arc<(Mutex<bool>, Condvar)>) -> Runner {
        Arc::new(move |images: &[f32]| {
            let (lock, cv) = &*gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            calls.lock().unwrap().push(images.len());
            Ok(Prediction { classes: images.iter().map(|&v| v as i64).collect(), probabilities: images.to_vec() })
        })
    }

    fn open(gate: &(Mutex<bool>, Condvar)) {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    #[test]
    fn merges_concurrent_requests_and_splits_the_outputs_back() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(true), Condvar::new()));
        let batcher = Batcher::new(&options(8, 200_000, 4), 1, echo_runner(calls.clone(), gate));
        let replies: Vec<Reply> = (0..5).map(|i| batcher.submit(vec![i as f32], 1).unwrap()).collect();
        for (i, r) in replies.into_iter().enumerate() {
            let p = r.blocking_recv().unwrap().unwrap();
            assert_eq!(p.classes, vec![i as i64]);
            assert_eq!(p.probabilities, vec![i as f32]);
        }
        let calls = calls.lock().unwrap();
        assert!(calls.len() < 5, "five requests within the timeout are merged: {calls:?}");
    }

    #[test]
    fn a_full_batch_runs_without_waiting_for_the_timeout() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(true), Condvar::new()));
        let batcher = Batcher::new(&options(4, 60_000_000, 4), 1, echo_runner(calls.clone(), gate));
        let start = Instant::now();
        let replies: Vec<Reply> = (0..4).map(|i| batcher.submit(vec![i as f32], 1).unwrap()).collect();
        for r in replies {
            r.blocking_recv().unwrap().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(*calls.lock().unwrap(), vec![4]);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let batcher = Batcher::new(&options(2, 0, 2), 1, echo_runner(calls.clone(), gate.clone()));
        // The thread takes the first batch and blocks in the runner; 2 batches of 2 may wait.
        let mut replies = vec![batcher.submit(vec![0.0; 2], 2).unwrap()];
        while batcher.shared.queue.lock().unwrap().images > 0 {
            std::thread::yield_now();
        }
        for _ in 0..4 {
            replies.push(batcher.submit(vec![1.0], 1).unwrap());
        }
        let full = batcher.submit(vec![2.0], 1).unwrap_err();
        assert_eq!(full.queued_images, 4);
        open(&gate);
        for r in replies {
            r.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(calls.lock().unwrap().iter().sum::<usize>(), 6);
    }
}
