//! The frame prefix of the wire protocol (SPEC.md section 1).
//!
//! Every frame starts with 17 bytes: one byte of flags, then the payload size as an
//! unsigned 64-bit integer twice, little-endian and big-endian. The two copies let a
//! reader tell a real prefix from stray bytes a worker printed to its stdout. This module
//! only encodes and decodes prefixes; reading and writing them is the relay's job.

/// Size of a frame prefix in bytes.
pub(crate) const PREFIX_LEN: usize = 17;

/// The payload is empty and no payload bytes follow the prefix.
pub(crate) const EMPTY: u8 = 2;
/// The payload is raw bytes (a context or a body).
pub(crate) const RAW: u8 = 4;
/// The payload is an error message (a job error).
pub(crate) const ERROR: u8 = 8;
/// A control frame: a context, or a JSON command such as the handshake or stop.
pub(crate) const CONTROL: u8 = 16;

/// The decoded prefix of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The flag bits.
    pub flags: u8,
    /// Payload bytes that follow the prefix (0 when `EMPTY` is set).
    pub size: u64,
}

impl Prefix {
    /// Whether every bit of `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.flags & flag == flag
    }
}

/// Encodes a prefix for a payload of `size` bytes.
pub(crate) fn encode(flags: u8, size: u64) -> [u8; PREFIX_LEN] {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[0] = flags;
    prefix[1..9].copy_from_slice(&size.to_le_bytes());
    prefix[9..17].copy_from_slice(&size.to_be_bytes());
    prefix
}

/// Decodes a prefix; `None` if its two sizes differ (not a frame: stray output).
pub(crate) fn decode(prefix: &[u8; PREFIX_LEN]) -> Option<Prefix> {
    let little = u64::from_le_bytes(prefix[1..9].try_into().expect("8 bytes"));
    let big = u64::from_be_bytes(prefix[9..17].try_into().expect("8 bytes"));
    if little != big {
        return None;
    }
    let flags = prefix[0];
    let size = if flags & EMPTY != 0 { 0 } else { little };
    Some(Prefix { flags, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_both_byte_orders() {
        let prefix = encode(CONTROL | RAW, 0x0102);
        assert_eq!(prefix[0], 20);
        assert_eq!(&prefix[1..9], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&prefix[9..17], &[0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn round_trips_sizes_and_flags() {
        for size in [0u64, 1, 16, 65_535, 1 << 32, u64::MAX] {
            for flags in [RAW, CONTROL | RAW, CONTROL | ERROR, CONTROL] {
                assert_eq!(decode(&encode(flags, size)), Some(Prefix { flags, size }));
            }
        }
    }

    #[test]
    fn empty_flag_means_no_payload_whatever_the_size() {
        let prefix = decode(&encode(CONTROL | EMPTY, 0)).unwrap();
        assert_eq!(prefix.size, 0);
        assert!(prefix.has(CONTROL) && prefix.has(EMPTY) && !prefix.has(RAW));
    }

    #[test]
    fn rejects_mismatched_sizes() {
        let mut prefix = encode(RAW, 5);
        prefix[12] = 1;
        assert_eq!(decode(&prefix), None);
        assert_eq!(decode(b"hello, stray out!"), None);
    }
}
