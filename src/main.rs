//! Entry point of the `xcapd` binary; all logic lives in the library (`xcapd::cli`).

fn main() -> std::process::ExitCode {
    xcapd::cli::main()
}
