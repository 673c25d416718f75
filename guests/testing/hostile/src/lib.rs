//! A task guest for the sandbox tests. Its input `{"action": ...}` picks a
//! misbehaviour: escaping its mounts, writing a read-only mount, opening
//! sockets, spinning forever, allocating or printing without bound, recursing
//! without end, or blocking until the test opens a gate (a file it creates);
//! or it reports what it reads of time and randomness (`entropy`).
//! Before looping, sleeping or blocking it prints `running`, the tests'
//! signal that it started. Attempts the sandbox refuses are reported as
//! `denied` with what the guest saw; an attempt that succeeds is reported as
//! success with `ESCAPED`, which the tests treat as a sandbox failure.

use serde_json::{Value, json};
use std::io::Write;

wit_bindgen::generate!({ path: "../../../wit/task", world: "task" });

struct Hostile;

impl Guest for Hostile {
    fn run(input: String) -> Result<String, TaskError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| TaskError::InvalidInput(e.to_string()))?;
        let action = input["action"].as_str().unwrap_or("echo");
        let n = |key: &str, default: u64| input[key].as_u64().unwrap_or(default);
        match action {
            "echo" => Ok(input.to_string()),
            "reveal" => {
                // Shows the variable `var` every way a careless guest might.
                let value = std::env::var(input["var"].as_str().unwrap_or("")).unwrap_or_default();
                println!("plain {value}");
                eprintln!("json {}", json!({"v": value}));
                eprintln!("base64 {}", base64(format!("k={value}").as_bytes()));
                Ok(json!({"value": value}).to_string())
            }
            "deep" => {
                let depth = n("depth", 1) as usize;
                Ok("[".repeat(depth) + &"]".repeat(depth))
            }
            "env" => Ok(json!({
                "env": std::env::vars().collect::<Vec<_>>(),
                "args": std::env::args().collect::<Vec<_>>(),
                "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
            })
            .to_string()),
            "loop" => {
                running();
                loop {
                    std::hint::black_box(0u64);
                }
            }
            "spin" => {
                let until =
                    std::time::Instant::now() + std::time::Duration::from_millis(n("ms", 1000));
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                Ok(json!({"spun": x > 0}).to_string())
            }
            "sleep" => {
                running();
                std::thread::sleep(std::time::Duration::from_millis(n("ms", 60_000)));
                Ok("{}".into())
            }
            "block" => {
                running();
                let gate = input["until"].as_str().unwrap_or("");
                while std::fs::metadata(gate).is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                if let Some(after) = input["then_print"].as_str() {
                    println!("{after}");
                }
                Ok(json!({"released": gate}).to_string())
            }
            "alloc" => {
                let mut blocks = Vec::new();
                for _ in 0..n("mb", 1024) {
                    blocks.push(vec![1u8; 1 << 20]);
                }
                Ok(json!({"allocated_mb": blocks.len()}).to_string())
            }
            "stdout" => {
                let chunk = vec![b'x'; 1 << 20];
                let mut out = std::io::stdout();
                for _ in 0..n("mb", 100) {
                    out.write_all(&chunk)
                        .map_err(|e| TaskError::Failed(format!("stdout: {e}")))?;
                }
                Ok("{}".into())
            }
            "print" => {
                println!("{}", input["stdout"].as_str().unwrap_or(""));
                eprintln!("{}", input["stderr"].as_str().unwrap_or(""));
                Ok(json!({"printed": true}).to_string())
            }
            "recurse" => Ok(json!({"depth": recurse(n("depth", u64::MAX))}).to_string()),
            "trap" => panic!("guest panicked on purpose"),
            "fail" => Err(TaskError::Failed(
                input["message"].as_str().unwrap_or("failed").into(),
            )),
            "read" => {
                let path = input["path"].as_str().unwrap_or("");
                std::fs::read_to_string(path)
                    .map(|text| json!({"text": text}).to_string())
                    .map_err(|e| TaskError::Denied(format!("{path}: {e}")))
            }
            "escape" => escape(input["paths"].as_array().cloned().unwrap_or_default()),
            "write" => {
                let path = input["path"].as_str().unwrap_or("");
                match std::fs::write(path, "written") {
                    Ok(()) => Ok(format!("\"ESCAPED: wrote {path}\"")),
                    Err(e) => Err(TaskError::Denied(format!("{path}: {e}"))),
                }
            }
            "plant" => Ok(json!({"longest_run": plant(n("kb", 2048) as usize)}).to_string()),
            "scan" => Ok(json!({"longest_run": longest_planted_run()}).to_string()),
            "entropy" => Ok(entropy().to_string()),
            "tcp" => tcp(input["addr"].as_str().unwrap_or("1.1.1.1:80")),
            "dns" => dns(input["name"].as_str().unwrap_or("example.com")),
            other => Err(TaskError::InvalidInput(format!("unknown action {other}"))),
        }
    }
}

