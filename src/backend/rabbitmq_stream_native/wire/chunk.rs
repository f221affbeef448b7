//! A delivered chunk's records. A Deliver (v1) carries a subscription id, then an osiris chunk:
//! a 48-byte header (magic and version, chunk type, uint16 entries, uint32 records, timestamp,
//! epoch, the chunk's first offset, data CRC, data length, trailer length, bloom filter size and
//! reserved bytes) and its data (the broker skips the bloom filter for consumers). Each entry is
//! either simple (top bit 0, a 31-bit size, the record) or a sub-batch (top bit 1, a 3-bit
//! compression, 4 reserved bits, uint16 records, uint32 uncompressed length, uint32 length, then
//! its records as uint32 size + bytes, compressed as a whole). Every record has its own offset:
//! the chunk's first offset plus its index over all records, sub-batch records included.
//!
//! Records are slices of the frame (or of the one buffer a sub-batch inflates to), never
//! copies; a gzip sub-batch is inflated once.

use bytes::Bytes;

use super::frame::FrameReader;
use super::gzip::GzipReader;
use super::{Compression, WireError};

/// Bytes of a chunk's header.
pub const HEADER_LEN: usize = 48;
/// The chunk type of user data (the others carry offset and publisher tracking).
pub const USER: u8 = 0;

/// What a chunk's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub chunk_type: u8,
    pub entries: u16,
    pub records: u32,
    /// Milliseconds since the epoch, when the chunk was written.
    pub timestamp: i64,
    pub first_offset: u64,
    pub data_len: u32,
}

impl ChunkHeader {
    /// The offset of the chunk's last record (None: it has none).
    pub fn last_offset(&self) -> Option<u64> {
        (self.records > 0).then(|| self.first_offset + self.records as u64 - 1)
    }
}

/// A Deliver's fields after key and version: (subscription id, chunk).
pub fn split_deliver(body: Bytes) -> Result<(u8, Bytes), WireError> {
    let mut r = FrameReader::new(body, "deliver");
    let id = r.u8()?;
    Ok((id, r.rest()))
}

fn read_header(r: &mut FrameReader) -> Result<ChunkHeader, WireError> {
    let magic = r.u8()?;
    if magic >> 4 != 5 {
        return Err(WireError::Malformed {
            what: "chunk",
            detail: format!("magic and version {magic:#04x}, not an osiris chunk (0x5_)"),
        });
    }
    let chunk_type = r.u8()?;
    let entries = r.u16()?;
    let records = r.u32()?;
    let timestamp = r.u64()? as i64;
    let _epoch = r.u64()?;
    let first_offset = r.u64()?;
    let _crc = r.u32()?;
    let data_len = r.u32()?;
    let _trailer_len = r.u32()?;
    let _bloom_and_reserved = r.u32()?;
    Ok(ChunkHeader {
        chunk_type,
        entries,
        records,
        timestamp,
        first_offset,
        data_len,
    })
}

/// The header of `chunk` (a Deliver's chunk).
pub fn header(chunk: &Bytes) -> Result<ChunkHeader, WireError> {
    read_header(&mut FrameReader::new(chunk.clone(), "chunk header"))
}

/// Call `on_record(offset, record)` for every record of `chunk`, in order (none for a chunk
/// that is not user data), and return its header. An error leaves the records before it
/// handed out.
pub fn records(
    chunk: Bytes,
    gunzip: &mut GzipReader,
    mut on_record: impl FnMut(u64, Bytes),
) -> Result<ChunkHeader, WireError> {
    let mut r = FrameReader::new(chunk, "chunk header");
    let h = read_header(&mut r)?;
    if h.chunk_type != USER {
        return Ok(h);
    }
    let mut d = FrameReader::new(r.take(h.data_len as usize)?, "chunk entry");
    let mut offset = h.first_offset;
    for _ in 0..h.entries {
        let first = d.u8()?;
        if first & 0x80 == 0 {
            let size = ((first as u32) << 24) | ((d.u16()? as u32) << 8) | d.u8()? as u32;
            on_record(offset, d.take(size as usize)?);
            offset += 1;
            continue;
        }
        let compression = (first >> 4) & 0x07;
        let count = d.u16()?;
        let uncompressed = d.u32()? as usize;
        let len = d.u32()? as usize;
        let body = d.take(len)?;
        let data = match compression {
            0 => body,
            1 => gunzip.read(&body, uncompressed)?,
            c => {
                return Err(WireError::Malformed {
                    what: "sub-batch",
                    detail: format!(
                        "compressed with {} (code {c}), which brokerbench's wire client cannot \
                         read (it reads none and gzip)",
                        Compression::name_of(c)
                    ),
                })
            }
        };
        let mut s = FrameReader::new(data, "sub-batch record");
        for _ in 0..count {
            let size = s.u32()? as usize;
            on_record(offset, s.take(size)?);
            offset += 1;
        }
    }
    let seen = offset - h.first_offset;
    if seen != h.records as u64 {
        return Err(WireError::Malformed {
            what: "chunk",
            detail: format!(
                "{seen} records in its {} entries, its header says {}",
                h.entries, h.records
            ),
        });
    }
    Ok(h)
}

