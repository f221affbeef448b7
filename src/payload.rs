//! The harness's own message header, written at the front of every payload and padded to the
//! message size. Sequence numbers and timestamps are the harness's, never the broker's.
//!
//! Layout (little endian): magic u32 | version u16 | reserved u16 | run id u64 |
//! producer id u32 | reserved u32 | sequence u64 | intended send time ns u64 (CLOCK_MONOTONIC).

use std::collections::VecDeque;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

pub const MAGIC: u32 = 0x4242_4231; // "BBB1"
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 40;
/// A writer cuts its messages from chunks of about this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// The padding after the header is cut from this many pseudo-random bytes, made once per
/// process. Padding must not compress: with a repeated byte a Redis AOF rewrite (an RDB
/// preamble, LZF-compressed) shrank a 1 KiB entry about 20 times, so the rewritten base stayed
/// tiny and `auto-aof-rewrite-percentage` fired a rewrite on all six nodes every 64 MB of XADDs
/// (a throughput swing every ~3 s at max rate). Real payloads are seldom that compressible.
const POOL_BYTES: usize = 1 << 20;

/// The process's padding bytes (xorshift64*, fixed seed: no entropy needed, only no repeats
/// within any compressor's window).
fn pool() -> &'static [u8] {
    static POOL: OnceLock<Box<[u8]>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut v = Vec::with_capacity(POOL_BYTES);
        while v.len() < POOL_BYTES {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        v.into_boxed_slice()
    })
}

/// Fills `buf` with padding from the pool, starting at `*at` (moved on past what was taken).
fn fill_padding(buf: &mut [u8], at: &mut usize) {
    let pool = pool();
    let mut done = 0;
    while done < buf.len() {
        let from = *at % pool.len();
        let take = (buf.len() - done).min(pool.len() - from);
        buf[done..done + take].copy_from_slice(&pool[from..from + take]);
        done += take;
        // An odd step keeps consecutive chunks from lining up with each other.
        *at = from + take + 4093;
    }
}

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
    /// The header followed by `size - HEADER_LEN` bytes of incompressible padding (size is at
    /// least HEADER_LEN). One allocation per message: the load tasks use `PayloadWriter` instead.
    pub fn encode(&self, size: usize) -> Bytes {
        let mut b = BytesMut::zeroed(size.max(HEADER_LEN));
        let mut at = (self.seq as usize).wrapping_mul(8191);
        fill_padding(&mut b[HEADER_LEN..], &mut at);
        self.write_into(&mut b);
        b.freeze()
    }

    /// Write into a buffer that already holds the padding: overwrites the first HEADER_LEN bytes
    /// (the buffer is at least that long).
    pub fn write_into(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&0u16.to_le_bytes());
        b[8..16].copy_from_slice(&self.run_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.producer.to_le_bytes());
        b[20..24].copy_from_slice(&0u32.to_le_bytes());
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.intended_ns.to_le_bytes());
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

/// Builds a producer's payloads without an allocation per message, writing only each header.
///
/// A batch of at least half a chunk is cut from whole chunks of about 64 KiB: once every message
/// of a chunk has been dropped (the client sent it, the consumer read it), the chunk is taken
/// back as it is, padding and all, and only the new headers are written into it. Smaller
/// batches (fixed rates) are cut message by message from a running chunk, whose padding is
/// written again when it is reused.
#[derive(Debug)]
pub struct PayloadWriter {
    size: usize,
    per_chunk: usize,
    /// The running chunk small batches are cut from.
    buf: BytesMut,
    /// Whole chunks handed out, oldest first, to be taken back.
    ring: VecDeque<Bytes>,
    /// Where the next chunk's padding starts in the pool.
    pad_at: usize,
}

/// Whole chunks a writer keeps for reuse, at most.
const RING_CHUNKS: usize = 16;

