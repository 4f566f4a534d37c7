//! The ops the layers need, dispatched on the device. Tensors hold capacity for a whole batch;
//! each op works on the first `n` examples, so a short last batch reuses the same buffers.

pub use crate::activation::Activation;
use crate::cpu;
use crate::cpu::gemm::{MatRef, Threads};
use crate::device::Device;
use crate::gpu;
use crate::rng::DropoutKey;
use crate::tensor::Tensor;

/// A 2-D convolution's shapes (NHWC activations, `[kh, kw, c_in, c_out]` weights).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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

/// A batch normalisation's shape and constants: per example, `rows` rows of `channels`
/// (an image's pixels, or one row of features).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormGeometry {
    pub rows: usize,
    pub channels: usize,
    pub momentum: f32,
    pub epsilon: f32,
}

impl NormGeometry {
    pub fn len(&self) -> usize {
        self.rows * self.channels
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch normalisation's trainable scale and offset, and its running averages.
pub struct NormParams<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub running_mean: &'a Tensor,
    pub running_var: &'a Tensor,
}

/// An inverted-dropout mask: which elements survive, and the rate (survivors scale by 1 / (1 - rate)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub key: DropoutKey,
    pub rate: f32,
}

/// The element-wise layers that follow a conv, dense, batch-norm or pooling layer, fused into
/// its kernel. On an activation: an activation function, then a dropout. On the gradient
/// flowing back into that activation (see [`GradMask`]): the function's slope read from the
/// activation (one whose slope follows from its output), then the same dropout mask.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Epilogue {
    pub activation: Option<Activation>,
    pub dropout: Option<Dropout>,
}

impl Epilogue {
    pub fn is_identity(&self) -> bool {
        self.activation.is_none() && self.dropout.is_none()
    }

    /// A ReLU and nothing else.
    pub fn relu() -> Self {
        Self { activation: Some(Activation::Relu), dropout: None }
    }

    /// The activation's kernel fields: its WGSL code and alpha.
    pub(crate) fn activation_code(&self) -> (u32, f32) {
        self.activation.map_or((crate::activation::ACT_NONE, 0.0), Activation::code)
    }

    /// Applies the epilogue to activations on the CPU (the same order and values as the layers).
    fn forward_cpu(&self, y: &mut [f32]) {
        if let Some(f) = self.activation {
            cpu::elementwise::activation_in_place(f, y);
        }
        if let Some(d) = self.dropout {
            cpu::elementwise::dropout(y, d.key.mask(d.rate), d.rate);
        }
    }
}

/// The gradient masks of an [`Epilogue`], applied to a gradient as it is written: `activation`
/// is the activation the gradient belongs to (the epilogue's output).
#[derive(Clone, Copy)]
pub struct GradMask<'a> {
    pub epilogue: Epilogue,
    pub activation: &'a Tensor,
}

impl GradMask<'_> {
    fn backward_cpu(&self, dx: &mut [f32]) {
        if let Some(f) = self.epilogue.activation {
            cpu::elementwise::slope_at_output(f, &self.activation.cpu()[..dx.len()], dx);
        }
        if let Some(d) = self.epilogue.dropout {
            cpu::elementwise::dropout(dx, d.key.mask(d.rate), d.rate);
        }
    }
}

/// One optimizer update's hyperparameters.
#[derive(Clone, Copy, Debug)]
pub enum UpdateRule {
    Sgd { lr: f32, weight_decay: f32 },
    Momentum { lr: f32, momentum: f32, nesterov: bool, weight_decay: f32 },
    Adam(cpu::optim::AdamStep),
}

/// A convolution's input: activations, or u8 pixels packed four to a word (little-endian),
/// which the convolution scales to [0, 1] as it reads them (a network's input on a GPU).
#[derive(Clone, Copy)]
pub enum ConvInput<'a> {
    F32(&'a Tensor),
    U8(&'a Tensor<u32>),
}

impl<'a> From<&'a Tensor> for ConvInput<'a> {
    fn from(x: &'a Tensor) -> Self {
        ConvInput::F32(x)
    }
}

impl<'a> From<&'a Tensor<u32>> for ConvInput<'a> {
    fn from(pixels: &'a Tensor<u32>) -> Self {
        ConvInput::U8(pixels)
    }
}

