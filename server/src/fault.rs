//! Panic containment. Loading, warming, polling and every batch run inside [`contain`]: a panic
//! there becomes an error naming its cause and location, which the caller logs once (with the
//! model and version) and reports; the thread carries on. Panics anywhere else keep Rust's
//! default report.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn message(payload: &(dyn Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".into(),
    }
}

/// Inside [`contain`] a panic is recorded, not printed: the caller logs it once, in context.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if DEPTH.with(Cell::get) == 0 {
                return default(info);
            }
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{}{at}", message(info.payload()))));
        }));
    });
}

/// Runs `f`; a panic in it becomes `Err("panic: <message> at <file>:<line>")`.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    DEPTH.with(|d| d.set(d.get() + 1));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    outcome.map_err(|payload| {
        let recorded = LAST_PANIC.with(|last| last.borrow_mut().take());
        format!("panic: {}", recorded.unwrap_or_else(|| message(payload.as_ref())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message_and_location() {
        let err = contain(|| -> u32 { panic!("stride {} is zero", 0) }).unwrap_err();
        assert!(err.starts_with("panic: stride 0 is zero at ") && err.contains("fault.rs"), "{err}");
        assert_eq!(contain(|| 7), Ok(7));
        let nested = contain(|| contain(|| panic!("inner")).unwrap_err()).unwrap();
        assert!(nested.contains("inner"), "{nested}");
    }
}
