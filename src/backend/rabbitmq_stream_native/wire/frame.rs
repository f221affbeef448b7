//! Stream protocol frames: the command keys and response codes the wire client uses, writing a
//! frame, and reading one field by field. A frame is `uint32 size` then `uint16 key`, `uint16
//! version` and the command's fields, big endian; strings are `int16 length` + bytes, byte
//! arrays `int32 length` + bytes, arrays `int32 count` + items. A field the frame is too short
//! for is a `WireError::Short`, never a panic; a read of bytes is a `Bytes` slice of the frame
//! (no copy).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;

/// Command keys (a response has the same key with the top bit set, `RESPONSE`).
pub mod key {
    pub const DECLARE_PUBLISHER: u16 = 0x0001;
    pub const PUBLISH: u16 = 0x0002;
    pub const PUBLISH_CONFIRM: u16 = 0x0003;
    pub const PUBLISH_ERROR: u16 = 0x0004;
    pub const DELETE_PUBLISHER: u16 = 0x0006;
    pub const SUBSCRIBE: u16 = 0x0007;
    pub const DELIVER: u16 = 0x0008;
    pub const CREDIT: u16 = 0x0009;
    pub const STORE_OFFSET: u16 = 0x000a;
    pub const QUERY_OFFSET: u16 = 0x000b;
    pub const UNSUBSCRIBE: u16 = 0x000c;
    pub const METADATA_UPDATE: u16 = 0x0010;
    pub const PEER_PROPERTIES: u16 = 0x0011;
    pub const SASL_HANDSHAKE: u16 = 0x0012;
    pub const SASL_AUTHENTICATE: u16 = 0x0013;
    pub const TUNE: u16 = 0x0014;
    pub const OPEN: u16 = 0x0015;
    pub const CLOSE: u16 = 0x0016;
    pub const HEARTBEAT: u16 = 0x0017;
    pub const CONSUMER_UPDATE: u16 = 0x001a;
    /// The top bit of a response's key.
    pub const RESPONSE: u16 = 0x8000;
}

/// The protocol version of every command the client sends.
pub const VERSION_1: u16 = 1;

/// Response codes.
pub mod code {
    pub const OK: u16 = 0x01;
    pub const STREAM_DOES_NOT_EXIST: u16 = 0x02;
    pub const STREAM_NOT_AVAILABLE: u16 = 0x06;
    pub const PUBLISHER_DOES_NOT_EXIST: u16 = 0x12;
    pub const OFFSET_NOT_FOUND: u16 = 0x13;
}

/// A response code's name, as the protocol reference gives it.
pub fn code_name(code: u16) -> &'static str {
    match code {
        0x01 => "ok",
        0x02 => "stream does not exist",
        0x03 => "subscription id already exists",
        0x04 => "subscription id does not exist",
        0x05 => "stream already exists",
        0x06 => "stream not available",
        0x07 => "SASL mechanism not supported",
        0x08 => "authentication failure",
        0x09 => "SASL error",
        0x0a => "SASL challenge",
        0x0b => "SASL authentication failure loopback",
        0x0c => "virtual host access failure",
        0x0d => "unknown frame",
        0x0e => "frame too large",
        0x0f => "internal error",
        0x10 => "access refused",
        0x11 => "precondition failed",
        0x12 => "publisher does not exist",
        0x13 => "no offset",
        _ => "unknown response code",
    }
}

/// A frame being written; `finish` fills in its size.
pub struct FrameWriter(BytesMut);

impl FrameWriter {
    /// A frame of command `key`, with room for about `capacity` bytes of fields.
    pub fn new(key: u16, capacity: usize) -> FrameWriter {
        let mut b = BytesMut::with_capacity(8 + capacity);
        b.put_u32(0);
        b.put_u16(key);
        b.put_u16(VERSION_1);
        FrameWriter(b)
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.put_u8(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.put_u16(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.put_u32(v);
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put_u64(v);
        self
    }

    /// A string: int16 length and its bytes (cut at 32767 bytes, so the frame stays well formed;
    /// the broker refuses names that long anyway).
    pub fn str(&mut self, s: &str) -> &mut Self {
        let b = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
        self.0.put_u16(b.len() as u16);
        self.0.put_slice(b);
        self
    }

    /// A byte array: int32 length and the bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.put_u32(b.len() as u32);
        self.0.put_slice(b);
        self
    }

    /// Bytes as they are (no length).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.put_slice(b);
        self
    }

    /// A `[key, value]` map of strings: int32 count then the pairs.
    pub fn map(&mut self, pairs: &[(&str, &str)]) -> &mut Self {
        self.0.put_u32(pairs.len() as u32);
        for (k, v) in pairs {
            self.str(k).str(v);
        }
        self
    }

    /// The bytes written so far, size field included.
    pub fn written(&self) -> usize {
        self.0.len()
    }

    /// Overwrite the uint32 written at byte `at` (a count or size known only later).
    pub fn set_u32(&mut self, at: usize, v: u32) {
        if let Some(b) = self.0.get_mut(at..at + 4) {
            b.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// The buffer, to append fields written elsewhere (a gzip member).
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.0
    }

    /// The frame, its size field set.
    pub fn finish(mut self) -> Bytes {
        let size = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&size.to_be_bytes());
        self.0.freeze()
    }
}

/// A received frame's fields, read in order.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: Bytes,
    /// What the frame is, for errors.
    what: &'static str,
}

impl FrameReader {
    /// The fields in `buf` (a frame without its size), named `what` in errors.
    pub fn new(buf: Bytes, what: &'static str) -> FrameReader {
        FrameReader { buf, what }
    }

    /// Rename the frame (once its key is known).
    pub fn named(mut self, what: &'static str) -> FrameReader {
        self.what = what;
        self
    }

    fn need(&self, n: usize) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            Err(WireError::Short {
                what: self.what,
                needed: n,
                left: self.buf.remaining(),
            })
        } else {
            Ok(())
        }
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    /// The next `n` bytes, as a slice of the frame.
    pub fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// A string (int16 length; -1, null, reads as "").
    pub fn str(&mut self) -> Result<String, WireError> {
        let len = self.u16()? as i16;
        if len < 0 {
            return Ok(String::new());
        }
        let b = self.take(len as usize)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    pub fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    /// What is left of the frame.
    pub fn rest(self) -> Bytes {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_its_size_key_version_and_fields() {
        let mut w = FrameWriter::new(key::QUERY_OFFSET, 32);
        w.u32(7).str("brokerbench").str("s-0");
        let f = w.finish();
        assert_eq!(&f[..4], &((f.len() - 4) as u32).to_be_bytes());
        let mut r = FrameReader::new(f.slice(4..), "query offset");
        assert_eq!(r.u16().expect("key"), key::QUERY_OFFSET);
        assert_eq!(r.u16().expect("version"), VERSION_1);
        assert_eq!(r.u32().expect("correlation"), 7);
        assert_eq!(r.str().expect("reference"), "brokerbench");
        assert_eq!(r.str().expect("stream"), "s-0");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn a_short_frame_is_an_error_naming_what_was_missing() {
        let mut r = FrameReader::new(Bytes::from_static(&[0, 5, b'a']), "metadata update");
        let e = r.str().expect_err("5 bytes announced, 1 there");
        assert_eq!(
            e.to_string(),
            "malformed metadata update frame: 5 bytes needed, 1 left"
        );
        let mut r = FrameReader::new(Bytes::from_static(&[0xff, 0xff]), "x");
        assert_eq!(r.str().expect("null string"), "");
        assert!(r.u8().is_err());
    }
}
