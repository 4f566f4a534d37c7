//! Heap settings for a process that loads and unloads model versions for months.
//!
//! glibc's malloc raises its mmap threshold each time a large mmapped block is freed (up to
//! 32 MiB), after which version-sized blocks (weights, inference workspaces) come from its arenas,
//! which give little back to the system: each load/unload cycle then leaves the resident set a
//! little larger. A fixed threshold keeps every large block mmapped, so an unloaded version's
//! memory goes back to the system when its last request finishes.

/// Blocks from this size up are mmapped and returned to the system when freed.
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;
/// Free memory at the top of an arena beyond this is returned to the system.
const TRIM_THRESHOLD_BYTES: i32 = 1024 * 1024;

/// Applies the settings above (glibc only; elsewhere the allocator's defaults stay).
pub fn return_freed_memory_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before the server's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
