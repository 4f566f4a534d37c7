//! Training batches prepared ahead of the step on a thread of their own: the examples of each
//! step gathered in epoch order and, with `[train.augment]`, distorted on a pool of
//! `augment_threads`, so that the device does not wait for them. A bounded queue holds the
//! prepared batches; their buffers go round and are reused.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use engine::data::Dataset;
use engine::data::augment::Augmenter;
use rayon::prelude::*;

/// Batches prepared ahead of the one being trained on.
const QUEUE_DEPTH: usize = 4;

/// One step's examples: `len` images (u8 pixels, one after another) and labels.
pub struct Batch {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub len: usize,
}

/// The steps of one epoch to prepare, from `first_step` on, in the order `order` gives.
struct EpochPlan {
    epoch: usize,
    order: Arc<[u32]>,
    first_step: usize,
}

pub struct BatchSource {
    plans: Option<Sender<EpochPlan>>,
    ready: Option<Receiver<Batch>>,
    recycled: Sender<Batch>,
    worker: Option<JoinHandle<()>>,
}

impl BatchSource {
    /// Starts the preparing thread over `data`; `augmenter` distorts each image (none: as they are).
    pub fn spawn(data: Arc<Dataset>, batch_size: usize, augmenter: Option<Augmenter>, threads: usize) -> anyhow::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("augment-{i}"))
            .build()
            .context("cannot start the augmentation threads")?;
        let (plans, plan_rx) = channel::<EpochPlan>();
        let (ready_tx, ready) = sync_channel(QUEUE_DEPTH);
        let (recycled, recycled_rx) = channel();
        let worker = std::thread::Builder::new()
            .name("batches".into())
            .spawn(move || {
                let preparer = Preparer { data, batch_size, augmenter, pool };
                preparer.run(plan_rx, ready_tx, recycled_rx)
            })
            .context("cannot start the batch thread")?;
        Ok(Self { plans: Some(plans), ready: Some(ready), recycled, worker: Some(worker) })
    }

    /// Queues the steps of `epoch` from `first_step` on; [`Self::next`] returns them in order.
    pub fn start_epoch(&self, epoch: usize, order: Arc<[u32]>, first_step: usize) {
        if let Some(plans) = &self.plans {
            // A send fails only when the thread has stopped, which `next` reports.
            let _ = plans.send(EpochPlan { epoch, order, first_step });
        }
    }

    /// The next prepared batch, and how long the caller waited for it.
    pub fn next(&mut self) -> anyhow::Result<(Batch, Duration)> {
        let start = Instant::now();
        let ready = self.ready.as_ref().expect("open until dropped");
        match ready.recv() {
            Ok(batch) => Ok((batch, start.elapsed())),
            Err(_) => Err(self.failure()),
        }
    }

    /// Hands a batch's buffers back for reuse.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.recycled.send(batch);
    }

    /// Why the thread stopped: its panic message.
    fn failure(&mut self) -> anyhow::Error {
        let panic = self.worker.take().map(JoinHandle::join);
        let why = match panic {
            Some(Err(p)) => p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())),
            _ => None,
        };
        anyhow!("the batch preparation thread stopped{}", why.map(|w| format!(": {w}")).unwrap_or_default())
    }
}

