//! `wasmnode-deadline SECONDS -- PROGRAM [ARGS...]`: runs PROGRAM and, if it
//! still runs after SECONDS, exits with status 124, which ends the container
//! (its init stops with this process, and every process in the container goes
//! with it). The node enforces a container job's wall-clock limit itself, a
//! little earlier; this holds the limit when the node is gone.

use std::process::{Command, ExitStatus, exit};
use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: wasmnode-deadline SECONDS -- PROGRAM [ARGS...]");
    exit(125)
}

fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (seconds, program) = match args.as_slice() {
        [seconds, dashes, program @ ..] if dashes == "--" && !program.is_empty() => {
            (seconds, program)
        }
        _ => usage(),
    };
    let limit = match seconds.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        _ => usage(),
    };
    let mut child = match Command::new(&program[0]).args(&program[1..]).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("wasmnode-deadline: cannot start {}: {e}", program[0]);
            exit(127)
        }
    };
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("wasmnode-deadline: the job's wall-clock limit passed; stopping it");
        exit(124)
    });
    match child.wait() {
        Ok(status) => exit(code(status)),
        Err(_) => exit(125),
    }
}
