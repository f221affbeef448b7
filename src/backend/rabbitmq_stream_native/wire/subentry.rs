//! Publish frames of sub-entries. A publish frame (v1) is the publisher id, an int32 count of
//! entries, then each entry: its publishing id (uint64) and, for a sub-entry, one byte `0x80 |
//! compression << 4`, the uint16 count of records, the uint32 size of the records uncompressed,
//! the uint32 size of the data, then the data: each record as uint32 size and bytes (an AMQP
//! 1.0 message around the payload, `amqp.rs`), compressed as one gzip member for `gzip`.
//!
//! A batch of payloads is cut into sub-entries of at most `size` records, each small enough to
//! fit a frame within the negotiated `frame_max` whatever the compression gives; the frames
//! carry as many sub-entries as fit. A payload too large for a frame on its own is not sent.

use std::ops::Range;

use bytes::{BufMut, Bytes};

use super::frame::{key, FrameWriter};
use super::gzip::{bound, GzipWriter};
use super::{amqp, Compression, WireError};

/// Bytes of a publish frame before its entries: size, key, version, publisher id, count.
const FRAME_HEAD: usize = 4 + 2 + 2 + 1 + 4;
/// Bytes of a sub-entry before its data: publishing id, type, records, two sizes.
const ENTRY_HEAD: usize = 8 + 1 + 2 + 4 + 4;
/// The frame size used when the server sets no limit.
const NO_LIMIT: usize = 8 << 20;

/// Bytes of one payload's record in a sub-entry's uncompressed data.
pub fn record_len(payload: usize) -> usize {
    4 + amqp::header_len(payload) + payload
}

/// A batch encoded: its frames, the payload positions of each sub-entry (the publishing ids
/// follow each other from the batch's first), and the payloads too large to send.
#[derive(Debug, Default)]
pub struct Encoded {
    pub frames: Vec<Bytes>,
    pub entries: Vec<Range<usize>>,
    pub too_large: Vec<usize>,
}

/// Cuts batches into sub-entries and writes their publish frames.
pub struct SubEntryEncoder {
    compression: Compression,
    /// The most records per sub-entry.
    size: usize,
    /// The largest frame to write, size field included.
    frame_max: usize,
    gzip: GzipWriter,
}

impl SubEntryEncoder {
    pub fn new(compression: Compression, size: usize, frame_max: u32) -> SubEntryEncoder {
        SubEntryEncoder {
            compression,
            size: size.clamp(1, u16::MAX as usize),
            frame_max: if frame_max == 0 {
                NO_LIMIT
            } else {
                frame_max as usize
            },
            gzip: GzipWriter::default(),
        }
    }

    /// The most data bytes a sub-entry of `total` uncompressed bytes may take.
    fn data_bound(&self, total: usize) -> usize {
        match self.compression {
            Compression::None => total,
            Compression::Gzip => bound(total),
        }
    }

    /// Encode `payloads` for publisher `publisher`, the first sub-entry with publishing id
    /// `first_id`.
    pub fn encode(
        &mut self,
        publisher: u8,
        first_id: u64,
        payloads: &[Bytes],
    ) -> Result<Encoded, WireError> {
        let room = self.frame_max.saturating_sub(FRAME_HEAD + ENTRY_HEAD);
        let mut out = Encoded::default();
        let mut frame: Option<(FrameWriter, u32)> = None;
        let mut i = 0;
        while i < payloads.len() {
            if self.data_bound(record_len(payloads[i].len())) > room {
                out.too_large.push(i);
                i += 1;
                continue;
            }
            let start = i;
            let mut total = 0;
            while i < payloads.len() && i - start < self.size {
                let r = record_len(payloads[i].len());
                if self.data_bound(total + r) > room {
                    break;
                }
                total += r;
                i += 1;
            }
            let need = ENTRY_HEAD + self.data_bound(total);
            if let Some((f, count)) = frame.take() {
                if f.written() + need <= self.frame_max {
                    frame = Some((f, count));
                } else {
                    out.frames.push(finish(f, count));
                }
            }
            let (f, count) = frame.get_or_insert_with(|| {
                let mut f = FrameWriter::new(key::PUBLISH, (FRAME_HEAD + need).min(self.frame_max));
                f.u8(publisher).u32(0);
                (f, 0)
            });
            let id = first_id + out.entries.len() as u64;
            self.write_entry(f, id, &payloads[start..i], total)?;
            *count += 1;
            out.entries.push(start..i);
        }
        if let Some((f, count)) = frame {
            out.frames.push(finish(f, count));
        }
        Ok(out)
    }

    fn write_entry(
        &mut self,
        f: &mut FrameWriter,
        id: u64,
        records: &[Bytes],
        total: usize,
    ) -> Result<(), WireError> {
        f.u64(id)
            .u8(0x80 | (self.compression.code() << 4))
            .u16(records.len() as u16)
            .u32(total as u32);
        match self.compression {
            Compression::None => {
                f.u32(total as u32);
                let buf = f.buf();
                for p in records {
                    buf.put_u32((amqp::header_len(p.len()) + p.len()) as u32);
                    amqp::put_header(p.len(), buf);
                    buf.put_slice(p);
                }
            }
            Compression::Gzip => {
                let at = f.written();
                f.u32(0);
                let mut m = self.gzip.member(total, f.buf());
                for p in records {
                    let (h, n) = amqp::header(p.len());
                    m.push(&((n + p.len()) as u32).to_be_bytes())?;
                    m.push(&h[..n])?;
                    m.push(p)?;
                }
                let len = m.finish()?;
                f.set_u32(at, len as u32);
            }
        }
        Ok(())
    }
}

/// The frame with its entry count set.
fn finish(mut f: FrameWriter, count: u32) -> Bytes {
    f.set_u32(FRAME_HEAD - 4, count);
    f.finish()
}
