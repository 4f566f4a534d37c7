//! What the compiled shaders do inside their loops, read from naga's IR of the very modules the
//! device builds (not typed in by hand): integer divisions and modulos (a real division by a
//! value known only at run time costs tens of cycles on a GPU; one by a constant is a shift or
//! a multiply), and the tiled products' register blocking from their own constants. The GPU
//! report prints these and the tests hold them at their targets.
//!
//! In a tiled product the hot loop is the K loop, the one that synchronises the workgroup each
//! K tile (a loop containing a barrier); the loops before it (each thread's load plan) and
//! after it (the epilogue) run once. So in an entry point with such a loop, only the
//! arithmetic inside it counts; elsewhere every loop does.

use naga::valid::{Capabilities, FunctionInfo, ModuleInfo, ValidationFlags, Validator};
use naga::{BinaryOperator, Block, Expression, Function, Handle, ScalarKind, Statement};

use super::kernels::{Module, shader_modules};

/// Integer divisions and modulos inside the hot loops of one entry point (its callees included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoopArithmetic {
    pub file: &'static str,
    /// The tile variant a tiled product was compiled for (`128x64`), else empty.
    pub variant: String,
    pub entry_point: String,
    /// By a value known only at run time: real division instructions.
    pub variable_div_mod: usize,
    /// By a constant: shifts or multiplications once compiled.
    pub constant_div_mod: usize,
}

struct Counts {
    variable: usize,
    constant: usize,
}

fn is_integer(module: &naga::Module, info: &FunctionInfo, expr: Handle<Expression>) -> bool {
    info[expr].ty.inner_with(&module.types).scalar_kind().is_some_and(|k| matches!(k, ScalarKind::Uint | ScalarKind::Sint))
}

/// Whether `block` (or a function it calls) synchronises the workgroup.
fn has_barrier(module: &naga::Module, block: &Block) -> bool {
    block.iter().any(|statement| match statement {
        Statement::ControlBarrier(_) | Statement::MemoryBarrier(_) => true,
        Statement::Block(b) => has_barrier(module, b),
        Statement::If { accept, reject, .. } => has_barrier(module, accept) || has_barrier(module, reject),
        Statement::Switch { cases, .. } => cases.iter().any(|c| has_barrier(module, &c.body)),
        Statement::Loop { body, continuing, .. } => has_barrier(module, body) || has_barrier(module, continuing),
        Statement::Call { function, .. } => has_barrier(module, &module.functions[*function].body),
        _ => false,
    })
}

/// Whether `block` holds a loop that synchronises the workgroup (a tiled product's K loop).
fn has_barrier_loop(module: &naga::Module, block: &Block) -> bool {
    block.iter().any(|statement| match statement {
        Statement::Loop { body, continuing, .. } => {
            has_barrier(module, body) || has_barrier(module, continuing) || has_barrier_loop(module, body)
        }
        Statement::Block(b) => has_barrier_loop(module, b),
        Statement::If { accept, reject, .. } => has_barrier_loop(module, accept) || has_barrier_loop(module, reject),
        Statement::Switch { cases, .. } => cases.iter().any(|c| has_barrier_loop(module, &c.body)),
        Statement::Call { function, .. } => has_barrier_loop(module, &module.functions[*function].body),
        _ => false,
    })
}

/// Which loops count: every loop, or only those that synchronise the workgroup.
#[derive(Clone, Copy)]
enum HotLoops {
    All,
    WithBarrier,
}

