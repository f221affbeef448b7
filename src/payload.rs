//! The harness's own message header, written at the front of every payload and padded to the
//! message size. Sequence numbers and timestamps are the harness's, never the broker's.
//!
//! Layout (little endian): magic u32 | version u16 | reserved u16 | run id u64 |
//! producer id u32 | reserved u32 | sequence u64 | intended send time ns u64 (CLOCK_MONOTONIC).

use bytes::{BufMut, Bytes, BytesMut};

pub const MAGIC: u32 = 0x4242_4231; // "BBB1"
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run_id: u64,
    pub producer: u32,
    pub seq: u64,
    pub intended_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("payload does not start with brokerbench's header (magic {0:#x})")]
    Magic(u32),
    #[error("header version {0} is not supported")]
    Version(u16),
}

impl Header {
    /// The header followed by `size - HEADER_LEN` padding bytes (size is at least HEADER_LEN).
    pub fn encode(&self, size: usize) -> Bytes {
        let mut b = BytesMut::with_capacity(size.max(HEADER_LEN));
        self.write(&mut b);
        b.resize(size.max(HEADER_LEN), b'.');
        b.freeze()
    }

    /// Write into a buffer that already holds the padding: overwrites the first HEADER_LEN bytes.
    pub fn write_into(&self, buf: &mut [u8]) {
        let mut b = BytesMut::with_capacity(HEADER_LEN);
        self.write(&mut b);
        buf[..HEADER_LEN].copy_from_slice(&b);
    }

    fn write(&self, b: &mut BytesMut) {
        b.put_u32_le(MAGIC);
        b.put_u16_le(VERSION);
        b.put_u16_le(0);
        b.put_u64_le(self.run_id);
        b.put_u32_le(self.producer);
        b.put_u32_le(0);
        b.put_u64_le(self.seq);
        b.put_u64_le(self.intended_ns);
    }

    pub fn decode(p: &[u8]) -> Result<Header, DecodeError> {
        if p.len() < HEADER_LEN {
            return Err(DecodeError::Short(p.len()));
        }
        let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([p[i], p[i + 1]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(DecodeError::Magic(magic));
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        Ok(Header {
            run_id: u64_at(8),
            producer: u32_at(16),
            seq: u64_at(24),
            intended_ns: u64_at(32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let h = Header {
            run_id: 7,
            producer: 3,
            seq: 1 << 40,
            intended_ns: 123_456_789,
        };
        let p = h.encode(100);
        assert_eq!(p.len(), 100);
        assert_eq!(Header::decode(&p), Ok(h));
        let mut buf = vec![0u8; 64];
        h.write_into(&mut buf);
        assert_eq!(Header::decode(&buf), Ok(h));
    }

    #[test]
    fn rejects_foreign_and_short_payloads() {
        assert_eq!(Header::decode(b"hello"), Err(DecodeError::Short(5)));
        assert_eq!(Header::decode(&[0u8; 64]), Err(DecodeError::Magic(0)));
        let mut p = Header {
            run_id: 1,
            producer: 1,
            seq: 1,
            intended_ns: 1,
        }
        .encode(64)
        .to_vec();
        p[4] = 9;
        assert_eq!(Header::decode(&p), Err(DecodeError::Version(9)));
    }
}
