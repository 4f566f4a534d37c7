//! Dispatcher for shaders/conv2d.wgsl: each pass is one implicit matrix product. Every pass
//! reads its taps from a table built here once per geometry, so no K loop divides by a
//! run-time value. The input may be u8 pixels (`input_u8`), scaled as the kernel reads them.

use wgpu::util::DeviceExt;

use super::buffers::BufRef;
use super::context::GpuContext;
use super::gemm::{Finish, Gemm, Operands};
use super::kernels::Kernel;
use crate::backend::{Conv2dGeometry, Epilogue, GradMask};

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    n: usize,
    (x, input_u8): (BufRef, bool),
    w: BufRef,
    b: BufRef,
    epilogue: &Epilogue,
    y: BufRef,
) {
    Gemm {
        kernel: Kernel::ConvForward,
        m: n * g.positions(),
        n: g.out_c,
        k: g.patch_len(),
        operands: Operands::Conv { geometry: g, input_u8 },
        a: x,
        b: w,
        bias: Some(b),
        out: y,
        ones_out: None,
        finish: Finish::Activation(epilogue),
        taps: Some(BufRef::whole(&tap_table(ctx, Kernel::ConvForward, g))),
    }
    .run(ctx);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_input(ctx: &GpuContext, g: &Conv2dGeometry, n: usize, dy: BufRef, w: BufRef, mask: Option<&GradMask>, dx: BufRef) {
    Gemm {
        kernel: Kernel::ConvBackwardInput,
        m: n * g.in_h * g.in_w,
        n: g.in_c,
        k: g.kernel_h * g.kernel_w * g.out_c,
        operands: Operands::Conv { geometry: g, input_u8: false },
        a: dy,
        b: w,
        bias: None,
        out: dx,
        ones_out: None,
        finish: mask.map_or(Finish::Plain, Finish::Gradient),
        taps: Some(BufRef::whole(&tap_table(ctx, Kernel::ConvBackwardInput, g))),
    }
    .run(ctx);
}

/// Writes the weight gradient into `dw` and the bias gradient into `db`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_weight(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    n: usize,
    (x, input_u8): (BufRef, bool),
    dy: BufRef,
    dw: BufRef,
    db: BufRef,
) {
    Gemm {
        kernel: Kernel::ConvBackwardWeight,
        m: g.patch_len(),
        n: g.out_c,
        k: n * g.positions(),
        operands: Operands::Conv { geometry: g, input_u8 },
        a: x,
        b: dy,
        bias: None,
        out: dw,
        ones_out: Some(db),
        finish: Finish::Plain,
        // Its rows are the forward's reduction indices.
        taps: Some(BufRef::whole(&tap_table(ctx, Kernel::ConvForward, g))),
    }
    .run(ctx);
}

/// Words per entry of a tap table (two vec4s).
const TAP_WORDS: usize = 8;

/// The table shaders/conv2d.wgsl reads for `kernel` on `g`: per forward reduction index
/// (ky, kx, ic) (also the backward weight's rows), `[ky, kx, ic]`; per backward-input
/// reduction index (ky, kx, oc), ky and kx as quotient and remainder by the stride, oc and the
/// tap. Built once per geometry and kept.
fn tap_table(ctx: &GpuContext, kernel: Kernel, g: &Conv2dGeometry) -> wgpu::Buffer {
    let mut tables = ctx.buffers.tap_tables.lock().unwrap_or_else(|e| e.into_inner());
    let table = tables.entry((kernel, *g)).or_insert_with(|| {
        let u = |v: usize| u32::try_from(v).expect("convolution dimensions fit in u32");
        let words: Vec<u32> = match kernel {
            Kernel::ConvForward => (0..g.patch_len())
                .flat_map(|k| {
                    let (tap, ic) = (k / g.in_c, k % g.in_c);
                    [u(tap / g.kernel_w), u(tap % g.kernel_w), u(ic), 0, 0, 0, 0, 0]
                })
                .collect(),
            _ => (0..g.kernel_h * g.kernel_w * g.out_c)
                .flat_map(|k| {
                    let (tap, oc) = (k / g.out_c, k % g.out_c);
                    let (ky, kx) = (tap / g.kernel_w, tap % g.kernel_w);
                    [u(ky / g.stride_h), u(ky % g.stride_h), u(kx / g.stride_w), u(kx % g.stride_w), u(oc), u(tap), 0, 0]
                })
                .collect(),
        };
        debug_assert_eq!(words.len() % TAP_WORDS, 0);
        let buffer = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("conv taps"),
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::STORAGE,
        });
        (buffer, words)
    });
    table.0.clone()
}
