//! Dynamic batching with TensorFlow Serving's knobs and its shared batch scheduler: one set of
//! batch threads per process serves a queue per model version. A queue is ready when it holds
//! `max_batch_size` images or its oldest request has waited `batch_timeout_micros`; a thread
//! takes the next ready queue (round robin), runs its requests as one engine call of at most
//! `max_batch_size` images and splits the outputs back. A request that would overfill its
//! queue's `max_enqueued_batches` batches is refused at once; one whose caller has gone (a
//! deadline passed, the client hung up) is dropped unrun. With `allowed_batch_sizes` a merged
//! batch is padded up to the next allowed size (with copies of its first image), as TensorFlow
//! Serving pads, and the padding's outputs are dropped.
//!
//! Batch threads are supervised: a panic in a batch answers that batch's requests with an error,
//! and a thread whose loop fails is restarted; neither stops the scheduler.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::predictor::Prediction;
use tokio::sync::oneshot;

use crate::batching_config::BatchingConfig;
use crate::fault;
use crate::metrics::Metrics;

/// Runs one merged batch: `n` examples in, their prediction out.
pub type Runner = Arc<dyn Fn(&[f32]) -> Result<Prediction, String> + Send + Sync>;

pub type Reply = oneshot::Receiver<Result<Prediction, String>>;

struct Task {
    images: Vec<f32>,
    n: usize,
    arrived: Instant,
    reply: oneshot::Sender<Result<Prediction, String>>,
}

struct Queue {
    id: u64,
    runner: Runner,
    classes: usize,
    tasks: VecDeque<Task>,
    images: usize,
    /// False once its [`BatchQueue`] is dropped: what is queued still runs, then it goes.
    open: bool,
}

#[derive(Default)]
struct State {
    queues: Vec<Queue>,
    next_id: u64,
    /// Where the round-robin search for a ready queue starts.
    cursor: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    max_batch: usize,
    max_queued_images: usize,
    timeout: Duration,
    config: BatchingConfig,
    metrics: Arc<Metrics>,
    restarts: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue is full: the caller answers UNAVAILABLE.
#[derive(Debug)]
pub struct QueueFull {
    pub queued_images: usize,
}

/// The process's batch threads, shared by every model version.
pub struct BatchScheduler {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// One model version's queue on the shared scheduler.
pub struct BatchQueue {
    id: u64,
    shared: Arc<Shared>,
}

impl BatchScheduler {
    pub fn new(config: &BatchingConfig, metrics: Arc<Metrics>) -> Self {
        let max_batch = config.max_batch_size.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            max_batch,
            max_queued_images: max_batch.saturating_mul(config.max_enqueued_batches.max(1)),
            timeout: config.batch_timeout,
            config: config.clone(),
            metrics,
            restarts: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let count = config.num_batch_threads.max(1);
        let threads = (0..count)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new().name(format!("batch-{i}")).spawn(move || supervise(&shared)).expect("spawn a batch thread")
            })
            .collect();
        Self { shared, threads }
    }

    /// A queue whose batches `runner` runs (`classes` probabilities per example).
    pub fn queue(&self, runner: Runner, classes: usize) -> BatchQueue {
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.queues.push(Queue { id, runner, classes, tasks: VecDeque::new(), images: 0, open: true });
        BatchQueue { id, shared: self.shared.clone() }
    }

    /// Batch threads: the most batches that run at once.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Batch threads restarted after their loop failed.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Requests dropped unrun because their caller had gone.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Queues alive (open, or closed with requests still to run).
    pub fn queues(&self) -> usize {
        self.shared.lock().queues.len()
    }
}

impl Drop for BatchScheduler {
    /// Runs what is queued, then stops the threads.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl BatchQueue {
    /// Queues `n` examples; the reply arrives when their batch has run.
    pub fn submit(&self, images: Vec<f32>, n: usize) -> Result<Reply, QueueFull> {
        let (reply, receiver) = oneshot::channel();
        let mut state = self.shared.lock();
        let max_queued = self.shared.max_queued_images;
        let queue = state.queues.iter_mut().find(|q| q.id == self.id).expect("a queue lives while its handle does");
        if queue.images > 0 && queue.images + n > max_queued {
            return Err(QueueFull { queued_images: queue.images });
        }
        queue.images += n;
        queue.tasks.push_back(Task { images, n, arrived: Instant::now(), reply });
        drop(state);
        self.shared.ready.notify_one();
        Ok(receiver)
    }
}

