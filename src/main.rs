//! Entry point of the `xcapd` binary; all logic lives in the library (`xcapd::cli`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    xcapd::cli::main()
}
