//! The frame header of protocol V2 (goridge 3 and 4: RoadRunner 2.x to 2025.x workers;
//! `shared/PROTOCOL-V2.md` section 1).
//!
//! 12 bytes, then up to 10 options, then the payload:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | version 1 in the high nibble; header length in 32-bit words (3 + options) in the low one |
//! | 1 | flags: CONTROL, the codec (RAW, JSON, MSGPACK, GOB, PROTO), ERROR |
//! | 2..6 | payload length, u32 little-endian |
//! | 6..10 | CRC32-IEEE of bytes 0..6, little-endian |
//! | 10 | stream bits: STREAM, STOP, PING, PONG |
//! | 11 | reserved |
//! | 12.. | the options, u32 little-endian each |
//!
//! The CRC covers bytes 0..6 only: it is what tells a frame from stray bytes a worker
//! printed to its stdout. This module only encodes and decodes headers; reading and
//! writing them is the relay's job.

/// Size of a header without options.
pub(crate) const HEADER_LEN: usize = 12;
/// Most options a header may carry.
pub(crate) const MAX_OPTIONS: usize = 10;
/// Largest header, options included.
pub(crate) const MAX_HEADER_LEN: usize = HEADER_LEN + 4 * MAX_OPTIONS;

/// The protocol version in the high nibble of byte 0.
const VERSION: u8 = 1;

/// A control frame: the pid handshake, the stop command.
pub(crate) const CONTROL: u8 = 0x01;
/// The payload is an error message (a job error).
pub(crate) const ERROR: u8 = 0x40;
/// The codec bits of the flags byte: RAW 0x04, JSON 0x08, MSGPACK 0x10, GOB 0x20, PROTO 0x80.
pub(crate) const CODECS: u8 = 0x04 | 0x08 | 0x10 | 0x20 | 0x80;
/// The JSON codec, which control frames carry.
pub(crate) const JSON: u8 = 0x08;

/// Stream bit: more frames of this answer follow.
pub(crate) const STREAM: u8 = 0x01;
/// Stream bit: the host asks the worker to stop the stream.
pub(crate) const STOP: u8 = 0x02;
/// Stream bit: the worker asks the host for a PONG.
pub(crate) const PING: u8 = 0x04;
/// Stream bit: the host's answer to a PING.
pub(crate) const PONG: u8 = 0x08;

/// A decoded header (the options are read after it, `options` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub flags: u8,
    /// Byte 10: STREAM, STOP, PING, PONG.
    pub stream: u8,
    /// Payload bytes after the options.
    pub payload_len: u32,
    /// Options after the 12 bytes.
    pub options: usize,
}

impl Header {
    /// Whether every bit of `flag` is set in the flags byte.
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag == flag
    }

    /// Whether every bit of `bit` is set in the stream byte.
    pub(crate) fn has_stream(&self, bit: u8) -> bool {
        self.stream & bit == bit
    }
}

/// Why 12 bytes are not a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAHeader {
    /// The CRC does not match: not a frame at all (stray output, or another protocol).
    Crc,
    /// The CRC matches, but the version or the header length is not one we know.
    Version { version: u8, words: u8 },
}

/// The CRC32-IEEE of the first six bytes of a header.
fn crc(first_six: &[u8]) -> u32 {
    crc32fast::hash(first_six)
}

/// Encodes a header with `options` (at most [`MAX_OPTIONS`]) for a payload of
/// `payload_len` bytes; returns the buffer and how many of its bytes are the header.
pub(crate) fn encode(flags: u8, stream: u8, options: &[u32], payload_len: u32) -> ([u8; MAX_HEADER_LEN], usize) {
    assert!(options.len() <= MAX_OPTIONS, "at most {MAX_OPTIONS} options");
    let mut header = [0u8; MAX_HEADER_LEN];
    header[0] = VERSION << 4 | (3 + options.len() as u8);
    header[1] = flags;
    header[2..6].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc(&header[..6]);
    header[6..10].copy_from_slice(&crc.to_le_bytes());
    header[10] = stream;
    for (i, option) in options.iter().enumerate() {
        header[HEADER_LEN + 4 * i..HEADER_LEN + 4 * i + 4].copy_from_slice(&option.to_le_bytes());
    }
    (header, HEADER_LEN + 4 * options.len())
}

/// Decodes the 12 bytes of a header (its options follow it on the wire).
pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, NotAHeader> {
    let stored = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes"));
    if crc(&bytes[..6]) != stored {
        return Err(NotAHeader::Crc);
    }
    let (version, words) = (bytes[0] >> 4, bytes[0] & 0x0f);
    if version != VERSION || !(3..=3 + MAX_OPTIONS as u8).contains(&words) {
        return Err(NotAHeader::Version { version, words });
    }
    Ok(Header {
        flags: bytes[1],
        stream: bytes[10],
        payload_len: u32::from_le_bytes(bytes[2..6].try_into().expect("4 bytes")),
        options: usize::from(words - 3),
    })
}

