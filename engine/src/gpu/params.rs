//! Kernel parameters: one `#[repr(C)]` struct per WGSL uniform struct, field for field. A test
//! reads each WGSL struct from naga's IR of the compiled module and checks names, order and
//! offsets against these, so a parameter can never be matched by position by mistake.

use crate::backend::Epilogue;

/// A uniform struct of a shader file.
#[cfg_attr(not(test), allow(dead_code, reason = "the names are read by the test that checks them against the WGSL"))]
pub(crate) trait KernelParams: bytemuck::Pod {
    /// The shader file and the WGSL struct's name.
    const WGSL: (&'static str, &'static str);
    /// Field names and types, in memory order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

macro_rules! kernel_params {
    ($(#[$doc:meta])* $name:ident in $file:literal { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $(pub(crate) $field: $ty),*
        }
        impl KernelParams for $name {
            const WGSL: (&'static str, &'static str) = ($file, stringify!($name));
            const FIELDS: &'static [(&'static str, &'static str)] = &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}

kernel_params! {
    /// The tiled product (gemm_tile.wgsl, prepended to dense.wgsl and conv2d.wgsl).
    Gemm in "dense.wgsl" {
        m: u32, n: u32, k: u32, k_chunk: u32, splits: u32, tiles_n: u32, tiles: u32, has_bias: u32, ones_row: u32,
        a_order: u32, b_order: u32, a_vec4: u32, b_vec4: u32,
        a_rs: u32, a_cs: u32, b_rs: u32, b_cs: u32,
        in_h: u32, in_w: u32, in_c: u32, out_h: u32, out_w: u32, out_c: u32,
        kernel_h: u32, kernel_w: u32, stride_h: u32, stride_w: u32, pad_top: u32, pad_left: u32, input_u8: u32,
        act: u32, act_alpha: f32, act_slope: u32, dropout: u32, drop_base: u32, drop_threshold: u32, drop_scale: f32,
    }
}

kernel_params! {
    Pool in "pool.wgsl" {
        count: u32, in_h: u32, in_w: u32, channels: u32, out_h: u32, out_w: u32,
        size_h: u32, size_w: u32, stride_h: u32, stride_w: u32,
        act: u32, act_alpha: f32, dropout: u32, drop_base: u32, drop_threshold: u32, drop_scale: f32,
    }
}

kernel_params! {
    Elementwise in "elementwise.wgsl" { len: u32, mask_base: u32, threshold: u32, scale: f32, act: u32, act_alpha: f32 }
}

kernel_params! {
    Norm in "batchnorm.wgsl" {
        rows: u32, channels: u32, momentum: f32, epsilon: f32, training: u32,
        act: u32, act_alpha: f32, dropout: u32, drop_base: u32, drop_threshold: u32, drop_scale: f32,
    }
}

kernel_params! {
    Rows in "softmax_xent.wgsl" { n: u32, classes: u32, stats_slot: u32, label_smoothing: f32 }
}

kernel_params! {
    Update in "optim.wgsl" {
        len: u32, variant: u32, lr: f32, weight_decay: f32, beta1: f32, beta2: f32, epsilon: f32, bias1: f32, bias2: f32,
    }
}

/// An epilogue's dropout fields: (on, per-key hash, threshold, scale).
pub(crate) fn dropout_fields(epilogue: &Epilogue) -> (u32, u32, u32, f32) {
    match epilogue.dropout {
        Some(d) => {
            let mask = d.key.mask(d.rate);
            (1, mask.base(), mask.threshold(), 1.0 / (1.0 - d.rate))
        }
        None => (0, 0, 0, 0.0),
    }
}

/// A dimension as a kernel takes it.
pub(crate) fn u(v: usize) -> u32 {
    u32::try_from(v).expect("GPU tensor dimensions fit in u32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::inspect::uniform_struct;

    fn check<P: KernelParams>() {
        let (file, name) = P::WGSL;
        let members = uniform_struct(file, name).unwrap_or_else(|| panic!("shaders/{file} has no struct {name}"));
        let wgsl: Vec<(&str, &str)> = members.iter().map(|m| (m.name.as_str(), m.scalar)).collect();
        assert_eq!(wgsl, P::FIELDS, "shaders/{file} struct {name}: fields or types differ from the Rust struct");
        for (i, m) in members.iter().enumerate() {
            assert_eq!((m.offset as usize, m.size), (i * 4, 4), "shaders/{file} {name}.{}: offset and size", m.name);
        }
        assert_eq!(size_of::<P>(), members.len() * 4, "{name}: size");
    }

    #[test]
    fn parameter_structs_match_the_wgsl() {
        check::<Gemm>();
        check::<Pool>();
        check::<Elementwise>();
        check::<Norm>();
        check::<Rows>();
        check::<Update>();
    }
}
