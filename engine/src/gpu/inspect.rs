//! What the compiled shaders do inside their loops, read from naga's IR of the very modules the
//! device builds (not typed in by hand): integer divisions and modulos (a real division by a
//! value known only at run time costs tens of cycles on a GPU; one by a constant is a shift or
//! a multiply), and the GEMM kernels' register blocking from their own constants. The GPU
//! report prints these and the tests hold them at their targets.

use naga::valid::{Capabilities, FunctionInfo, ModuleInfo, ValidationFlags, Validator};
use naga::{BinaryOperator, Block, Expression, Function, Handle, Module, ScalarKind, Statement};

use super::kernels::shader_modules;

/// Integer divisions and modulos inside the loops of one entry point (its callees included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoopArithmetic {
    pub file: &'static str,
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

fn is_integer(module: &Module, info: &FunctionInfo, expr: Handle<Expression>) -> bool {
    info[expr].ty.inner_with(&module.types).scalar_kind().is_some_and(|k| matches!(k, ScalarKind::Uint | ScalarKind::Sint))
}

/// Counts the integer divisions and modulos of `block` (of `f`, typed by `info`) that run inside
/// a loop: `in_loop` says whether the block itself does. A function called inside a loop runs
/// all of its body there.
fn walk(module: &Module, all: &ModuleInfo, f: &Function, info: &FunctionInfo, block: &Block, in_loop: bool, counts: &mut Counts) {
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
            Statement::Block(b) => walk(module, all, f, info, b, in_loop, counts),
            Statement::If { accept, reject, .. } => {
                walk(module, all, f, info, accept, in_loop, counts);
                walk(module, all, f, info, reject, in_loop, counts);
            }
            Statement::Switch { cases, .. } => cases.iter().for_each(|c| walk(module, all, f, info, &c.body, in_loop, counts)),
            Statement::Loop { body, continuing, .. } => {
                walk(module, all, f, info, body, true, counts);
                walk(module, all, f, info, continuing, true, counts);
            }
            Statement::Call { function, .. } => {
                let callee = &module.functions[*function];
                walk(module, all, callee, &all[*function], &callee.body, in_loop, counts);
            }
            _ => {}
        }
    }
}

fn parse(file: &str, source: &str) -> (Module, ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("shaders/{file}: {}", e.emit_to_string(source)));
    let info =
        Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module).unwrap_or_else(|e| panic!("shaders/{file}: {e:?}"));
    (module, info)
}

/// Integer division and modulo counts inside the loops of every entry point of every shader,
/// as the device compiles them.
pub fn loop_arithmetic() -> Vec<LoopArithmetic> {
    let mut out = Vec::new();
    for (file, source) in shader_modules() {
        let (module, info) = parse(file, &source);
        for (index, ep) in module.entry_points.iter().enumerate() {
            let mut counts = Counts { variable: 0, constant: 0 };
            walk(&module, &info, &ep.function, info.get_entry_point(index), &ep.function.body, false, &mut counts);
            out.push(LoopArithmetic {
                file,
                entry_point: ep.name.clone(),
                variable_div_mod: counts.variable,
                constant_div_mod: counts.constant,
            });
        }
    }
    out
}

/// A `u32` constant of a shader module by name (the tiled product's blocking, for instance).
pub fn shader_constant(file: &str, name: &str) -> Option<u32> {
    let (_, source) = shader_modules().into_iter().find(|(f, _)| *f == file)?;
    let (module, _) = parse(file, &source);
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
    let (_, source) = shader_modules().into_iter().find(|(f, _)| *f == file)?;
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