/// Counts the integer divisions and modulos of `block` (of `f`, typed by `info`) that run inside
/// a hot loop: `in_loop` says whether the block itself does. A function called inside a loop
/// runs all of its body there.
#[allow(clippy::too_many_arguments)]
fn walk(
    module: &naga::Module,
    all: &ModuleInfo,
    f: &Function,
    info: &FunctionInfo,
    block: &Block,
    in_loop: bool,
    hot: HotLoops,
    counts: &mut Counts,
) {
    for statement in block.iter() {
        match statement {
            Statement::Emit(range) if in_loop => {
                for expr in range.clone() {
                    if let Expression::Binary { op: BinaryOperator::Divide | BinaryOperator::Modulo, right, .. } = f.expressions[expr]
                        && is_integer(module, info, expr)
                    {
                        match f.expressions[right] {
                            Expression::Literal(_) | Expression::Constant(_) | Expression::ZeroValue(_) => counts.constant += 1,
                            _ => counts.variable += 1,
                        }
                    }
                }
            }
            Statement::Block(b) => walk(module, all, f, info, b, in_loop, hot, counts),
            Statement::If { accept, reject, .. } => {
                walk(module, all, f, info, accept, in_loop, hot, counts);
                walk(module, all, f, info, reject, in_loop, hot, counts);
            }
            Statement::Switch { cases, .. } => cases.iter().for_each(|c| walk(module, all, f, info, &c.body, in_loop, hot, counts)),
            Statement::Loop { body, continuing, .. } => {
                let hot_here = in_loop
                    || match hot {
                        HotLoops::All => true,
                        HotLoops::WithBarrier => has_barrier(module, body) || has_barrier(module, continuing),
                    };
                walk(module, all, f, info, body, hot_here, hot, counts);
                walk(module, all, f, info, continuing, hot_here, hot, counts);
            }
            Statement::Call { function, .. } => {
                let callee = &module.functions[*function];
                walk(module, all, callee, &all[*function], &callee.body, in_loop, hot, counts);
            }
            _ => {}
        }
    }
}

fn parse(file: &str, source: &str) -> (naga::Module, ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("shaders/{file}: {}", e.emit_to_string(source)));
    let info =
        Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module).unwrap_or_else(|e| panic!("shaders/{file}: {e:?}"));
    (module, info)
}

/// Integer division and modulo counts inside the hot loops of every entry point of every
/// shader, as the device compiles them (each tile variant of the tiled products).
pub fn loop_arithmetic() -> Vec<LoopArithmetic> {
    let mut out = Vec::new();
    for (m, source) in shader_modules() {
        let (module, info) = parse(&m.describe(), &source);
        for (index, ep) in module.entry_points.iter().enumerate() {
            let mut counts = Counts { variable: 0, constant: 0 };
            let hot = if has_barrier_loop(&module, &ep.function.body) { HotLoops::WithBarrier } else { HotLoops::All };
            walk(&module, &info, &ep.function, info.get_entry_point(index), &ep.function.body, false, hot, &mut counts);
            out.push(LoopArithmetic {
                file: m.file(),
                variant: m.tile().map(|t| t.name()).unwrap_or_default(),
                entry_point: ep.name.clone(),
                variable_div_mod: counts.variable,
                constant_div_mod: counts.constant,
            });
        }
    }
    out
}

/// The first module compiled from shader file `file` (for a tiled product, its first variant).
fn first_module(file: &str) -> Option<(Module, String)> {
    shader_modules().into_iter().find(|(m, _)| m.file() == file)
}

/// A `u32` constant of a compiled module by name.
pub(crate) fn module_constant(m: Module, name: &str) -> Option<u32> {
    let source = m.source();
    let (module, _) = parse(&m.describe(), &source);
    constant_value(&module, name)
}

fn constant_value(module: &naga::Module, name: &str) -> Option<u32> {
    let (_, constant) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name))?;
    match module.global_expressions[constant.init] {
        Expression::Literal(naga::Literal::U32(v)) => Some(v),
        Expression::Literal(naga::Literal::AbstractInt(v)) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// A member of a WGSL struct: name, byte offset, size, and scalar type as Rust spells it.
#[derive(Clone, Debug)]
pub struct StructMember {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub scalar: &'static str,
}

/// The members of struct `name` in shader file `file`, as naga lays it out.
pub fn uniform_struct(file: &str, name: &str) -> Option<Vec<StructMember>> {
    let (_, source) = first_module(file)?;
    let (module, _) = parse(file, &source);
    let (_, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some(name))?;
    let naga::TypeInner::Struct { members, .. } = &ty.inner else { return None };
    let scalar = |ty: Handle<naga::Type>| match module.types[ty].inner {
        naga::TypeInner::Scalar(s) => match (s.kind, s.width) {
            (ScalarKind::Uint, 4) => "u32",
            (ScalarKind::Sint, 4) => "i32",
            (ScalarKind::Float, 4) => "f32",
            _ => "other",
        },
        _ => "not a scalar",
    };
    Some(
        members
            .iter()
            .map(|m| StructMember {
                name: m.name.clone().unwrap_or_default(),
                offset: m.offset,
                size: module.types[m.ty].inner.size(module.to_ctx()),
                scalar: scalar(m.ty),
            })
            .collect(),
    )
}
