//! The worker program of the tests: a worker written with `roadrunner::WorkerSide`
//! that can also misbehave on request. `docs/test-worker.md` lists its modes and the
//! `!` commands it obeys in a task's context.

use roadrunner::WorkerSide;
use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("echo");
    let arg = args.get(1).map(String::as_str).unwrap_or("");
    match mode {
        "failboot" => {
            let mut stderr = std::io::stderr().lock();
            for n in 0..200 {
                let _ = writeln!(stderr, "failboot line {n} {arg}");
            }
            std::process::exit(1);
        }
        "silent" => sleep_forever(),
        "stray-stdout" => {
            println!("Hello! I print to stdout instead of answering.");
            let _ = std::io::stdout().flush();
            sleep_forever();
        }
        "badpid" => badpid(),
        "stubborn" => {
            // SAFETY: ignoring a signal has no memory effects.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        }
        "boot-sleep" => std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(0))),
        _ => {}
    }
    let mut side = WorkerSide::connect(None).unwrap_or_else(|e| die(&format!("cannot connect: {e}")));
    // Over pipes, fd 1 now goes to stderr; the commands that corrupt the stream on
    // purpose write to the relay's own descriptor.
    let relay_out = side.output_fd();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut tasks = 0u64;
    while let Some(task) = side.receive().unwrap_or_else(|e| die(&format!("receive failed: {e}"))) {
        tasks += 1;
        let context = task.context();
        let body = task.body();
        let result = if mode == "stop-always" || (mode == "stop-after-one" && tasks > 1) {
            side.request_stop()
        } else if let Some(command) = context.strip_prefix(b"!") {
            obey(&mut side, &String::from_utf8_lossy(command), body, relay_out, &mut kept)
        } else {
            side.respond(context, body)
        };
        if let Err(e) = result {
            die(&format!("answer failed: {e}"));
        }
    }
    if mode == "ignore-stop" || mode == "stubborn" {
        // Told to stop, but stays: the server must escalate to signals.
        sleep_forever();
    }
}

fn obey(
    side: &mut WorkerSide,
    command: &str,
    body: &[u8],
    relay_out: i32,
    kept: &mut Vec<Vec<u8>>,
) -> roadrunner::Result<()> {
    let (name, arg) = command.split_once(':').unwrap_or((command, ""));
    let echo_context = format!("!{command}");
    match name {
        "pid" => side.respond(b"pid", std::process::id().to_string().as_bytes()),
        "error" => side.error(body),
        "crash" => {
            eprintln!("crash requested");
            std::process::exit(3);
        }
        "stop" => side.request_stop(),
        "sleep" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(0)));
            side.respond(echo_context.as_bytes(), body)
        }
        "stdout" => {
            raw_write(relay_out, b"junk junk junk junk junk junk\n");
            sleep_forever()
        }
        "huge" => {
            raw_write(relay_out, &frame_prefix(16 | 4, 1 << 40));
            sleep_forever()
        }
        "truncate" => {
            raw_write(relay_out, &frame_prefix(16 | 4, 100));
            raw_write(relay_out, b"0123456789");
            std::process::exit(0);
        }
        "nocontrol" => {
            let mut frame = frame_prefix(4, 2).to_vec();
            frame.extend_from_slice(b"hi");
            raw_write(relay_out, &frame);
            sleep_forever()
        }
        "stderr" => {
            eprintln!("{arg}");
            side.respond(echo_context.as_bytes(), body)
        }
        "read" => side.respond(b"read", &std::fs::read(arg).unwrap_or_default()),
        "hang" => sleep_forever(),
        "deaf" => {
            // Answers, then never reads its relay again (but stays alive).
            side.respond(echo_context.as_bytes(), body)?;
            sleep_forever()
        }
        "env" => side.respond(b"env", std::env::var(arg).unwrap_or_default().as_bytes()),
        "cwd" => side.respond(b"cwd", std::env::current_dir().unwrap_or_default().to_string_lossy().as_bytes()),
        "alloc" => {
            let bytes: usize = arg.parse().unwrap_or(0);
            kept.push(vec![1u8; bytes]);
            side.respond(echo_context.as_bytes(), body)
        }
        "pipe-size" => {
            // SAFETY: fcntl on our own stdin (the relay's pipe, over pipes).
            let size = unsafe { libc::fcntl(0, libc::F_SETPIPE_SZ, arg.parse::<i32>().unwrap_or(4096)) };
            side.respond(b"pipe-size", size.to_string().as_bytes())
        }
        "exit" => {
            side.respond(echo_context.as_bytes(), body)?;
            std::process::exit(0);
        }
        _ => side.error(format!("unknown command {command:?}").as_bytes()),
    }
}

fn raw_write(fd: i32, bytes: &[u8]) {
    // SAFETY: writes from a live slice.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

fn frame_prefix(flags: u8, size: u64) -> [u8; 17] {
    let mut prefix = [0u8; 17];
    prefix[0] = flags;
    prefix[1..9].copy_from_slice(&size.to_le_bytes());
    prefix[9..17].copy_from_slice(&size.to_be_bytes());
    prefix
}

/// Answers the handshake with pid 1, over stdin/stdout.
fn badpid() -> ! {
    let mut prefix = [0u8; 17];
    let mut stdin = std::io::stdin().lock();
    let _ = std::io::Read::read_exact(&mut stdin, &mut prefix);
    let size = u64::from_le_bytes(prefix[1..9].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; size];
    let _ = std::io::Read::read_exact(&mut stdin, &mut payload);
    let answer = br#"{"pid":1}"#;
    let mut out = frame_prefix(16, answer.len() as u64).to_vec();
    out.extend_from_slice(answer);
    let _ = std::io::stdout().write_all(&out);
    let _ = std::io::stdout().flush();
    sleep_forever()
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn die(message: &str) -> ! {
    eprintln!("rr-test-worker: {message}");
    std::process::exit(2);
}