#[cfg(test)]
pub(super) mod tests {
    use bytes::{BufMut, BytesMut};

    use super::super::subentry::SubEntryEncoder;
    use super::super::{amqp, Compression};
    use super::*;

    /// A chunk as osiris writes it: header, then `entries` (each an entry's bytes).
    pub fn chunk_of(first_offset: u64, entries: &[Vec<u8>], records: u32) -> Bytes {
        let data: Vec<u8> = entries.concat();
        let mut b = BytesMut::new();
        // Magic 5, version 0, as RabbitMQ 4.0.5 writes it (testdata/deliver-chunks.hex).
        b.put_u8(0x50);
        b.put_u8(USER);
        b.put_u16(entries.len() as u16);
        b.put_u32(records);
        b.put_i64(1_700_000_000_000);
        b.put_u64(1);
        b.put_u64(first_offset);
        b.put_u32(0);
        b.put_u32(data.len() as u32);
        b.put_u32(0);
        b.put_u32(0);
        b.put_slice(&data);
        b.freeze()
    }

    /// The entries of a publish frame as the broker stores them: each without its publishing
    /// id (a sub-entry's bytes are those of an osiris sub-batch).
    pub fn stored_entries(frame: &Bytes) -> Vec<Vec<u8>> {
        let mut r = FrameReader::new(frame.slice(4..), "publish");
        let (_key, _version, _publisher) = (r.u16(), r.u16(), r.u8());
        let n = r.u32().expect("count");
        (0..n)
            .map(|_| {
                r.u64().expect("publishing id");
                let head = r.take(1 + 2 + 4).expect("head");
                let len = r.u32().expect("length");
                let body = r.take(len as usize).expect("body");
                [&head[..], &len.to_be_bytes(), &body[..]].concat()
            })
            .collect()
    }

    fn simple(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.put_u32((amqp::header_len(payload.len()) + payload.len()) as u32);
        amqp::put_header(payload.len(), &mut v);
        v.put_slice(payload);
        v
    }

