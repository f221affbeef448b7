//! Gzip members (RFC 1952) for compressed sub-entries, as the Java client writes them with
//! `GZIPOutputStream` and reads them with `GZIPInputStream`: a 10-byte header, raw deflate, then
//! CRC-32 and length (little endian), at deflate's default level (6, as `GZIPOutputStream`).
//! The deflate and inflate states (hundreds of KiB for the compressor) are made once per
//! publisher or consumer and reset per sub-entry.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Crc, Decompress, FlushCompress, FlushDecompress, Status};

use super::WireError;

/// The header the writer puts first: magic, deflate, no flags, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Flags of a member's header that announce optional fields.
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
/// The most bytes a sub-batch may say it inflates to (a malformed length must not allocate
/// gigabytes).
pub const MAX_INFLATED: usize = 256 << 20;

/// The most bytes a gzip member of `len` input bytes takes (deflate's worst case, stored
/// blocks, plus header and trailer, with room to spare).
pub fn bound(len: usize) -> usize {
    len + len / 2048 + 64
}

fn malformed(detail: impl Into<String>) -> WireError {
    WireError::Malformed {
        what: "gzip sub-batch",
        detail: detail.into(),
    }
}

/// Writes gzip members.
pub struct GzipWriter {
    deflate: Compress,
}

impl Default for GzipWriter {
    fn default() -> Self {
        GzipWriter {
            deflate: Compress::new(flate2::Compression::default(), false),
        }
    }
}

impl GzipWriter {
    /// Start a gzip member of `total` input bytes at the end of `out`.
    pub fn member<'a>(&'a mut self, total: usize, out: &'a mut BytesMut) -> Member<'a> {
        self.deflate.reset();
        let start = out.len();
        out.put_slice(&HEADER);
        let at = out.len();
        out.resize(start + bound(total), 0);
        Member {
            deflate: &mut self.deflate,
            out,
            start,
            at,
            crc: Crc::new(),
        }
    }

    /// Append one gzip member of `pieces` (in order, `total` bytes in all) to `out`; returns
    /// its length.
    pub fn write<'a>(
        &mut self,
        pieces: impl Iterator<Item = &'a [u8]>,
        total: usize,
        out: &mut BytesMut,
    ) -> Result<usize, WireError> {
        let mut m = self.member(total, out);
        for p in pieces {
            m.push(p)?;
        }
        m.finish()
    }
}

/// A gzip member being written (room for its worst case is reserved up front).
pub struct Member<'a> {
    deflate: &'a mut Compress,
    out: &'a mut BytesMut,
    /// Where the member starts in `out`, and where its deflate data ends so far.
    start: usize,
    at: usize,
    crc: Crc,
}

fn deflate_err(e: flate2::CompressError) -> WireError {
    malformed(format!("deflate: {e}"))
}

impl Member<'_> {
    /// Compress the next bytes of the input.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), WireError> {
        self.crc.update(piece);
        let mut input = piece;
        while !input.is_empty() {
            let (before_in, before_out) = (self.deflate.total_in(), self.deflate.total_out());
            self.deflate
                .compress(input, &mut self.out[self.at..], FlushCompress::None)
                .map_err(deflate_err)?;
            let took = (self.deflate.total_in() - before_in) as usize;
            let gave = (self.deflate.total_out() - before_out) as usize;
            self.at += gave;
            input = &input[took..];
            if took == 0 && gave == 0 {
                return Err(malformed("deflate made no progress (output full)"));
            }
        }
        Ok(())
    }

    /// End the member (deflate's last block, CRC-32 and length); returns its length.
    pub fn finish(mut self) -> Result<usize, WireError> {
        loop {
            let before_out = self.deflate.total_out();
            let status = self
                .deflate
                .compress(&[], &mut self.out[self.at..], FlushCompress::Finish)
                .map_err(deflate_err)?;
            let gave = (self.deflate.total_out() - before_out) as usize;
            self.at += gave;
            match status {
                Status::StreamEnd => break,
                _ if gave == 0 => return Err(malformed("deflate could not finish (output full)")),
                _ => {}
            }
        }
        self.out.truncate(self.at);
        self.out.put_u32_le(self.crc.sum());
        self.out.put_u32_le(self.crc.amount());
        Ok(self.out.len() - self.start)
    }
}

/// Reads gzip members.
pub struct GzipReader {
    inflate: Decompress,
}

impl Default for GzipReader {
    fn default() -> Self {
        GzipReader {
            inflate: Decompress::new(false),
        }
    }
}

