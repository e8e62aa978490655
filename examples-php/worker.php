<?php
/**
 * An echo worker for libroadrunner, written from SPEC.md section 1 with nothing but
 * pack/unpack and PHP streams (no Composer packages).
 *
 * Relay: RR_RELAY = "unix:///path/to/rr.sock" or "tcp://host:port" connects to the pool's
 * socket; unset, "pipes" or "pipe" uses STDIN/STDOUT.
 *
 * Tasks: the context and body are sent back unchanged; a task whose context is exactly
 * "error" is answered with a job error whose message is the body.
 *
 * Never write anything else to STDOUT on the pipes relay: it would corrupt the frames.
 * Diagnostics go to STDERR (the pool captures it).
 */

declare(strict_types=1);

const FLAG_EMPTY = 2;
const FLAG_RAW = 4;
const FLAG_ERROR = 8;
const FLAG_CONTROL = 16;
const PREFIX_SIZE = 17;
/** Read payloads in pieces of at most this size (the declared size is not trusted). */
const READ_CHUNK = 1 << 20;

function fail(string $message): void
{
    fwrite(STDERR, "worker.php (pid " . getmypid() . "): " . $message . "\n");
    exit(1);
}

/** Reads exactly $n bytes, looping over short reads; exits on end of stream. */
function read_exact($in, int $n): string
{
    $data = '';
    while (strlen($data) < $n) {
        $chunk = fread($in, min($n - strlen($data), READ_CHUNK));
        if ($chunk === false || $chunk === '') {
            if (feof($in)) {
                if ($data === '' && $n === PREFIX_SIZE) {
                    // The pool closed the relay between frames: nothing left to do.
                    exit(0);
                }
                fail("relay closed after " . strlen($data) . " of $n bytes");
            }
            if ($chunk === false) {
                fail("read error on the relay");
            }
            continue; // an empty read that is not the end (e.g. interrupted): try again
        }
        $data .= $chunk;
    }
    return $data;
}

/**
 * Reads one frame. Returns [flags, payload].
 * The prefix is: flags (u8), size (u64 little-endian), size again (u64 big-endian).
 */
function read_frame($in): array
{
    $prefix = read_exact($in, PREFIX_SIZE);
    $p = unpack('Cflags/Psize_le/Jsize_be', $prefix);
    if ($p['size_le'] !== $p['size_be']) {
        fail(sprintf(
            "invalid frame prefix %s: sizes differ (%d little-endian, %d big-endian)",
            bin2hex($prefix),
            $p['size_le'],
            $p['size_be']
        ));
    }
    $flags = $p['flags'];
    if ($flags & FLAG_EMPTY) {
        return [$flags, ''];
    }
    $size = $p['size_le'];
    if ($size < 0) { // above PHP_INT_MAX: unpack gives a negative int
        fail("invalid frame prefix " . bin2hex($prefix) . ": size out of range");
    }
    return [$flags, $size === 0 ? '' : read_exact($in, $size)];
}

/** Writes all of $data, looping over short writes. */
function write_all($out, string $data): void
{
    $len = strlen($data);
    $done = 0;
    while ($done < $len) {
        $n = fwrite($out, $done === 0 ? $data : substr($data, $done));
        if ($n === false || $n === 0) {
            fail("write error on the relay after $done of $len bytes");
        }
        $done += $n;
    }
}

/** Encodes one frame: the prefix and its payload, so that both go in one write. */
function frame(int $flags, string $payload): string
{
    if ($payload === '' && !($flags & FLAG_RAW)) {
        $flags |= FLAG_EMPTY;
    }
    $size = ($flags & FLAG_EMPTY) ? 0 : strlen($payload);
    return pack('CPJ', $flags, $size, $size) . (($flags & FLAG_EMPTY) ? '' : $payload);
}

function open_relay(): array
{
    $relay = getenv('RR_RELAY');
    if ($relay === false || $relay === '' || $relay === 'pipes' || $relay === 'pipe') {
        return [STDIN, STDOUT];
    }
    if (strncmp($relay, 'unix://', 7) !== 0 && strncmp($relay, 'tcp://', 6) !== 0) {
        fail("unsupported RR_RELAY '$relay' (expected pipes, unix://path or tcp://host:port)");
    }
    $options = ['socket' => []];
    if (strncmp($relay, 'tcp://', 6) === 0) {
        $options['socket']['tcp_nodelay'] = true;
    }
    $sock = @stream_socket_client($relay, $errno, $errstr, 30, STREAM_CLIENT_CONNECT,
        stream_context_create($options));
    if ($sock === false) {
        fail("cannot connect to $relay: $errstr ($errno)");
    }
    stream_set_blocking($sock, true);
    stream_set_timeout($sock, 86400 * 365);
    return [$sock, $sock];
}

[$in, $out] = open_relay();

while (true) {
    [$flags, $payload] = read_frame($in);

    if (($flags & FLAG_CONTROL) && !($flags & (FLAG_RAW | FLAG_EMPTY))) {
        // A control message: the handshake or the stop command. (A CONTROL frame with
        // RAW, or with EMPTY, is a task's context, as in RoadRunner 1.x's Worker.php.)
        $message = json_decode($payload, true);
        if (!is_array($message)) {
            fail("invalid control frame: " . var_export($payload, true));
        }
        if (!empty($message['pid'])) {
            write_all($out, frame(FLAG_CONTROL, json_encode(['pid' => getmypid()])));
        }
        if (!empty($message['stop'])) {
            exit(0);
        }
        continue;
    }

    if (!($flags & FLAG_CONTROL)) {
        fail("expected a context frame (CONTROL), got flags $flags");
    }

    // A task: this was the context; the body follows.
    $context = $payload;
    [$bodyFlags, $body] = read_frame($in);
    if ($bodyFlags & FLAG_CONTROL) {
        fail("expected a body frame, got a control frame (flags $bodyFlags)");
    }

    if ($context === 'error') {
        write_all($out, frame(FLAG_CONTROL | FLAG_RAW | FLAG_ERROR, $body));
        continue;
    }

    $answer = frame($context === '' ? (FLAG_CONTROL | FLAG_EMPTY) : (FLAG_CONTROL | FLAG_RAW), $context);
    $bodyFrame = frame(FLAG_RAW, $body);
    if (strlen($body) <= 65536) {
        write_all($out, $answer . $bodyFrame); // both frames at once
    } else {
        write_all($out, $answer);
        write_all($out, $bodyFrame); // a prefix and its payload still go in one write
    }
}
