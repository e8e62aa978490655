<?php
/**
 * An echo worker for libroadrunner speaking protocol V2 (the goridge 3/4 frames of
 * RoadRunner 2.x and later), written from shared/PROTOCOL-V2.md with nothing but
 * pack/unpack, crc32 and PHP streams (no Composer packages). Run it in a pool set to
 * protocol V2 (rr_config_set_protocol(cfg, RR_PROTOCOL_V2, ...)).
 *
 * Relay: RR_RELAY = "unix:///path/to/rr.sock" or "tcp://host:port" connects to the pool's
 * socket; unset, "pipes" or "pipe" uses STDIN/STDOUT.
 *
 * Tasks: the context and body are sent back unchanged, except:
 *   - context "error": a job error whose message is the body;
 *   - context "stream": a streamed answer of N chunks "chunk i of N" (N = the body),
 *     then an empty last frame. Every 5th chunk asks the host for a PONG (PING) and
 *     waits for it before the next; a STOP from the host ends the stream early (an
 *     empty last frame), as the host waits for.
 *
 * A frame: 12 bytes (version 1 and the header length in 32-bit words in byte 0, flags,
 * payload length u32 LE, CRC32 of bytes 0..5 LE, stream bits, reserved), the options
 * (u32 LE each), the payload.
 *
 * Never write anything else to STDOUT on the pipes relay: it would corrupt the frames.
 * Diagnostics go to STDERR (the pool captures it).
 */

declare(strict_types=1);

const HEADER_SIZE = 12;
const FLAG_CONTROL = 0x01;
const FLAG_ERROR = 0x40;
const STREAM_MORE = 0x01;
const STREAM_STOP = 0x02;
const STREAM_PING = 0x04;
const STREAM_PONG = 0x08;
const CHUNKS_PER_PING = 5;
/** Read payloads in pieces of at most this size (the declared size is not trusted). */
const READ_CHUNK = 1 << 20;

function fail(string $message): void
{
    fwrite(STDERR, "worker-v2.php (pid " . getmypid() . "): " . $message . "\n");
    exit(1);
}

/** Reads exactly $n bytes, looping over short reads; exits on end of stream. */
function read_exact($in, int $n, bool $atFrameStart = false): string
{
    $data = '';
    while (strlen($data) < $n) {
        $chunk = fread($in, min($n - strlen($data), READ_CHUNK));
        if ($chunk === false || $chunk === '') {
            if (feof($in)) {
                if ($data === '' && $atFrameStart) {
                    exit(0); // the pool closed the relay between frames
                }
                fail("relay closed after " . strlen($data) . " of $n bytes");
            }
            if ($chunk === false) {
                fail("read error on the relay");
            }
            continue;
        }
        $data .= $chunk;
    }
    return $data;
}

/** Reads one frame. Returns [flags, stream bits, options, payload]. */
function read_frame($in): array
{
    $header = read_exact($in, HEADER_SIZE, true);
    $h = unpack('Cvl/Cflags/Vlength/Vcrc/Cstream/Creserved', $header);
    if ((crc32(substr($header, 0, 6)) & 0xffffffff) !== $h['crc']) {
        fail("not a V2 frame (its CRC does not match): " . bin2hex($header)
            . " (is the pool set to protocol V2?)");
    }
    $version = $h['vl'] >> 4;
    $words = $h['vl'] & 0x0f;
    if ($version !== 1 || $words < 3 || $words > 13) {
        fail("unknown V2 header: version $version, length $words words");
    }
    $options = [];
    if ($words > 3) {
        $options = array_values(unpack('V*', read_exact($in, 4 * ($words - 3))));
    }
    $payload = $h['length'] === 0 ? '' : read_exact($in, $h['length']);
    return [$h['flags'], $h['stream'], $options, $payload];
}

/** Encodes one frame: header, options and payload, for one write. */
function frame(int $flags, int $stream, array $options, string $payload): string
{
    $first = pack('CCV', (1 << 4) | (3 + count($options)), $flags, strlen($payload));
    $crc = crc32($first) & 0xffffffff;
    $header = $first . pack('VCC', $crc, $stream, 0);
    foreach ($options as $option) {
        $header .= pack('V', $option);
    }
    return $header . $payload;
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

/** An answer frame: one option, the context's length; payload = context + body. */
function answer(string $context, string $body, int $stream = 0): string
{
    return frame(0, $stream, [strlen($context)], $context . $body);
}

/** Whether a frame is waiting on $in, without blocking. */
function has_input($in): bool
{
    $read = [$in];
    $write = $except = null;
    return stream_select($read, $write, $except, 0) > 0;
}

/**
 * Streams $count chunks. Before each chunk, a STOP from the host ends the stream; after
 * a chunk with PING, the next chunk waits for the PONG (or a STOP).
 */
function stream_chunks($in, $out, int $count): void
{
    $awaitingPong = false;
    for ($i = 1; $i <= $count; $i++) {
        while ($awaitingPong || has_input($in)) {
            [, $bits] = read_frame($in);
            if ($bits & STREAM_STOP) {
                write_all($out, answer('', '')); // the last frame: the stream is over
                fwrite(STDERR, "stream stopped by the host after " . ($i - 1) . " chunks\n");
                return;
            }
            if ($bits & STREAM_PONG) {
                $awaitingPong = false;
                continue;
            }
            fail("unexpected frame in the middle of a stream (stream bits $bits)");
        }
        $ping = $i % CHUNKS_PER_PING === 0;
        write_all($out, answer('stream', "chunk $i of $count", STREAM_MORE | ($ping ? STREAM_PING : 0)));
        $awaitingPong = $ping;
    }
    write_all($out, answer('stream', ''));
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
    [$flags, $bits, $options, $payload] = read_frame($in);

    if ($flags & FLAG_CONTROL) {
        // The handshake or the stop command.
        $message = json_decode($payload, true);
        if (!is_array($message)) {
            fail("invalid control frame: " . var_export($payload, true));
        }
        if (!empty($message['pid'])) {
            // CONTROL alone, as spiral/roadrunner-worker answers (the pool accepts
            // CONTROL|JSON as well).
            write_all($out, frame(FLAG_CONTROL, 0, [], json_encode(['pid' => getmypid()])));
        }
        if (!empty($message['stop'])) {
            exit(0);
        }
        continue;
    }
    if ($bits & (STREAM_STOP | STREAM_PONG)) {
        continue; // a PONG or a STOP that came after its stream ended
    }

    $split = $options[0] ?? 0;
    if ($split > strlen($payload)) {
        fail("the task's context length $split is past the end of its payload");
    }
    $context = substr($payload, 0, $split);
    $body = substr($payload, $split);

    if ($context === 'error') {
        write_all($out, frame(FLAG_ERROR, 0, [], $body));
    } elseif ($context === 'stream') {
        stream_chunks($in, $out, (int)$body);
    } else {
        write_all($out, answer($context, $body));
    }
}