impl BatchQueue {
    /// Images waiting in this queue (not yet taken by a batch thread).
    pub fn queued_images(&self) -> usize {
        self.shared.lock().queues.iter().find(|q| q.id == self.id).map_or(0, |q| q.images)
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(queue) = state.queues.iter_mut().find(|q| q.id == self.id) {
            queue.open = false;
        }
        state.queues.retain(|q| q.open || !q.tasks.is_empty());
        drop(state);
        self.shared.ready.notify_all();
    }
}

/// Runs the batch loop, restarting it if it ever fails, until the scheduler closes.
fn supervise(shared: &Shared) {
    loop {
        match fault::contain(|| batch_loop(shared)) {
            Ok(()) => return,
            Err(cause) => {
                shared.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!("batch thread {}: {cause}; restarted", std::thread::current().name().unwrap_or("?"));
            }
        }
    }
}

/// A batch taken from a queue.
struct Batch {
    runner: Runner,
    classes: usize,
    tasks: Vec<Task>,
}

enum Next {
    Run(Batch),
    WaitUntil(Option<Instant>),
    Stop,
}

fn next_batch(shared: &Shared, state: &mut State) -> Next {
    let now = Instant::now();
    let count = state.queues.len();
    let mut earliest: Option<Instant> = None;
    for k in 0..count {
        let i = (state.cursor + k) % count;
        let queue = &mut state.queues[i];
        // Callers that have gone (deadline passed, client hung up) are not run.
        let before = queue.tasks.len();
        queue.tasks.retain(|t| !t.reply.is_closed());
        if queue.tasks.len() < before {
            shared.dropped.fetch_add((before - queue.tasks.len()) as u64, Ordering::Relaxed);
            queue.images = queue.tasks.iter().map(|t| t.n).sum();
        }
        let Some(oldest) = queue.tasks.front() else { continue };
        let due = oldest.arrived + shared.timeout;
        if queue.images >= shared.max_batch || now >= due || !queue.open || state.closed {
            let mut tasks = Vec::new();
            let mut total = 0;
            while let Some(task) = queue.tasks.front() {
                if total > 0 && total + task.n > shared.max_batch {
                    break;
                }
                let task = queue.tasks.pop_front().expect("front exists");
                queue.images -= task.n;
                total += task.n;
                tasks.push(task);
            }
            let batch = Batch { runner: queue.runner.clone(), classes: queue.classes, tasks };
            state.cursor = (i + 1) % count;
            state.queues.retain(|q| q.open || !q.tasks.is_empty());
            return Next::Run(batch);
        }
        earliest = Some(earliest.map_or(due, |e| e.min(due)));
    }
    state.queues.retain(|q| q.open || !q.tasks.is_empty());
    if state.closed && state.queues.iter().all(|q| q.tasks.is_empty()) {
        return Next::Stop;
    }
    Next::WaitUntil(earliest)
}

