//! Engine calls made from the async threads, off them. On the CPU a call is a job of the
//! kernels' thread pool: its parallel loops then start on awake pool threads, with no blocking
//! thread between the request and the pool to wake and wait for. A GPU call waits for its
//! device, on a blocking thread.
//!
//! A lone call on an otherwise idle server is waited for actively, the async thread yielding
//! its core between looks, for up to [`WAIT_ACTIVELY`]: parked, the thread would take tens of
//! microseconds to be woken once the result is there, a fifth of a lone image's inference.
//! With other calls in flight the thread parks, free for their requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use engine::DeviceKind;
use tokio::sync::oneshot::{self, error::TryRecvError};

/// How long a lone CPU call is waited for before the async thread parks.
const WAIT_ACTIVELY: Duration = Duration::from_millis(2);

/// CPU engine calls in flight.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` on `device`'s threads and waits for its result.
pub async fn off_async_threads<R: Send + 'static>(device: DeviceKind, work: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    match device {
        DeviceKind::Cpu => {
            let in_flight = InFlight::enter();
            let (reply, mut result) = oneshot::channel();
            rayon::spawn(move || {
                let _ = reply.send(work());
            });
            if in_flight.alone
                && let Some(done) = wait_actively(&mut result)
            {
                return done;
            }
            result.await.map_err(|_| dropped())
        }
        _ => tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string()),
    }
}

/// The result, if it comes within [`WAIT_ACTIVELY`].
fn wait_actively<R>(result: &mut oneshot::Receiver<R>) -> Option<Result<R, String>> {
    let deadline = Instant::now() + WAIT_ACTIVELY;
    while Instant::now() < deadline {
        match result.try_recv() {
            Ok(value) => return Some(Ok(value)),
            Err(TryRecvError::Closed) => return Some(Err(dropped())),
            Err(TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    None
}

fn dropped() -> String {
    "the engine call was dropped".to_string()
}

/// One CPU call counted in [`IN_FLIGHT`] until dropped (also when its request is cancelled).
struct InFlight {
    /// No other call was in flight when this one started.
    alone: bool,
}

impl InFlight {
    fn enter() -> Self {
        Self { alone: IN_FLIGHT.fetch_add(1, Ordering::AcqRel) == 0 }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight() -> usize {
        IN_FLIGHT.load(Ordering::Acquire)
    }

    /// One test: the calls share [`IN_FLIGHT`], which the checks read. (A work that panics is
    /// not among them: rayon aborts on a job's panic, so the server's works contain their own.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_return_their_results_alone_or_together_and_are_counted_until_done() {
        assert_eq!(off_async_threads(DeviceKind::Cpu, || 6 * 7).await, Ok(42), "a lone call, waited for actively");
        assert_eq!(in_flight(), 0);

        let slow = || {
            std::thread::sleep(WAIT_ACTIVELY * 2);
            "slow"
        };
        assert_eq!(off_async_threads(DeviceKind::Cpu, slow).await, Ok("slow"), "a call longer than the active wait");

        let calls: Vec<_> = (0..8u64)
            .map(|i| {
                tokio::spawn(off_async_threads(DeviceKind::Cpu, move || {
                    std::thread::sleep(Duration::from_millis(5));
                    i * i
                }))
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), Ok((i * i) as u64), "call {i} of 8 in flight together");
        }
        assert_eq!(in_flight(), 0);

        let cancelled = tokio::time::timeout(Duration::from_millis(1), off_async_threads(DeviceKind::Cpu, slow)).await;
        assert!(cancelled.is_err(), "the request gave up first");
        assert_eq!(in_flight(), 0, "a cancelled call is no longer counted");
    }
}