impl PayloadWriter {
    /// Payloads of `size` bytes (at least HEADER_LEN).
    pub fn new(size: usize) -> Self {
        let size = size.max(HEADER_LEN);
        PayloadWriter {
            size,
            per_chunk: (CHUNK_BYTES / size).max(1),
            buf: BytesMut::new(),
            ring: VecDeque::new(),
            pad_at: 0,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The next payload: `header` followed by the padding.
    pub fn write(&mut self, header: &Header) -> Bytes {
        if self.buf.len() < self.size {
            // Reclaims the chunk's memory in place when nothing cut from it is alive any more.
            let len = self.size * self.per_chunk;
            self.buf.clear();
            self.buf.reserve(len);
            self.buf.resize(len, 0);
            fill_padding(&mut self.buf, &mut self.pad_at);
        }
        header.write_into(&mut self.buf);
        self.buf.split_to(self.size).freeze()
    }

    /// Append `n` payloads to `out`, the i-th with `header(i)`.
    pub fn write_batch(
        &mut self,
        n: usize,
        header: impl Fn(usize) -> Header,
        out: &mut Vec<Bytes>,
    ) {
        if n < self.per_chunk.div_ceil(2) {
            out.extend((0..n).map(|i| self.write(&header(i))));
            return;
        }
        let size = self.size;
        let mut i = 0;
        while i < n {
            let take = (n - i).min(self.per_chunk);
            let mut chunk = self.whole_chunk();
            for k in 0..take {
                header(i + k).write_into(&mut chunk[k * size..]);
            }
            let whole = chunk.freeze();
            out.extend((0..take).map(|k| whole.slice(k * size..(k + 1) * size)));
            self.ring.push_back(whole);
            if self.ring.len() > RING_CHUNKS {
                self.ring.pop_front();
            }
            i += take;
        }
    }

    /// A whole chunk holding the padding: the oldest one handed out if nothing cut from it is
    /// alive any more, else a new one.
    fn whole_chunk(&mut self) -> BytesMut {
        if let Some(old) = self.ring.pop_front() {
            match old.try_into_mut() {
                Ok(chunk) => return chunk,
                // Still in use: try it again after the others.
                Err(old) => self.ring.push_back(old),
            }
        }
        let len = self.size * self.per_chunk;
        let mut chunk = BytesMut::zeroed(len);
        fill_padding(&mut chunk, &mut self.pad_at);
        chunk
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
    fn a_writer_cuts_whole_payloads_and_reuses_its_memory() {
        let mut w = PayloadWriter::new(100);
        let h = |seq| Header {
            run_id: 1,
            producer: 2,
            seq,
            intended_ns: seq * 10,
        };
        let is = |p: &Bytes, seq| p.len() == 100 && Header::decode(p) == Ok(h(seq));
        let first = w.write(&h(0));
        assert!(is(&first, 0));
        let chunk = first.as_ptr();
        // A whole chunk and more, each payload the same as encode's.
        let n = CHUNK_BYTES / 100 + 5;
        let kept: Vec<Bytes> = (1..n as u64).map(|s| w.write(&h(s))).collect();
        for (s, p) in (1..).zip(&kept) {
            assert!(is(p, s), "payload {s}");
        }
        // Every payload of the first chunk still alive: the second chunk is new memory.
        assert_ne!(kept[CHUNK_BYTES / 100 - 1].as_ptr(), chunk);
        drop((first, kept));
        // Nothing alive: a later chunk reuses the memory of the one before it.
        let mut w = PayloadWriter::new(100);
        let p = w.write(&h(0));
        let at = p.as_ptr();
        drop(p);
        for s in 1..(CHUNK_BYTES / 100) as u64 {
            drop(w.write(&h(s)));
        }
        let again = w.write(&h(7));
        assert_eq!(again.as_ptr(), at);
        assert!(is(&again, 7));
        assert_eq!(PayloadWriter::new(3).write(&h(1)).len(), HEADER_LEN);
    }

    /// Big batches come from whole chunks, taken back as they are once their messages are gone.
    #[test]
    fn whole_chunks_are_taken_back_with_their_padding() {
        let per_chunk = CHUNK_BYTES / 100;
        let h = |seq| Header {
            run_id: 9,
            producer: 1,
            seq,
            intended_ns: 5,
        };
        let is = |p: &Bytes, seq| p.len() == 100 && Header::decode(p) == Ok(h(seq));
        let mut w = PayloadWriter::new(100);
        let mut out = Vec::new();
        w.write_batch(per_chunk + 3, |i| h(i as u64), &mut out);
        assert_eq!(out.len(), per_chunk + 3);
        for (i, p) in out.iter().enumerate() {
            assert!(is(p, i as u64), "payload {i}");
        }
        let padding = out[0][HEADER_LEN..].to_vec();
        let chunks = [out[0].as_ptr(), out[per_chunk].as_ptr()];
        // Still alive: the next batch gets new memory.
        let mut more = Vec::new();
        w.write_batch(per_chunk, |i| h(1000 + i as u64), &mut more);
        assert!(!chunks.contains(&more[0].as_ptr()));
        let chunks = [chunks[0], chunks[1], more[0].as_ptr()];
        drop(out);
        drop(more);
        // All gone: a chunk comes back, only the headers rewritten.
        let mut again = Vec::new();
        w.write_batch(per_chunk, |i| h(2000 + i as u64), &mut again);
        assert!(chunks.contains(&again[0].as_ptr()));
        for (i, p) in again.iter().enumerate() {
            assert!(is(p, 2000 + i as u64), "payload {i}");
        }
        // Taken back as it was: the padding is not written again.
        let back = again.iter().find(|p| p.as_ptr() == chunks[0]);
        assert!(back.is_none_or(|p| p[HEADER_LEN..] == padding[..]));
        // A small batch is cut from the running chunk.
        let mut small = Vec::new();
        w.write_batch(2, |i| h(i as u64), &mut small);
        assert!(small.len() == 2 && is(&small[0], 0) && is(&small[1], 1));
    }

    /// The padding does not compress (a repeated byte made Redis's AOF rewrites fire every few
    /// seconds), neither within a message nor across the messages of a batch.
    #[test]
    fn padding_is_incompressible() {
        use std::io::Write;
        let h = |seq| Header {
            run_id: 3,
            producer: 0,
            seq,
            intended_ns: seq,
        };
        let deflated = |bytes: &[u8]| {
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(bytes).expect("in memory");
            z.finish().expect("in memory").len() as f64 / bytes.len() as f64
        };
        let mut w = PayloadWriter::new(1024);
        let mut batch = Vec::new();
        w.write_batch(256, |i| h(i as u64), &mut batch);
        let all: Vec<u8> = batch.iter().flat_map(|p| p.iter().copied()).collect();
        assert!(
            deflated(&all) > 0.95,
            "a batch deflates to {:.2}",
            deflated(&all)
        );
        let small: Vec<u8> = (0..64).flat_map(|s| w.write(&h(s)).to_vec()).collect();
        assert!(
            deflated(&small) > 0.95,
            "small writes deflate to {:.2}",
            deflated(&small)
        );
        let one = h(5).encode(1024);
        assert!(
            deflated(&one) > 0.95,
            "encode deflates to {:.2}",
            deflated(&one)
        );
        assert_ne!(batch[0][HEADER_LEN..], batch[1][HEADER_LEN..]);
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