/// Reads `count` options from the bytes after a header.
pub(crate) fn decode_options(bytes: &[u8], count: usize) -> [u32; MAX_OPTIONS] {
    let mut options = [0u32; MAX_OPTIONS];
    for (i, option) in options.iter_mut().enumerate().take(count) {
        *option = u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace().map(|byte| u8::from_str_radix(byte, 16).unwrap()).collect()
    }

    /// A whole frame: header (with options) and payload.
    fn frame(flags: u8, stream: u8, options: &[u32], payload: &[u8]) -> Vec<u8> {
        let (header, len) = encode(flags, stream, options, payload.len() as u32);
        [&header[..len], payload].concat()
    }

    // The worked bytes of PROTOCOL-V2.md section 1.5.
    #[test]
    fn encodes_the_worked_examples_byte_for_byte() {
        assert_eq!(
            frame(CONTROL | JSON, 0, &[], br#"{"pid":1234}"#),
            hex("13 09 0c 00 00 00 5f 0c 46 73 00 00 7b 22 70 69 64 22 3a 31 32 33 34 7d")
        );
        assert_eq!(
            frame(CONTROL | JSON, 0, &[], br#"{"stop":true}"#),
            hex("13 09 0d 00 00 00 3a 6b fa cb 00 00 7b 22 73 74 6f 70 22 3a 74 72 75 65 7d")
        );
        assert_eq!(frame(0, STOP, &[], b""), hex("13 00 00 00 00 00 96 d1 80 34 02 00"));
        assert_eq!(frame(0, PONG, &[], b""), hex("13 00 00 00 00 00 96 d1 80 34 08 00"));
        assert_eq!(
            frame(0x04, 0, &[7], br#"{"a":1}hello"#),
            hex("14 04 0c 00 00 00 56 f8 d3 96 00 00 07 00 00 00 7b 22 61 22 3a 31 7d 68 65 6c 6c 6f")
        );
        assert_eq!(frame(ERROR, 0, &[], b"boom"), hex("13 40 04 00 00 00 88 1e 11 e3 00 00 62 6f 6f 6d"));
    }

    #[test]
    fn decodes_the_worked_examples() {
        let task = hex("14 04 0c 00 00 00 56 f8 d3 96 00 00 07 00 00 00 7b 22 61 22 3a 31 7d 68 65 6c 6c 6f");
        let header = decode(task[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header, Header { flags: 0x04, stream: 0, payload_len: 12, options: 1 });
        assert_eq!(decode_options(&task[HEADER_LEN..], header.options)[0], 7);
        let stop = hex("13 00 00 00 00 00 96 d1 80 34 02 00");
        let header = decode(stop[..].try_into().unwrap()).unwrap();
        assert!(header.has_stream(STOP) && !header.has_stream(STREAM));
        assert_eq!((header.payload_len, header.options), (0, 0));
    }

    #[test]
    fn a_header_whose_crc_does_not_match_is_not_a_frame() {
        let mut pid = hex("13 09 0c 00 00 00 5f 0c 46 73 00 00");
        pid[3] = 1; // the length changed, the CRC did not
        assert_eq!(decode(pid[..].try_into().unwrap()), Err(NotAHeader::Crc));
        assert_eq!(decode(b"Hello, world"), Err(NotAHeader::Crc));
        // A V1 prefix is not a V2 header either.
        assert_eq!(decode(&crate::frame::encode(0x10, 12)[..HEADER_LEN].try_into().unwrap()), Err(NotAHeader::Crc));
    }

    #[test]
    fn bytes_10_and_11_and_the_options_are_not_covered_by_the_crc() {
        let mut with_bits = frame(0, 0, &[3], b"abc");
        with_bits[10] = STREAM | PING;
        with_bits[11] = 0xff;
        let header = decode(with_bits[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header.stream, STREAM | PING);
    }

    #[test]
    fn a_known_crc_with_an_unknown_version_or_length_is_refused() {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0] = 0x23; // version 2
        let sum = crc(&bytes[..6]);
        bytes[6..10].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(decode(&bytes), Err(NotAHeader::Version { version: 2, words: 3 }));
        bytes[0] = 0x1e; // 14 words: 11 options
        let sum = crc(&bytes[..6]);
        bytes[6..10].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(decode(&bytes), Err(NotAHeader::Version { version: 1, words: 14 }));
    }

    #[test]
    fn ten_options_round_trip() {
        let options: Vec<u32> = (1..=10).map(|i| i * 1000).collect();
        let bytes = frame(0x08, STREAM, &options, b"x");
        let header = decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header.options, 10);
        assert_eq!(&decode_options(&bytes[HEADER_LEN..], 10)[..], &options[..]);
    }
}
