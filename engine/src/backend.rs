//! The ops the layers need, dispatched on the device. Tensors hold capacity for a whole batch;
//! each op works on the first `n` examples, so a short last batch reuses the same buffers.

use crate::cpu;
use crate::cpu::gemm::{MatRef, Threads};
use crate::device::Device;
use crate::gpu;
use crate::rng::DropoutKey;
use crate::tensor::Tensor;

/// A 2-D convolution's shapes (NHWC activations, `[kh, kw, c_in, c_out]` weights).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Conv2dGeometry {
    /// Values in one unfolded window: `kh * kw * c_in`.
    pub fn patch_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.in_c
    }
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }
    pub fn in_len(&self) -> usize {
        self.in_h * self.in_w * self.in_c
    }
    pub fn out_len(&self) -> usize {
        self.positions() * self.out_c
    }
    pub fn weight_len(&self) -> usize {
        self.patch_len() * self.out_c
    }
    /// A 1x1, stride-1, unpadded convolution: the input already is its own im2col.
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.stride_h == 1 && self.stride_w == 1 && self.pad_top == 0 && self.pad_left == 0
    }
}

/// A max-pooling window's shapes (NHWC, no padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub size_h: usize,
    pub size_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
}

impl PoolGeometry {
    pub fn in_len(&self) -> usize {
        self.in_h * self.in_w * self.channels
    }
    pub fn out_len(&self) -> usize {
        self.out_h * self.out_w * self.channels
    }
}

/// One optimizer update's hyperparameters.
#[derive(Clone, Copy, Debug)]
pub enum UpdateRule {
    Sgd { lr: f32, weight_decay: f32 },
    Momentum { lr: f32, momentum: f32, nesterov: bool, weight_decay: f32 },
    Adam(cpu::optim::AdamStep),
}

impl Device {
    pub fn conv2d_forward(&self, g: &Conv2dGeometry, n: usize, x: &Tensor, w: &Tensor, b: &Tensor, y: &mut Tensor) {
        match self {
            Device::Cpu(d) => cpu::conv2d::forward(d, g, n, x.cpu(), w.cpu(), b.cpu(), y.cpu_mut()),
            Device::Gpu(d) => gpu::conv2d::forward(&d.ctx, g, n, x.gpu(), w.gpu(), b.gpu(), y.gpu()),
        }
    }

    pub fn conv2d_backward_input(&self, g: &Conv2dGeometry, n: usize, dy: &Tensor, w: &Tensor, dx: &mut Tensor) {
        match self {
            Device::Cpu(d) => cpu::conv2d::backward_input(d, g, n, dy.cpu(), w.cpu(), dx.cpu_mut()),
            Device::Gpu(d) => gpu::conv2d::backward_input(&d.ctx, g, n, dy.gpu(), w.gpu(), dx.gpu()),
        }
    }

    pub fn conv2d_backward_weight(&self, g: &Conv2dGeometry, n: usize, x: &Tensor, dy: &Tensor, dw: &mut Tensor, db: &mut Tensor) {
        match self {
            Device::Cpu(d) => cpu::conv2d::backward_weight(d, g, n, x.cpu(), dy.cpu(), dw.cpu_mut(), db.cpu_mut()),
            Device::Gpu(d) => gpu::conv2d::backward_weight(&d.ctx, g, n, x.gpu(), dy.gpu(), dw.gpu(), db.gpu()),
        }
    }

    pub fn max_pool_forward(&self, g: &PoolGeometry, n: usize, x: &Tensor, y: &mut Tensor, argmax: &mut Tensor<u32>) {
        match self {
            Device::Cpu(_) => cpu::pool::max_forward(g, n, x.cpu(), y.cpu_mut(), argmax.cpu_mut()),
            Device::Gpu(d) => gpu::pool::max_forward(&d.ctx, g, n, x.gpu(), y.gpu(), argmax.gpu()),
        }
    }