export!(Hostile);

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Tells whoever watches stdout that the guest is running (the tests'
/// signal to cancel or release it).
fn running() {
    println!("running");
    let _ = std::io::stdout().flush();
}

/// The byte `plant` leaves behind and `scan` looks for.
const PLANTED: u8 = 0xA5;

/// A static the module's data image covers.
static mut STATIC_PAGE: [u8; 4096] = [0; 4096];

/// Writes `PLANTED` into the stack, a static and `kb` KiB of heap (left
/// allocated), then returns the longest run of it in memory: what a later
/// task in the same memory slot must never see.
fn plant(kb: usize) -> usize {
    let mut stack = [0u8; 16 << 10];
    stack.fill(PLANTED);
    std::hint::black_box(&mut stack);
    // SAFETY: the guest is single-threaded; nothing else touches the static.
    unsafe { (*std::ptr::addr_of_mut!(STATIC_PAGE)).fill(PLANTED) };
    std::mem::forget(std::hint::black_box(vec![PLANTED; kb << 10]));
    longest_planted_run()
}

/// The longest run of `PLANTED` bytes anywhere in linear memory.
fn longest_planted_run() -> usize {
    let end = memory_end();
    let (mut longest, mut run) = (0, 0);
    for addr in 1..end {
        // SAFETY: every address below memory_size is in bounds of linear
        // memory; reading one as a byte has no other requirement in wasm.
        let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
        run = if byte == PLANTED { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// The end of linear memory.
#[cfg(target_arch = "wasm32")]
fn memory_end() -> usize {
    core::arch::wasm32::memory_size(0) * 65536
}

/// Native builds (the workspace's unit tests) have no linear memory to scan.
#[cfg(not(target_arch = "wasm32"))]
fn memory_end() -> usize {
    panic!("only a wasm guest can scan its linear memory")
}

/// Recursion that keeps everything in wasm locals, so it exhausts the
/// engine's native stack rather than the guest's shadow stack in memory.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    1 + recurse(std::hint::black_box(depth - 1))
}

/// Tries to read every path; any success is an escape.
fn escape(paths: Vec<Value>) -> Result<String, TaskError> {
    let mut refusals = Vec::new();
    for path in paths.iter().filter_map(Value::as_str) {
        match std::fs::read(path) {
            Ok(bytes) => {
                return Ok(format!(
                    "\"ESCAPED: read {} bytes from {path}\"",
                    bytes.len()
                ));
            }
            Err(e) => refusals.push(format!("{path}: {e}")),
        }
    }
    Err(TaskError::Denied(refusals.join("; ")))
}

fn tcp(addr: &str) -> Result<String, TaskError> {
    use wasip2::sockets::{instance_network, network, tcp_create_socket};
    let addr: std::net::SocketAddrV4 = addr
        .parse()
        .map_err(|_| TaskError::InvalidInput(format!("bad addr {addr}")))?;
    let socket = tcp_create_socket::create_tcp_socket(network::IpAddressFamily::Ipv4)
        .map_err(|e| TaskError::Denied(format!("tcp socket: {e:?}")))?;
    let o = addr.ip().octets();
    let remote = network::IpSocketAddress::Ipv4(network::Ipv4SocketAddress {
        port: addr.port(),
        address: (o[0], o[1], o[2], o[3]),
    });
    let net = instance_network::instance_network();
    socket
        .start_connect(&net, remote)
        .map_err(|e| TaskError::Denied(format!("tcp connect {addr}: {e:?}")))?;
    socket.subscribe().block();
    match socket.finish_connect() {
        Ok(_) => Ok(format!("\"ESCAPED: connected to {addr}\"")),
        Err(e) => Err(TaskError::Denied(format!("tcp connect {addr}: {e:?}"))),
    }
}

fn dns(name: &str) -> Result<String, TaskError> {
    use wasip2::sockets::{instance_network, ip_name_lookup};
    let net = instance_network::instance_network();
    let stream = ip_name_lookup::resolve_addresses(&net, name)
        .map_err(|e| TaskError::Denied(format!("dns {name}: {e:?}")))?;
    loop {
        match stream.resolve_next_address() {
            Ok(Some(addr)) => return Ok(format!("\"ESCAPED: {name} resolved to {addr:?}\"")),
            Ok(None) => return Err(TaskError::Denied(format!("dns {name}: no addresses"))),
            Err(network::ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(TaskError::Denied(format!("dns {name}: {e:?}"))),
        }
    }
}

use wasip2::sockets::network;

/// What the guest reads of time and randomness: the wall clock, time
/// measured across some work, and a hash seeded from the random source.
fn entropy() -> Value {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let started = std::time::Instant::now();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(b"seeded");
    json!({"now_ns": now, "elapsed_ns": started.elapsed().as_nanos() as u64, "random": hasher.finish()})
}