fn batch_loop(shared: &Shared) {
    let mut images: Vec<f32> = Vec::new();
    loop {
        let (batch, more) = {
            let mut state = shared.lock();
            loop {
                match next_batch(shared, &mut state) {
                    Next::Run(batch) => break (batch, state.queues.iter().any(|q| !q.tasks.is_empty())),
                    Next::Stop => return,
                    Next::WaitUntil(None) => state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                    Next::WaitUntil(Some(due)) => {
                        let wait = due.saturating_duration_since(Instant::now());
                        state = shared.ready.wait_timeout(state, wait).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
            }
        };
        if more {
            shared.ready.notify_one();
        }
        run(shared, batch, &mut images);
    }
}

/// Runs one batch (padded to an allowed size) and answers each of its requests with its slice
/// of the outputs.
fn run(shared: &Shared, batch: Batch, images: &mut Vec<f32>) {
    images.clear();
    for task in &batch.tasks {
        images.extend_from_slice(&task.images);
    }
    let total: usize = batch.tasks.iter().map(|t| t.n).sum();
    let padded = shared.config.padded_size(total);
    if padded > total && total > 0 {
        let example = images.len() / total;
        for _ in total..padded {
            images.extend_from_within(..example);
        }
    }
    let now = Instant::now();
    shared.metrics.batch(&shared.config.thread_pool_name, batch.tasks.iter().map(|t| now - t.arrived), total, padded);
    let k = batch.classes;
    let result = fault::contain(|| (batch.runner)(images)).unwrap_or_else(|cause| {
        tracing::error!("a batch of {total} images failed: {cause}");
        Err(format!("the batch failed: {cause}"))
    });
    let result = result.and_then(|p| {
        if p.classes.len() == padded && p.probabilities.len() == padded * k {
            Ok(p)
        } else {
            Err(format!("the engine returned {} classes and {} probabilities for {padded} images", p.classes.len(), p.probabilities.len()))
        }
    });
    let mut first = 0;
    for task in batch.tasks {
        let reply = result.as_ref().map_err(Clone::clone).map(|p| Prediction {
            classes: p.classes[first..first + task.n].to_vec(),
            probabilities: p.probabilities[first * k..(first + task.n) * k].to_vec(),
        });
        first += task.n;
        let _ = task.reply.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_batch_size: usize, timeout_micros: u64, max_enqueued_batches: usize, threads: usize) -> BatchingConfig {
        BatchingConfig {
            max_batch_size,
            batch_timeout: Duration::from_micros(timeout_micros),
            num_batch_threads: threads,
            max_enqueued_batches,
            allowed_batch_sizes: Vec::new(),
            thread_pool_name: "batch_threads".into(),
        }
    }

    fn scheduler(config: &BatchingConfig) -> BatchScheduler {
        BatchScheduler::new(config, Arc::new(Metrics::new()))
    }

    type Gate = Arc<(Mutex<bool>, Condvar)>;

    fn gate(open: bool) -> Gate {
        Arc::new((Mutex::new(open), Condvar::new()))
    }

    fn open(gate: &Gate) {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    /// Predicts class = pixel + offset, waits for `gate`, and records each call's batch size;
    /// a pixel of -1 panics.
    fn echo_runner(calls: Arc<Mutex<Vec<usize>>>, gate: Gate, offset: i64) -> Runner {
        Arc::new(move |images: &[f32]| {
            let (lock, cv) = &*gate;
            let mut is_open = lock.lock().unwrap();
            while !*is_open {
                is_open = cv.wait(is_open).unwrap();
            }
            drop(is_open);
            assert!(!images.contains(&-1.0), "a poisoned image");
            calls.lock().unwrap().push(images.len());
            Ok(Prediction { classes: images.iter().map(|&v| v as i64 + offset).collect(), probabilities: images.to_vec() })
        })
    }

    #[test]
    fn merges_concurrent_requests_and_splits_the_outputs_back() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let scheduler = scheduler(&options(8, 200_000, 4, 1));
        let queue = scheduler.queue(echo_runner(calls.clone(), gate(true), 0), 1);
        let replies: Vec<Reply> = (0..5).map(|i| queue.submit(vec![i as f32], 1).unwrap()).collect();
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
        let scheduler = scheduler(&options(4, 60_000_000, 4, 1));
        let queue = scheduler.queue(echo_runner(calls.clone(), gate(true), 0), 1);
        let start = Instant::now();
        let replies: Vec<Reply> = (0..4).map(|i| queue.submit(vec![i as f32], 1).unwrap()).collect();
        for r in replies {
            r.blocking_recv().unwrap().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(*calls.lock().unwrap(), vec![4]);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let closed = gate(false);
        let scheduler = scheduler(&options(2, 0, 2, 1));
        let queue = scheduler.queue(echo_runner(calls.clone(), closed.clone(), 0), 1);
        // The thread takes the first batch and blocks in the runner; 2 batches of 2 may wait.
        let mut replies = vec![queue.submit(vec![0.0; 2], 2).unwrap()];
        while scheduler.shared.lock().queues[0].images > 0 {
            std::thread::yield_now();
        }
        for _ in 0..4 {
            replies.push(queue.submit(vec![1.0], 1).unwrap());
        }
        let full = queue.submit(vec![2.0], 1).unwrap_err();
        assert_eq!(full.queued_images, 4);
        open(&closed);
        for r in replies {
            r.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(calls.lock().unwrap().iter().sum::<usize>(), 6);
    }

    #[test]
    fn one_scheduler_serves_every_queue_without_mixing_them() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let scheduler = scheduler(&options(4, 1_000, 8, 2));
        let queues: Vec<BatchQueue> = (0..3).map(|q| scheduler.queue(echo_runner(calls.clone(), gate(true), 100 * q as i64), 1)).collect();
        let replies: Vec<(i64, Reply)> =
            (0..30).map(|i| (100 * (i % 3) + i, queues[(i % 3) as usize].submit(vec![i as f32], 1).unwrap())).collect();
        for (want, r) in replies {
            assert_eq!(r.blocking_recv().unwrap().unwrap().classes, vec![want]);
        }
        assert_eq!(scheduler.queues(), 3);
        drop(queues);
        assert_eq!(scheduler.queues(), 0, "a dropped, drained queue is removed");
    }

    #[test]
    fn a_panicking_batch_answers_an_error_and_the_threads_carry_on() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let scheduler = scheduler(&options(1, 0, 8, 1));
        let queue = scheduler.queue(echo_runner(calls.clone(), gate(true), 0), 1);
        let err = queue.submit(vec![-1.0], 1).unwrap().blocking_recv().unwrap().unwrap_err();
        assert!(err.contains("panic") && err.contains("a poisoned image"), "{err}");
        for i in 0..3 {
            assert_eq!(queue.submit(vec![i as f32], 1).unwrap().blocking_recv().unwrap().unwrap().classes, vec![i]);
        }
    }

    #[test]
    fn requests_whose_caller_has_gone_are_not_run() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let closed = gate(false);
        let scheduler = scheduler(&options(1, 0, 8, 1));
        let queue = scheduler.queue(echo_runner(calls.clone(), closed.clone(), 0), 1);
        let first = queue.submit(vec![1.0], 1).unwrap();
        while scheduler.shared.lock().queues[0].images > 0 {
            std::thread::yield_now();
        }
        drop(queue.submit(vec![2.0], 1).unwrap());
        let third = queue.submit(vec![3.0], 1).unwrap();
        open(&closed);
        first.blocking_recv().unwrap().unwrap();
        third.blocking_recv().unwrap().unwrap();
        assert_eq!(*calls.lock().unwrap(), vec![1, 1]);
        assert_eq!(scheduler.dropped(), 1);
    }

    #[test]
    fn batches_are_padded_to_the_next_allowed_size_with_the_first_image() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::new());
        let config = BatchingConfig { allowed_batch_sizes: vec![2, 4, 8], ..options(8, 0, 8, 1) };
        let scheduler = BatchScheduler::new(&config, metrics.clone());
        let record = seen.clone();
        let runner: Runner = Arc::new(move |images: &[f32]| {
            record.lock().unwrap().push(images.to_vec());
            Ok(Prediction { classes: images.iter().map(|&v| v as i64).collect(), probabilities: images.to_vec() })
        });
        let queue = scheduler.queue(runner, 1);
        let p = queue.submit(vec![5.0, 6.0, 7.0], 3).unwrap().blocking_recv().unwrap().unwrap();
        assert_eq!(p.classes, vec![5, 6, 7]);
        assert_eq!(*seen.lock().unwrap(), vec![vec![5.0, 6.0, 7.0, 5.0]]);
        let text = metrics.render(&[]);
        assert!(text.contains("padding_size_sum{execution_batch_size=\"4\"} 1"), "{text}");
        assert!(text.contains("processed_batch_size_sum 4"), "{text}");
        assert!(text.contains("input_batch_size_sum 3"), "{text}");
    }

    #[test]
    fn a_dropped_queue_still_runs_what_it_holds() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let scheduler = scheduler(&options(8, 10_000_000, 8, 1));
        let queue = scheduler.queue(echo_runner(calls.clone(), gate(true), 0), 1);
        let reply = queue.submit(vec![5.0], 1).unwrap();
        drop(queue);
        assert_eq!(reply.blocking_recv().unwrap().unwrap().classes, vec![5]);
    }
}
