//! A plain `wasi:cli/command` program for the tests: prints what it was
//! given (stdin, arguments, environment) and exits with the code named by
//! its first argument.

use std::io::{Read, Write};

fn main() {
    let mut stdin = String::new();
    std::io::stdin()
        .read_to_string(&mut stdin)
        .expect("read stdin");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    println!("stdin={stdin}");
    println!("args={}", args.join(" "));
    println!("env={}", env.join(","));
    eprintln!("to stderr");
    std::io::stdout().flush().expect("flush");
    let code = args
        .first()
        .and_then(|a| a.parse::<i32>().ok())
        .unwrap_or(0);
    std::process::exit(code);
}