    pub fn max_pool_backward(&self, g: &PoolGeometry, n: usize, dy: &Tensor, argmax: &Tensor<u32>, dx: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::pool::max_backward(g, n, dy.cpu(), argmax.cpu(), dx.cpu_mut()),
            Device::Gpu(d) => gpu::pool::max_backward(&d.ctx, g, n, dy.gpu(), argmax.gpu(), dx.gpu()),
        }
    }

    pub fn dense_forward(&self, n: usize, inputs: usize, outputs: usize, x: &Tensor, w: &Tensor, b: &Tensor, y: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::dense::forward(n, inputs, outputs, x.cpu(), w.cpu(), b.cpu(), y.cpu_mut()),
            Device::Gpu(d) => gpu::dense::forward(&d.ctx, n, inputs, outputs, x.gpu(), w.gpu(), b.gpu(), y.gpu()),
        }
    }

    pub fn dense_backward_input(&self, n: usize, inputs: usize, outputs: usize, dy: &Tensor, w: &Tensor, dx: &mut Tensor) {
        match self {
            Device::Cpu(d) => cpu::dense::backward_input(d, n, inputs, outputs, dy.cpu(), w.cpu(), dx.cpu_mut()),
            Device::Gpu(d) => gpu::dense::backward_input(&d.ctx, n, inputs, outputs, dy.gpu(), w.gpu(), dx.gpu()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn dense_backward_weight(
        &self,
        n: usize,
        inputs: usize,
        outputs: usize,
        x: &Tensor,
        dy: &Tensor,
        dw: &mut Tensor,
        db: &mut Tensor,
    ) {
        match self {
            Device::Cpu(_) => cpu::dense::backward_weight(n, inputs, outputs, x.cpu(), dy.cpu(), dw.cpu_mut(), db.cpu_mut()),
            Device::Gpu(d) => gpu::dense::backward_weight(&d.ctx, n, inputs, outputs, x.gpu(), dy.gpu(), dw.gpu(), db.gpu()),
        }
    }

    /// ReLU in place on the first `len` elements.
    pub fn relu_forward(&self, len: usize, x: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::relu_forward(&mut x.cpu_mut()[..len]),
            Device::Gpu(d) => gpu::elementwise::relu_forward(&d.ctx, len, x.gpu()),
        }
    }

    /// `dy *= (y > 0)` in place on the first `len` elements.
    pub fn relu_backward(&self, len: usize, y: &Tensor, dy: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::relu_backward(&y.cpu()[..len], &mut dy.cpu_mut()[..len]),
            Device::Gpu(d) => gpu::elementwise::relu_backward(&d.ctx, len, y.gpu(), dy.gpu()),
        }
    }

    /// Inverted dropout in place; the backward calls this on the gradient with the same key.
    pub fn dropout(&self, len: usize, key: DropoutKey, rate: f32, x: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::dropout(&mut x.cpu_mut()[..len], key.mask(rate), rate),
            Device::Gpu(d) => gpu::elementwise::dropout(&d.ctx, len, key, rate, x.gpu()),
        }
    }

    /// Uploads u8 pixels into `x` as floats in [0, 1].
    pub fn upload_images_u8(&self, pixels: &[u8], x: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::normalize_u8(pixels, x.cpu_mut()),
            Device::Gpu(d) => gpu::elementwise::normalize_u8(&d.ctx, pixels, x.gpu()),
        }
    }

    /// Fused softmax + mean cross-entropy: writes `dlogits` and `stats = [loss sum, correct count]`.
    pub fn softmax_xent(&self, n: usize, classes: usize, logits: &Tensor, labels: &Tensor<u32>, dlogits: &mut Tensor, stats: &mut Tensor) {
        match self {
            Device::Cpu(_) => {
                let (loss, correct) = cpu::softmax_xent::forward_backward(n, classes, logits.cpu(), labels.cpu(), dlogits.cpu_mut());
                stats.cpu_mut()[..2].copy_from_slice(&[loss, correct as f32]);
            }
            Device::Gpu(d) => {
                gpu::softmax_xent::forward_backward(&d.ctx, n, classes, logits.gpu(), labels.gpu(), dlogits.gpu(), stats.gpu())
            }
        }
    }

    pub fn softmax(&self, n: usize, classes: usize, logits: &Tensor, probs: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::softmax_xent::softmax(n, classes, logits.cpu(), probs.cpu_mut()),
            Device::Gpu(d) => gpu::softmax_xent::softmax(&d.ctx, n, classes, logits.gpu(), probs.gpu()),
        }
    }

    pub fn argmax(&self, n: usize, classes: usize, logits: &Tensor, out: &mut Tensor<u32>) {
        match self {
            Device::Cpu(_) => cpu::softmax_xent::argmax(n, classes, logits.cpu(), out.cpu_mut()),
            Device::Gpu(d) => gpu::softmax_xent::argmax(&d.ctx, n, classes, logits.gpu(), out.gpu()),
        }
    }

    /// Applies one optimizer update to `param`; `state` holds 0 (SGD), 1 (momentum) or 2 (Adam) tensors.
    pub fn optimizer_update(&self, rule: UpdateRule, param: &mut Tensor, grad: &Tensor, state: &mut [Tensor]) {
        match self {
            Device::Cpu(_) => match (rule, state) {
                (UpdateRule::Sgd { lr, weight_decay }, []) => cpu::optim::sgd(param.cpu_mut(), grad.cpu(), lr, weight_decay),
                (UpdateRule::Momentum { lr, momentum, nesterov, weight_decay }, [v]) => {
                    cpu::optim::momentum(param.cpu_mut(), grad.cpu(), v.cpu_mut(), lr, momentum, nesterov, weight_decay)
                }
                (UpdateRule::Adam(step), [m, v]) => cpu::optim::adam(param.cpu_mut(), grad.cpu(), m.cpu_mut(), v.cpu_mut(), step),
                (rule, state) => panic!("optimizer state of {} tensors does not fit {rule:?}", state.len()),
            },
            Device::Gpu(d) => {
                let mut buffers = [param.gpu(); 2];
                for (slot, t) in buffers.iter_mut().zip(state.iter()) {
                    *slot = t.gpu();
                }
                gpu::optim::update(&d.ctx, rule, param.len(), param.gpu(), grad.gpu(), &buffers[..state.len()]);
            }
        }
    }

    /// `c[m, n] = a[m, k] * b[k, n]`, all row-major: the bare matrix product, for benchmarks.
    pub fn matmul(&self, m: usize, n: usize, k: usize, a: &Tensor, b: &Tensor, c: &mut Tensor) {
        match self {
            Device::Cpu(_) => {
                cpu::gemm::matmul(c.cpu_mut(), MatRef::row_major(a.cpu(), m, k), MatRef::row_major(b.cpu(), k, n), false, Threads::Pool)
            }
            Device::Gpu(d) => gpu::dense::matmul(&d.ctx, m, n, k, a.gpu(), b.gpu(), c.gpu()),
        }
    }
}
