//! Entry point of the `xcapd` binary; all logic lives in the library (`xcapd::cli`).

/// mimalloc: glibc malloc's fastbin consolidation cost ~12% of the CPU of a durable document
/// PUT (BENCHMARKS.md). libxml2's allocations go to it too (`xsd::loader::init_process`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    xcapd::cli::main()
}

/// mimalloc advises transparent huge pages for its arenas: every thread's first small
/// allocation then faults in 2 MiB, which took a fresh server from 16 to 58 MB RSS. Opting the
/// process out keeps 4 KiB pages (RSS back to 17 MB), at no measured throughput cost.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) only changes this process's paging policy.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
