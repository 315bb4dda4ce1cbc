//! `spharos`: one binary, many targets. Parses the command line and hands over to the library;
//! exit codes follow sysexits: 0 ok, 64 usage or configuration error, 69 a backend unavailable,
//! 1 anything else.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// A till rush allocates and frees small buffers on both cores at once, where glibc's malloc
/// spent a sixth of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match spharos::cli::Cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spharos: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(spharos::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spharos: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