impl ConvInput<'_> {
    /// The first `len` input values on the CPU (u8 pixels scaled into a new buffer).
    fn cpu(&self, len: usize) -> std::borrow::Cow<'_, [f32]> {
        match self {
            ConvInput::F32(x) => std::borrow::Cow::Borrowed(x.cpu()),
            ConvInput::U8(pixels) => {
                let mut x = vec![0.0; len];
                cpu::elementwise::normalize_u8(&bytemuck::cast_slice(pixels.cpu())[..len], &mut x);
                std::borrow::Cow::Owned(x)
            }
        }
    }

    fn gpu(&self) -> (gpu::BufRef<'_>, bool) {
        match self {
            ConvInput::F32(x) => (x.gpu(), false),
            ConvInput::U8(pixels) => (pixels.gpu(), true),
        }
    }
}

impl Device {
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_forward<'a>(
        &self,
        g: &Conv2dGeometry,
        n: usize,
        x: impl Into<ConvInput<'a>>,
        w: &Tensor,
        b: &Tensor,
        epilogue: Epilogue,
        y: &mut Tensor,
    ) {
        let x = x.into();
        match self {
            Device::Cpu(d) => {
                cpu::conv2d::forward(d, g, n, &x.cpu(n * g.in_len()), w.cpu(), b.cpu(), y.cpu_mut());
                epilogue.forward_cpu(&mut y.cpu_mut()[..n * g.out_len()]);
            }
            Device::Gpu(d) => gpu::conv2d::forward(&d.ctx, g, n, x.gpu(), w.gpu(), b.gpu(), &epilogue, y.gpu()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_backward_input(&self, g: &Conv2dGeometry, n: usize, dy: &Tensor, w: &Tensor, mask: Option<GradMask>, dx: &mut Tensor) {
        match self {
            Device::Cpu(d) => {
                cpu::conv2d::backward_input(d, g, n, dy.cpu(), w.cpu(), dx.cpu_mut());
                if let Some(mask) = mask {
                    mask.backward_cpu(&mut dx.cpu_mut()[..n * g.in_len()]);
                }
            }
            Device::Gpu(d) => gpu::conv2d::backward_input(&d.ctx, g, n, dy.gpu(), w.gpu(), mask.as_ref(), dx.gpu()),
        }
    }

    /// Inference on the CPU: `y = f(maxpool(conv(x, w) + b))` in one pass over each image
    /// ([`cpu::conv2d::forward_max_pooled`]); `f` commutes with max; `transformed`: `w` through
    /// [`cpu::winograd::transformed_filters`]. A GPU runs the two layers.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_max_pool_inference(
        &self,
        g: &Conv2dGeometry,
        pool: &PoolGeometry,
        n: usize,
        x: &Tensor,
        w: &Tensor,
        transformed: Option<&[f32]>,
        b: &Tensor,
        f: Option<Activation>,
        y: &mut Tensor,
    ) {
        match self {
            Device::Cpu(d) => cpu::conv2d::forward_max_pooled(d, g, pool, n, x.cpu(), w.cpu(), transformed, b.cpu(), f, y.cpu_mut()),
            Device::Gpu(_) => unreachable!("conv2d + max pool fusion is planned for CPU devices only"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_backward_weight<'a>(
        &self,
        g: &Conv2dGeometry,
        n: usize,
        x: impl Into<ConvInput<'a>>,
        dy: &Tensor,
        dw: &mut Tensor,
        db: &mut Tensor,
    ) {
        let x = x.into();
        match self {
            Device::Cpu(d) => cpu::conv2d::backward_weight(d, g, n, &x.cpu(n * g.in_len()), dy.cpu(), dw.cpu_mut(), db.cpu_mut()),
            Device::Gpu(d) => gpu::conv2d::backward_weight(&d.ctx, g, n, x.gpu(), dy.gpu(), dw.gpu(), db.gpu()),
        }
    }

    pub fn max_pool_forward(&self, g: &PoolGeometry, n: usize, x: &Tensor, y: &mut Tensor, argmax: &mut Tensor<u32>) {
        match self {
            Device::Cpu(_) => cpu::pool::max_forward(g, n, x.cpu(), y.cpu_mut(), argmax.cpu_mut()),
            Device::Gpu(d) => gpu::pool::max_forward(&d.ctx, g, n, x.gpu(), y.gpu(), argmax.gpu()),
        }
    }

    pub fn max_pool_backward(
        &self,
        g: &PoolGeometry,
        n: usize,
        dy: &Tensor,
        argmax: &Tensor<u32>,
        mask: Option<GradMask>,
        dx: &mut Tensor,
    ) {
        match self {
            Device::Cpu(_) => {
                cpu::pool::max_backward(g, n, dy.cpu(), argmax.cpu(), dx.cpu_mut());
                if let Some(mask) = mask {
                    mask.backward_cpu(&mut dx.cpu_mut()[..n * g.in_len()]);
                }
            }
            Device::Gpu(d) => gpu::pool::max_backward(&d.ctx, g, n, dy.gpu(), argmax.gpu(), mask.as_ref(), dx.gpu()),
        }
    }

    pub fn avg_pool_forward(&self, g: &PoolGeometry, n: usize, x: &Tensor, y: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::pool::avg_forward(g, n, x.cpu(), y.cpu_mut()),
            Device::Gpu(d) => gpu::pool::avg_forward(&d.ctx, g, n, x.gpu(), y.gpu()),
        }
    }

    pub fn avg_pool_backward(&self, g: &PoolGeometry, n: usize, dy: &Tensor, mask: Option<GradMask>, dx: &mut Tensor) {
        match self {
            Device::Cpu(_) => {
                cpu::pool::avg_backward(g, n, dy.cpu(), dx.cpu_mut());
                if let Some(mask) = mask {
                    mask.backward_cpu(&mut dx.cpu_mut()[..n * g.in_len()]);
                }
            }
            Device::Gpu(d) => gpu::pool::avg_backward(&d.ctx, g, n, dy.gpu(), mask.as_ref(), dx.gpu()),
        }
    }

    /// Batch normalisation in training: the batch's statistics into `saved` (`[mean; 1 /
    /// sqrt(var + eps)]` per channel), the running averages moved towards them, and `y`
    /// normalised with them, finished by `epilogue`.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm_forward_training(
        &self,
        g: &NormGeometry,
        n: usize,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running: (&mut Tensor, &mut Tensor),
        saved: &mut Tensor,
        epilogue: Epilogue,
        y: &mut Tensor,
    ) {
        let rows = n * g.rows;
        let c = g.channels;
        let (mean, var) = running;
        match self {
            Device::Cpu(d) => {
                let x = x.cpu();
                cpu::batchnorm::statistics(d, rows, c, x, g.momentum, g.epsilon, saved.cpu_mut(), mean.cpu_mut(), var.cpu_mut());
                let (m, inv) = saved.cpu()[..2 * c].split_at(c);
                cpu::batchnorm::normalize(rows, c, x, gamma.cpu(), beta.cpu(), m, inv, y.cpu_mut());
                epilogue.forward_cpu(&mut y.cpu_mut()[..rows * c]);
            }
            Device::Gpu(d) => {
                let p = NormParams { gamma, beta, running_mean: mean, running_var: var };
                gpu::batchnorm::forward_training(&d.ctx, g, rows, x.gpu(), &p, saved.gpu(), &epilogue, y.gpu())
            }
        }
    }

    /// Batch normalisation in inference: normalised with the running averages.
    pub fn batchnorm_forward_inference(&self, g: &NormGeometry, n: usize, x: &Tensor, p: &NormParams, epilogue: Epilogue, y: &mut Tensor) {
        let rows = n * g.rows;
        match self {
            Device::Cpu(d) => {
                let (gamma, beta, mean, var) = (p.gamma.cpu(), p.beta.cpu(), p.running_mean.cpu(), p.running_var.cpu());
                cpu::batchnorm::normalize_running(d, rows, g.channels, x.cpu(), gamma, beta, mean, var, g.epsilon, y.cpu_mut());
                epilogue.forward_cpu(&mut y.cpu_mut()[..rows * g.channels]);
            }
            Device::Gpu(d) => gpu::batchnorm::forward_inference(&d.ctx, g, rows, x.gpu(), p, &epilogue, y.gpu()),
        }
    }

    /// Batch normalisation's backward from the training forward's `saved` statistics: the
    /// gradients of gamma and beta, and (unless `dx` is `None`) of the input, finished by `mask`.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm_backward(
        &self,
        g: &NormGeometry,
        n: usize,
        x: &Tensor,
        dy: &Tensor,
        gamma: &Tensor,
        saved: &Tensor,
        (dgamma, dbeta): (&mut Tensor, &mut Tensor),
        mask: Option<GradMask>,
        dx: Option<&mut Tensor>,
    ) {
        let rows = n * g.rows;
        let c = g.channels;
        match self {
            Device::Cpu(d) => {
                cpu::batchnorm::backward_params(d, rows, c, x.cpu(), dy.cpu(), saved.cpu(), dgamma.cpu_mut(), dbeta.cpu_mut());
                if let Some(dx) = dx {
                    cpu::batchnorm::backward_input(
                        rows,
                        c,
                        x.cpu(),
                        dy.cpu(),
                        gamma.cpu(),
                        saved.cpu(),
                        dgamma.cpu(),
                        dbeta.cpu(),
                        dx.cpu_mut(),
                    );
                    if let Some(mask) = mask {
                        mask.backward_cpu(&mut dx.cpu_mut()[..rows * c]);
                    }
                }
            }
            Device::Gpu(d) => {
                let grads = (dgamma.gpu(), dbeta.gpu());
                gpu::batchnorm::backward(
                    &d.ctx,
                    g,
                    rows,
                    x.gpu(),
                    dy.gpu(),
                    gamma.gpu(),
                    saved.gpu(),
                    grads,
                    mask.as_ref(),
                    dx.map(|t| t.gpu()),
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn dense_forward(
        &self,
        n: usize,
        inputs: usize,
        outputs: usize,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        epilogue: Epilogue,
        y: &mut Tensor,
    ) {
        match self {
            Device::Cpu(_) => {
                cpu::dense::forward(n, inputs, outputs, x.cpu(), w.cpu(), b.cpu(), y.cpu_mut());
                epilogue.forward_cpu(&mut y.cpu_mut()[..n * outputs]);
            }
            Device::Gpu(d) => gpu::dense::forward(&d.ctx, n, inputs, outputs, x.gpu(), w.gpu(), b.gpu(), &epilogue, y.gpu()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn dense_backward_input(
        &self,
        n: usize,
        inputs: usize,
        outputs: usize,
        dy: &Tensor,
        w: &Tensor,
        mask: Option<GradMask>,
        dx: &mut Tensor,
    ) {
        match self {
            Device::Cpu(d) => {
                cpu::dense::backward_input(d, n, inputs, outputs, dy.cpu(), w.cpu(), dx.cpu_mut());
                if let Some(mask) = mask {
                    mask.backward_cpu(&mut dx.cpu_mut()[..n * inputs]);
                }
            }
            Device::Gpu(d) => gpu::dense::backward_input(&d.ctx, n, inputs, outputs, dy.gpu(), w.gpu(), mask.as_ref(), dx.gpu()),
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

    /// `x = f(x)` in place on the first `len` elements.
    pub fn activation_in_place(&self, f: Activation, len: usize, x: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::activation_in_place(f, &mut x.cpu_mut()[..len]),
            Device::Gpu(d) => gpu::elementwise::activation_in_place(&d.ctx, f, len, x.gpu()),
        }
    }

    /// `y = f(x)` on the first `len` elements.
    pub fn activation(&self, f: Activation, len: usize, x: &Tensor, y: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::activation(f, &x.cpu()[..len], y.cpu_mut()),
            Device::Gpu(d) => gpu::elementwise::activation(&d.ctx, f, len, x.gpu(), y.gpu()),
        }
    }

    /// `dy *= f'` at the outputs `y`, in place on the first `len` elements (every activation
    /// whose slope follows from its output: all but GELU).
    pub fn activation_slope_at_output(&self, f: Activation, len: usize, y: &Tensor, dy: &mut Tensor) {
        assert!(f.slope_from_output(), "{f:?}'s slope needs its input");
        match self {
            Device::Cpu(_) => cpu::elementwise::slope_at_output(f, &y.cpu()[..len], &mut dy.cpu_mut()[..len]),
            Device::Gpu(d) => gpu::elementwise::slope_at_output(&d.ctx, f, len, y.gpu(), dy.gpu()),
        }
    }

    /// `dx = dy * f'` at the inputs `x`, on the first `len` elements.
    pub fn activation_slope_at_input(&self, f: Activation, len: usize, x: &Tensor, dy: &Tensor, dx: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::slope_at_input(f, &x.cpu()[..len], &dy.cpu()[..len], dx.cpu_mut()),
            Device::Gpu(d) => gpu::elementwise::slope_at_input(&d.ctx, f, len, x.gpu(), dy.gpu(), dx.gpu()),
        }
    }

    /// Inverted dropout in place; the backward calls this on the gradient with the same key.
    pub fn dropout(&self, len: usize, key: DropoutKey, rate: f32, x: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::dropout(&mut x.cpu_mut()[..len], key.mask(rate), rate),
            Device::Gpu(d) => gpu::elementwise::dropout(&d.ctx, len, key, rate, x.gpu()),
        }
    }

    /// Writes u8 pixels, four to a word, into `packed` as they are (for a [`ConvInput::U8`]).
    pub fn stage_pixels(&self, pixels: &[u8], packed: &mut Tensor<u32>) {
        assert!(pixels.len() <= packed.len() * 4, "{} pixels exceed a {}-word tensor", pixels.len(), packed.len());
        match self {
            Device::Cpu(_) => bytemuck::cast_slice_mut(packed.cpu_mut())[..pixels.len()].copy_from_slice(pixels),
            Device::Gpu(d) => d.ctx.write("pixels", packed.gpu(), pixels),
        }
    }

    /// Uploads u8 pixels into `x` as floats in [0, 1].
    pub fn upload_images_u8(&self, pixels: &[u8], x: &mut Tensor) {
        match self {
            Device::Cpu(_) => cpu::elementwise::normalize_u8(pixels, x.cpu_mut()),
            Device::Gpu(d) => gpu::elementwise::normalize_u8(&d.ctx, pixels, x.gpu()),
        }
    }

    /// Fused softmax + mean cross-entropy against labels smoothed by `label_smoothing` (0: plain
    /// one-hot targets): writes `dlogits`, and `[loss sum, correct count]` into pair `slot` of
    /// `stats` (left on the device until the caller reads it).
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_xent(
        &self,
        n: usize,
        classes: usize,
        label_smoothing: f32,
        logits: &Tensor,
        labels: &Tensor<u32>,
        dlogits: &mut Tensor,
        stats: &mut Tensor,
        slot: usize,
    ) {
        match self {
            Device::Cpu(_) => {
                let (loss, correct) =
                    cpu::softmax_xent::forward_backward(n, classes, label_smoothing, logits.cpu(), labels.cpu(), dlogits.cpu_mut());
                stats.cpu_mut()[2 * slot..2 * slot + 2].copy_from_slice(&[loss, correct as f32]);
            }
            Device::Gpu(d) => gpu::softmax_xent::forward_backward(
                &d.ctx,
                n,
                classes,
                label_smoothing,
                logits.gpu(),
                labels.gpu(),
                dlogits.gpu(),
                stats.gpu(),
                slot,
            ),
        }
    }

    /// Inference outputs in one tensor: `n * classes` probabilities, then the `n` argmax
    /// classes (as floats), so one readback brings both.
    pub fn predict(&self, n: usize, classes: usize, logits: &Tensor, outputs: &mut Tensor) {
        match self {
            Device::Cpu(_) => {
                let (probs, argmax) = outputs.cpu_mut()[..n * (classes + 1)].split_at_mut(n * classes);
                cpu::softmax_xent::softmax(n, classes, logits.cpu(), probs);
                cpu::softmax_xent::argmax_f32(n, classes, logits.cpu(), argmax);
            }
            Device::Gpu(d) => gpu::softmax_xent::predict(&d.ctx, n, classes, logits.gpu(), outputs.gpu()),
        }
    }

    /// Applies one optimizer update to `param`; `state` holds 0 (SGD), 1 (momentum) or 2 (Adam)
    /// tensors. On a GPU, `param` may be an arena spanning several parameters.
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