impl Drop for BatchSource {
    /// Closing both queues stops the thread wherever it waits.
    fn drop(&mut self) {
        self.plans.take();
        self.ready.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

struct Preparer {
    data: Arc<Dataset>,
    batch_size: usize,
    augmenter: Option<Augmenter>,
    pool: rayon::ThreadPool,
}

impl Preparer {
    fn run(&self, plans: Receiver<EpochPlan>, ready: SyncSender<Batch>, recycled: Receiver<Batch>) {
        let image_len = self.data.image_len();
        for plan in plans {
            for indices in plan.order.chunks(self.batch_size).skip(plan.first_step) {
                let mut batch = match recycled.try_recv() {
                    Ok(batch) => batch,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                        Batch { pixels: vec![0; self.batch_size * image_len], labels: vec![0; self.batch_size], len: 0 }
                    }
                };
                self.fill(&mut batch, plan.epoch, indices);
                if ready.send(batch).is_err() {
                    return;
                }
            }
        }
    }

    fn fill(&self, batch: &mut Batch, epoch: usize, indices: &[u32]) {
        let (data, len) = (&*self.data, self.data.image_len());
        batch.len = indices.len();
        for (label, &i) in batch.labels.iter_mut().zip(indices) {
            *label = data.labels[i as usize];
        }
        let images = batch.pixels[..indices.len() * len].par_chunks_mut(len).zip(indices);
        match &self.augmenter {
            None => self.pool.install(|| images.for_each(|(dst, &i)| dst.copy_from_slice(data.image(i as usize)))),
            Some(aug) => self.pool.install(|| {
                images.for_each_init(
                    || aug.scratch(),
                    |scratch, (dst, &i)| aug.apply(epoch as u64, i as u64, data.image(i as usize), dst, scratch),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::model::AugmentConfig;

    fn data(n: usize) -> Arc<Dataset> {
        let mut rng = engine::rng::SplitMix64::new(4);
        Arc::new(Dataset {
            images: (0..n * 784).map(|_| rng.below(256) as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            rows: 28,
            cols: 28,
            images_path: "test".into(),
        })
    }

    /// Every batch of epochs 1 and 2 (the second from step 1), as (pixels, labels).
    fn batches(augment: Option<&AugmentConfig>, threads: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let data = data(23);
        let augmenter = augment.map(|c| Augmenter::new(c, 11, 28, 28));
        let mut source = BatchSource::spawn(data, 5, augmenter, threads).unwrap();
        let order: Arc<[u32]> = (0..23u32).rev().collect();
        source.start_epoch(1, order.clone(), 0);
        source.start_epoch(2, order, 1);
        (0..5 + 4)
            .map(|_| {
                let (b, _) = source.next().unwrap();
                let out = (b.pixels[..b.len * 784].to_vec(), b.labels[..b.len].to_vec());
                source.recycle(b);
                out
            })
            .collect()
    }

    #[test]
    fn without_augmentation_batches_are_the_examples_in_order() {
        let data = data(23);
        let got = batches(None, 1);
        let order: Vec<usize> = (0..23).rev().collect();
        let steps: Vec<&[usize]> = order.chunks(5).chain(order.chunks(5).skip(1)).collect();
        assert_eq!(got.len(), steps.len());
        for ((pixels, labels), step) in got.iter().zip(steps) {
            assert_eq!(*pixels, step.iter().flat_map(|&i| data.image(i).to_vec()).collect::<Vec<u8>>());
            assert_eq!(*labels, step.iter().map(|&i| data.labels[i]).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn augmented_batches_do_not_depend_on_the_thread_count() {
        let config = AugmentConfig { translation: 2.0, rotation: 10.0, scale: 0.1, elastic_alpha: 34.0, elastic_sigma: 4.0 };
        let one = batches(Some(&config), 1);
        assert_eq!(one, batches(Some(&config), 3));
        let plain = batches(None, 1);
        assert!(one.iter().zip(&plain).all(|(a, p)| a.0 != p.0 && a.1 == p.1), "images distorted, labels kept");
        // Epoch 2 from step 1 is distorted afresh: its first batch is epoch 1's second batch's examples.
        assert_ne!(one[5].0, one[1].0);
    }

    #[test]
    fn dropping_the_source_stops_its_thread() {
        let data = data(1000);
        let mut source = BatchSource::spawn(data, 10, None, 2).unwrap();
        source.start_epoch(1, (0..1000u32).collect(), 0);
        let _ = source.next().unwrap();
        drop(source); // joins the thread, which was blocked on a full queue
    }
}
