//! The worker program of the tests: a worker written with `roadrunner::WorkerSide`
//! that can also misbehave on request. `docs/test-worker.md` lists its modes and the
//! `!` commands it obeys in a task's context.

use roadrunner::{ErrorKind, Protocol, WorkerSide};
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

/// The protocol this worker speaks: V2 when `RR_TEST_PROTOCOL=2`, else V1.
static PROTOCOL: OnceLock<Protocol> = OnceLock::new();

fn protocol() -> Protocol {
    *PROTOCOL.get_or_init(|| {
        let number = std::env::var("RR_TEST_PROTOCOL").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
        Protocol::from_number(number).unwrap_or_else(|| die(&format!("RR_TEST_PROTOCOL={number} is not 1 or 2")))
    })
}

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
        "failboot-if" if std::path::Path::new(arg).exists() => {
            eprintln!("failboot-if: {arg} exists");
            std::process::exit(1);
        }
        _ => {}
    }
    let mut side =
        WorkerSide::connect_with_protocol(None, protocol()).unwrap_or_else(|e| die(&format!("cannot connect: {e}")));
    // Over pipes, fd 1 now goes to stderr; the commands that corrupt the stream on
    // purpose write to the relay's own descriptor.
    let relay_out = side.output_fd();
    let relay_in = side.input_fd();
    let task_log = std::env::var_os("RR_TEST_TASK_LOG").map(|path| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap_or_else(|e| die(&format!("task log: {e}")))
    });
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut tasks = 0u64;
    while let Some(task) = side.receive().unwrap_or_else(|e| die(&format!("receive failed: {e}"))) {
        tasks += 1;
        let context = task.context();
        let body = task.body();
        let asks_to_stop = mode == "stop-always" || (mode == "stop-after-one" && tasks > 1) || context == b"!stop";
        if let (Some(mut log), false) = (task_log.as_ref(), asks_to_stop) {
            // One write per line, appended: lines of several workers never mix.
            let mut line = body.to_vec();
            line.push(b'\n');
            log.write_all(&line).unwrap_or_else(|e| die(&format!("task log: {e}")));
        }
        let result = if mode == "stop-always" || (mode == "stop-after-one" && tasks > 1) {
            side.request_stop()
        } else if let Some(command) = context.strip_prefix(b"!") {
            obey(&mut side, &String::from_utf8_lossy(command), body, (relay_in, relay_out), &mut kept)
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
    (relay_in, relay_out): (i32, i32),
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
            match protocol() {
                Protocol::V1 => raw_write(relay_out, &frame_prefix(16 | 4, 1 << 40)),
                Protocol::V2 => raw_write(relay_out, &v2_header(0, 0, &[0], u32::MAX)),
            }
            sleep_forever()
        }
        "truncate" => {
            match protocol() {
                Protocol::V1 => raw_write(relay_out, &frame_prefix(16 | 4, 100)),
                Protocol::V2 => raw_write(relay_out, &v2_header(0, 0, &[0], 100)),
            }
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
            // SAFETY: fcntl on our own descriptor of the relay's input (a pipe, over pipes).
            let size = unsafe { libc::fcntl(relay_in, libc::F_SETPIPE_SZ, arg.parse::<i32>().unwrap_or(4096)) };
            side.respond(b"pipe-size", size.to_string().as_bytes())
        }
        "exit" => {
            side.respond(echo_context.as_bytes(), body)?;
            std::process::exit(0);
        }
        "orphan" => {
            // A child that holds every descriptor of this worker (its relay too, as a
            // shell command started by the worker would hold its stdout) and outlives
            // it by ARG seconds; then the worker dies without answering.
            // SAFETY: this program has one thread; the child only sleeps and exits.
            let child = unsafe { libc::fork() };
            if child == 0 {
                std::thread::sleep(Duration::from_secs(arg.parse().unwrap_or(3600)));
                // SAFETY: ends the child at once, running nothing of the parent's.
                unsafe { libc::_exit(0) };
            }
            eprintln!("orphan {child}");
            std::process::exit(5);
        }
        "twice" => {
            // Two whole answers in one write: the host reads them together.
            let answer = raw_answer(echo_context.as_bytes(), body);
            raw_write(relay_out, &[answer.clone(), answer].concat());
            side.answered_elsewhere();
            Ok(())
        }
        "twice-later" => {
            // An answer, then ARG ms later a second one, reported on stderr once written.
            side.respond(echo_context.as_bytes(), body)?;
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(0)));
            raw_write(relay_out, &raw_answer(b"stale", b"a second answer"));
            eprintln!("second answer written");
            Ok(())
        }
        "die-when-full" => {
            // Answers, then reads nothing more, and exits once ARG bytes of the next
            // task wait on its relay: the host is then in the middle of writing it.
            side.respond(echo_context.as_bytes(), body)?;
            let want: libc::c_int = arg.parse().unwrap_or(60_000);
            loop {
                let mut waiting: libc::c_int = 0;
                // SAFETY: FIONREAD writes one c_int.
                unsafe { libc::ioctl(relay_in, libc::FIONREAD, &mut waiting) };
                if waiting >= want {
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        "stream" => {
            // ARG chunks, then the last part.
            for i in 0..arg.parse().unwrap_or(3) {
                side.send_chunk(b"chunk", format!("{}-{i}", String::from_utf8_lossy(body)).as_bytes())?;
            }
            side.respond(b"last", format!("{}-end", String::from_utf8_lossy(body)).as_bytes())
        }
        "stream-until-stopped" => {
            // Chunks until the host stops the stream (the worker side then ends it).
            loop {
                match side.send_chunk(b"chunk", body) {
                    Ok(()) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) if e.kind() == ErrorKind::Cancelled => {
                        eprintln!("stream stopped by the host");
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        "stream-hang" => {
            // One chunk, then nothing, ever: a stop cannot end this stream.
            side.send_chunk(b"chunk", body)?;
            sleep_forever()
        }
        "stream-error" => {
            for _ in 0..arg.parse().unwrap_or(2) {
                side.send_chunk(b"chunk", body)?;
            }
            side.error(body)
        }
        "bad-options" => {
            // A V2 answer with two options instead of one.
            raw_write(relay_out, &[&v2_header(0, 0, &[1, 2], 3)[..], b"abc"].concat());
            sleep_forever()
        }
        "bad-offset" => {
            // A V2 answer whose context length is past the end of its payload.
            raw_write(relay_out, &[&v2_header(0, 0, &[50], 3)[..], b"abc"].concat());
            sleep_forever()
        }
        "ping-last" => {
            // A last (and only) answer frame that asks for a PONG; then the next frame
            // from the host must be exactly that PONG, before any task.
            raw_write(relay_out, &[&v2_header(0, 0x04, &[4], 8)[..], b"pingbody"].concat());
            side.answered_elsewhere();
            let mut pong = [0u8; 12];
            // SAFETY: reads into a live 12-byte buffer; the relay's own buffer is empty
            // (the task was read whole).
            let got = unsafe { libc::read(relay_in, pong.as_mut_ptr().cast(), 12) };
            let expected = v2_header(0, 0x08, &[], 0);
            if got == 12 && pong[..] == expected[..] {
                eprintln!("pong received");
            } else {
                eprintln!("pong expected, got {got} bytes: {:02x?}", &pong[..got.max(0) as usize]);
            }
            Ok(())
        }
        "fds" => {
            let target = |fd: i32| {
                std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.display().to_string()).unwrap_or_default()
            };
            side.respond(b"fds", format!("0={} 1={} 2={}", target(0), target(1), target(2)).as_bytes())
        }
        _ => side.error(format!("unknown command {command:?}").as_bytes()),
    }
}

fn raw_write(fd: i32, bytes: &[u8]) {
    // SAFETY: writes from a live slice.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// An answer as bytes, in this worker's protocol, to write behind the worker side's back.
fn raw_answer(context: &[u8], body: &[u8]) -> Vec<u8> {
    match protocol() {
        Protocol::V1 => {
            [&frame_prefix(16 | 4, context.len() as u64)[..], context, &frame_prefix(4, body.len() as u64), body]
                .concat()
        }
        Protocol::V2 => {
            let header = v2_header(0, 0, &[context.len() as u32], (context.len() + body.len()) as u32);
            [&header[..], context, body].concat()
        }
    }
}

/// A V2 frame header (PROTOCOL-V2.md section 1), written here from the description, not
/// with the library's code, so that the tests check the library against it.
fn v2_header(flags: u8, stream: u8, options: &[u32], payload_len: u32) -> Vec<u8> {
    let mut header = vec![0x10 | (3 + options.len() as u8), flags];
    header.extend_from_slice(&payload_len.to_le_bytes());
    let crc = crc32fast::hash(&header[..6]);
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&[stream, 0]);
    for option in options {
        header.extend_from_slice(&option.to_le_bytes());
    }
    header
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