/// Where the deflate data of the member `m` starts, after its header and optional fields.
fn body_start(m: &[u8]) -> Result<usize, WireError> {
    if m.len() < 10 || m[0] != 0x1f || m[1] != 0x8b || m[2] != 8 {
        return Err(malformed("no gzip header (1f 8b 08)"));
    }
    let flags = m[3];
    let mut at = 10;
    let short = || malformed("the header's optional fields run past the data");
    if flags & FEXTRA != 0 {
        let len = u16::from_le_bytes([
            *m.get(at).ok_or_else(short)?,
            *m.get(at + 1).ok_or_else(short)?,
        ]);
        at += 2 + len as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = m
                .get(at..)
                .ok_or_else(short)?
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(short)?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > m.len() {
        return Err(short());
    }
    Ok(at)
}

impl GzipReader {
    /// The `expected` bytes the gzip member `m` holds, checked against its CRC and length.
    pub fn read(&mut self, m: &[u8], expected: usize) -> Result<Bytes, WireError> {
        if expected > MAX_INFLATED {
            return Err(malformed(format!(
                "it says it inflates to {expected} bytes, more than the {MAX_INFLATED} allowed"
            )));
        }
        let start = body_start(m)?;
        self.inflate.reset(false);
        let mut out = vec![0u8; expected];
        let status = self
            .inflate
            .decompress(&m[start..], &mut out, FlushDecompress::Finish)
            .map_err(|e| malformed(format!("inflate: {e}")))?;
        let got = self.inflate.total_out() as usize;
        if status != Status::StreamEnd || got != expected {
            return Err(malformed(format!(
                "it inflates to {} bytes, {expected} were announced",
                if status == Status::StreamEnd {
                    got.to_string()
                } else {
                    format!("more than {got}")
                }
            )));
        }
        let end = start + self.inflate.total_in() as usize;
        let trailer = m
            .get(end..end + 8)
            .ok_or_else(|| malformed("no CRC and length after the deflate data"))?;
        let mut crc = Crc::new();
        crc.update(&out);
        let (sum, len) = (
            u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]),
            u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]),
        );
        if sum != crc.sum() || len != crc.amount() {
            return Err(malformed(format!(
                "CRC-32 {sum:#010x} and length {len} in the trailer, {:#010x} and {} inflated",
                crc.sum(),
                crc.amount()
            )));
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u32 = 17;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                // Half of it compressible, half not.
                if i % 2 == 0 {
                    b'a'
                } else {
                    (x >> 16) as u8
                }
            })
            .collect()
    }

    #[test]
    fn members_round_trip_and_other_readers_agree() {
        let mut w = GzipWriter::default();
        let mut r = GzipReader::default();
        for n in [0, 1, 100, 70_000, 300_000] {
            let data = sample(n);
            let pieces: Vec<&[u8]> = data.chunks(777).collect();
            let mut out = BytesMut::from(&b"prefix"[..]);
            let len = w.write(pieces.into_iter(), n, &mut out).expect("compress");
            assert_eq!(out.len(), 6 + len);
            assert!(len <= bound(n));
            let member = &out[6..];
            assert_eq!(
                r.read(member, n).expect("inflate").as_ref(),
                data.as_slice()
            );
            // flate2's own decoder reads it as gzip.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(member)
                .read_to_end(&mut back)
                .expect("flate2 reads it");
            assert_eq!(back, data);
        }
    }

    #[test]
    fn a_member_with_optional_header_fields_is_read() {
        let data = sample(5000);
        let mut e = flate2::GzBuilder::new()
            .filename("f.bin")
            .comment("from another client")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).expect("in memory");
        let member = e.finish().expect("in memory");
        let mut r = GzipReader::default();
        assert_eq!(
            r.read(&member, data.len()).expect("read").as_ref(),
            data.as_slice()
        );
    }

    #[test]
    fn a_damaged_or_mislabelled_member_is_an_error() {
        let data = sample(4000);
        let mut out = BytesMut::new();
        GzipWriter::default()
            .write(std::iter::once(data.as_slice()), data.len(), &mut out)
            .expect("compress");
        let mut r = GzipReader::default();
        let e = r.read(&out, data.len() + 1).expect_err("length");
        assert!(
            e.to_string().contains("4000 bytes, 4001 were announced"),
            "{e}"
        );
        assert!(r.read(&out, data.len() - 1).is_err());
        let mut bad = out.to_vec();
        let n = bad.len();
        bad[n - 6] ^= 0xff;
        let e = r.read(&bad, data.len()).expect_err("crc");
        assert!(e.to_string().contains("CRC-32"), "{e}");
        assert!(r.read(&out[..n - 4], data.len()).is_err());
        assert!(r.read(b"not gzip at all", 3).is_err());
        assert!(r.read(&out, MAX_INFLATED + 1).is_err());
    }
}