    fn payloads(n: usize, size: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| Bytes::from((0..size).map(|k| (i * 31 + k) as u8).collect::<Vec<u8>>()))
            .collect()
    }

    fn decoded(chunk: Bytes) -> (ChunkHeader, Vec<(u64, Bytes)>) {
        let mut got = Vec::new();
        let h = records(chunk, &mut GzipReader::default(), |o, r| {
            got.push((o, amqp::body(&r).expect("a data section")))
        })
        .expect("decodes");
        (h, got)
    }

    #[test]
    fn sub_entries_come_back_with_one_offset_per_record() {
        for compression in [Compression::None, Compression::Gzip] {
            let sent = payloads(23, 300);
            let mut enc = SubEntryEncoder::new(compression, 10, 1 << 20);
            let e = enc.encode(0, 500, &sent).expect("encodes");
            assert_eq!(e.entries, [0..10, 10..20, 20..23]);
            assert!(e.too_large.is_empty());
            assert_eq!(e.frames.len(), 1);
            // A simple entry before the sub-entries, as another client may write.
            let mut entries = vec![simple(b"first")];
            entries.extend(stored_entries(&e.frames[0]));
            let (h, got) = decoded(chunk_of(1000, &entries, 24));
            assert_eq!((h.entries, h.records, h.last_offset()), (4, 24, Some(1023)));
            assert_eq!(got.len(), 24);
            assert_eq!(got[0], (1000, Bytes::from_static(b"first")));
            for (i, (o, p)) in got[1..].iter().enumerate() {
                assert_eq!((*o, p), (1001 + i as u64, &sent[i]), "{compression:?}");
            }
        }
    }

    #[test]
    fn frames_respect_the_frame_size_and_oversized_payloads_are_left_out() {
        let mut sent = payloads(40, 1000);
        sent[7] = Bytes::from(vec![1u8; 5000]);
        for compression in [Compression::None, Compression::Gzip] {
            let mut enc = SubEntryEncoder::new(compression, 8, 4096);
            let e = enc.encode(3, 0, &sent).expect("encodes");
            assert_eq!(e.too_large, [7], "{compression:?}");
            assert!(e.frames.iter().all(|f| f.len() <= 4096));
            let mut covered: Vec<usize> = e.entries.iter().flat_map(|r| r.clone()).collect();
            covered.push(7);
            covered.sort();
            assert_eq!(covered, (0..40).collect::<Vec<_>>());
            // Every sub-entry is in a frame, in order, and decodes to its payloads.
            let stored: Vec<Vec<u8>> = e.frames.iter().flat_map(stored_entries).collect();
            assert_eq!(stored.len(), e.entries.len());
            let (_, got) = decoded(chunk_of(0, &stored, 39));
            let expected: Vec<&Bytes> = e.entries.iter().flat_map(|r| &sent[r.clone()]).collect();
            assert_eq!(got.iter().map(|(_, p)| p).collect::<Vec<_>>(), expected);
        }
    }

    /// Chunks RabbitMQ 4.0.5 delivered (testdata/deliver-chunks.hex says how they were
    /// captured): plain entries from rabbitmq-stream-client, gzip and uncompressed sub-entries
    /// from the wire publisher.
    #[test]
    fn chunks_captured_from_rabbitmq_4_decode_to_the_harness_payloads() {
        let text = include_str!("testdata/deliver-chunks.hex");
        let chunks: Vec<Bytes> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let bytes: Vec<u8> = (0..l.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&l[i..i + 2], 16).expect("hex"))
                    .collect();
                Bytes::from(bytes)
            })
            .collect();
        assert_eq!(chunks.len(), 5);
        let first_entries: Vec<u8> = chunks.iter().map(|c| c[HEADER_LEN]).collect();
        assert_eq!(first_entries, [0x00, 0x00, 0x00, 0x90, 0x80]);
        let mut gunzip = GzipReader::default();
        let mut got = Vec::new();
        for c in chunks {
            let h = records(c, &mut gunzip, |o, r| got.push((o, r))).expect("decodes");
            assert_eq!(h.chunk_type, USER);
            assert!(h.timestamp > 1_700_000_000_000, "{h:?}");
        }
        assert_eq!(got.len(), 11);
        for (i, (offset, record)) in got.iter().enumerate() {
            assert_eq!(*offset, i as u64);
            let payload = amqp::body(record).expect("a data section");
            let expected = crate::payload::Header {
                run_id: 7,
                producer: 0,
                seq: i as u64,
                intended_ns: 1000 + i as u64,
            }
            .encode(64);
            assert_eq!(payload, expected, "offset {i}");
        }
    }

    #[test]
    fn a_malformed_chunk_is_an_error_not_a_panic() {
        let e = SubEntryEncoder::new(Compression::Gzip, 5, 1 << 20)
            .encode(0, 0, &payloads(5, 100))
            .expect("encodes");
        let entries = stored_entries(&e.frames[0]);
        let good = chunk_of(0, &entries, 5);
        for cut in [0, 10, HEADER_LEN, HEADER_LEN + 5, good.len() - 1] {
            assert!(
                records(good.slice(..cut), &mut GzipReader::default(), |_, _| {}).is_err(),
                "cut at {cut}"
            );
        }
        // The header's record count disagrees with the entries.
        assert!(records(
            chunk_of(0, &entries, 6),
            &mut GzipReader::default(),
            |_, _| {}
        )
        .is_err());
        // A compression the client cannot read.
        let mut zstd = entries[0].clone();
        zstd[0] = 0x80 | (4 << 4);
        let err = records(
            chunk_of(0, &[zstd], 5),
            &mut GzipReader::default(),
            |_, _| {},
        )
        .expect_err("zstd");
        assert!(err.to_string().contains("zstd"), "{err}");
        // A chunk that is not user data has no records.
        let mut tracking = good.to_vec();
        tracking[1] = 1;
        let h = records(Bytes::from(tracking), &mut GzipReader::default(), |_, _| {
            panic!("no records")
        })
        .expect("tracking chunk");
        assert_eq!(h.chunk_type, 1);
    }
}
