//! `drover`: the command-line client of droverd, shaped like LXD's `lxc` (noun, verb).

mod cmd;
mod progress;
mod render;
mod terminal;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    // Exit without waiting for a stdin reader thread that may still be blocked in read().
    std::process::exit(code);
}
