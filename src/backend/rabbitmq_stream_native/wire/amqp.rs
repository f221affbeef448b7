//! A record's AMQP 1.0 message: the wire client publishes the harness's payload as the one data
//! section of a message (`0x00 0x53 0x75`, then a binary: `0xa0` + uint8 length up to 255 bytes,
//! `0xb0` + uint32 length above), as `rabbitmq-stream-client` does for a body-only message. A
//! consumer takes the first data section of each record, as a slice of it; sections before it
//! (header, annotations, properties) are skipped by their encoded sizes. A record that is no
//! such message yields None (the caller hands it on whole, and the harness counts it as
//! foreign).

use bytes::{BufMut, Bytes};

/// The descriptor code of a data section.
const DATA: u8 = 0x75;

/// The bytes before a payload of `len` bytes: how many.
pub fn header_len(len: usize) -> usize {
    if len <= u8::MAX as usize {
        5
    } else {
        8
    }
}

/// Write the bytes before a payload of `len` bytes.
pub fn put_header(len: usize, out: &mut impl BufMut) {
    out.put_slice(&[0x00, 0x53, DATA]);
    if len <= u8::MAX as usize {
        out.put_u8(0xa0);
        out.put_u8(len as u8);
    } else {
        out.put_u8(0xb0);
        out.put_u32(len as u32);
    }
}

/// The bytes before a payload of `len` bytes, in a small array (and how many of them count).
pub fn header(len: usize) -> ([u8; 8], usize) {
    let mut h = [0u8; 8];
    let mut w = &mut h[..];
    put_header(len, &mut w);
    (h, header_len(len))
}

/// The first data section of `record`, as a slice of it.
pub fn body(record: &Bytes) -> Option<Bytes> {
    let b = record.as_ref();
    let mut at = 0;
    while at < b.len() {
        // Every section is a described type: 0x00, a descriptor, a value.
        if b[at] != 0x00 {
            return None;
        }
        at += 1;
        let (code, after) = descriptor(b, at)?;
        at = after;
        let (value, after) = value(b, at)?;
        if code == Some(DATA) {
            return (*b.get(at)? == 0xa0 || b[at] == 0xb0).then(|| record.slice(value));
        }
        at = after;
    }
    None
}

/// A descriptor at `at`: (its numeric code if it is a small one, where it ends).
fn descriptor(b: &[u8], at: usize) -> Option<(Option<u8>, usize)> {
    match *b.get(at)? {
        0x53 => Some((Some(*b.get(at + 1)?), at + 2)),
        0x44 => Some((Some(0), at + 1)),
        0x80 => {
            let v = u64::from_be_bytes(b.get(at + 1..at + 9)?.try_into().ok()?);
            Some((u8::try_from(v).ok(), at + 9))
        }
        // A symbolic descriptor: not a section this client knows.
        _ => {
            let (_, end) = value(b, at)?;
            Some((None, end))
        }
    }
}

/// The value at `at`: (the range of its content, where it ends).
fn value(b: &[u8], at: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let constructor = *b.get(at)?;
    let fixed = |n: usize| Some((at + 1..at + 1 + n, at + 1 + n));
    let sized = |width: usize| {
        let len = match width {
            1 => *b.get(at + 1)? as usize,
            _ => u32::from_be_bytes(b.get(at + 1..at + 5)?.try_into().ok()?) as usize,
        };
        let start = at + 1 + width;
        let end = start.checked_add(len)?;
        (end <= b.len()).then_some((start..end, end))
    };
    match constructor {
        // null, true, false, uint0, ulong0, list0
        0x40..=0x45 => fixed(0),
        0x50..=0x56 => fixed(1),
        0x60 | 0x61 => fixed(2),
        0x70..=0x74 => fixed(4),
        0x80..=0x84 => fixed(8),
        0x94 | 0x98 => fixed(16),
        // binary, string, symbol; lists, maps, arrays: size, then content
        0xa0 | 0xa1 | 0xa3 | 0xc0 | 0xc1 | 0xe0 => sized(1),
        0xb0 | 0xb1 | 0xb3 | 0xd0 | 0xd1 | 0xf0 => sized(4),
        _ => None,
    }
    .filter(|(_, end)| *end <= b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Bytes {
        let mut v = Vec::new();
        put_header(payload.len(), &mut v);
        v.extend_from_slice(payload);
        Bytes::from(v)
    }

    #[test]
    fn a_payload_comes_back_from_its_message_as_a_slice() {
        for len in [0, 40, 255, 256, 1024, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let m = message(&payload);
            assert_eq!(m.len(), header_len(len) + len);
            let (h, n) = header(len);
            assert_eq!(&m[..n], &h[..n]);
            let body = body(&m).expect("a data section");
            assert_eq!(body.as_ref(), payload.as_slice(), "{len}");
            // A slice of the record, not a copy.
            assert_eq!(body.as_ptr(), m[header_len(len)..].as_ptr());
        }
    }

    #[test]
    fn sections_before_the_data_are_skipped() {
        // A header section (list8 of one boolean), message annotations (map8 with one
        // symbol -> string pair), properties (list32, empty), then the data.
        let mut v = vec![0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0x41];
        v.extend_from_slice(&[
            0x00, 0x53, 0x72, 0xc1, 0x08, 0x02, 0xa3, 0x01, b'k', 0xa1, 0x02, b'v', b'w',
        ]);
        v.extend_from_slice(&[0x00, 0x53, 0x73, 0xd0, 0, 0, 0, 4, 0, 0, 0, 0]);
        put_header(3, &mut v);
        v.extend_from_slice(b"abc");
        assert_eq!(body(&Bytes::from(v)).as_deref(), Some(&b"abc"[..]));
    }

    #[test]
    fn what_is_no_such_message_gives_none() {
        for bad in [
            &b""[..],
            &b"plain bytes"[..],
            &[0x00, 0x53, 0x77, 0xa1, 0x01, b'x'][..],
            &[0x00, 0x53, 0x75, 0xb0, 0, 0, 1, 0, 1, 2][..],
            &[0x00, 0x53][..],
        ] {
            assert_eq!(body(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }
}
