//! The RESP2 wire format of the producer's own connection to a master: XADDs written straight
//! into a reused buffer (the part before the payload is built once per producer), and replies
//! scanned in place, so that a confirmed XADD costs no allocation (its entry id is checked, never
//! copied). Error replies, which are rare, go through redis-rs's parser to be classified as
//! everywhere else.

use ::redis::Value;
use bytes::{BufMut, BytesMut};

/// Writes `XADD <key> [MAXLEN ~ <n>] * <field> <payload>` commands.
#[derive(Debug, Clone)]
pub(super) struct XaddEncoder {
    /// Everything up to the payload's length header.
    prefix: Vec<u8>,
}

fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

impl XaddEncoder {
    pub(super) fn new(key: &str, maxlen: u64, field: &str) -> Self {
        let argc = if maxlen > 0 { 8 } else { 5 };
        let mut prefix = format!("*{argc}\r\n").into_bytes();
        bulk(&mut prefix, b"XADD");
        bulk(&mut prefix, key.as_bytes());
        if maxlen > 0 {
            bulk(&mut prefix, b"MAXLEN");
            bulk(&mut prefix, b"~");
            bulk(&mut prefix, maxlen.to_string().as_bytes());
        }
        bulk(&mut prefix, b"*");
        bulk(&mut prefix, field.as_bytes());
        XaddEncoder { prefix }
    }

    /// Append one XADD of `payload` to `out`.
    pub(super) fn encode(&self, payload: &[u8], out: &mut BytesMut) {
        out.reserve(self.prefix.len() + payload.len() + 24);
        out.put_slice(&self.prefix);
        out.put_u8(b'$');
        put_decimal(out, payload.len() as u64);
        out.put_slice(b"\r\n");
        out.put_slice(payload);
        out.put_slice(b"\r\n");
    }
}

/// Append `WAIT <replicas> <timeout_ms>` to `out`.
pub(super) fn encode_wait(replicas: u32, timeout_ms: u64, out: &mut BytesMut) {
    let mut cmd = b"*3\r\n".to_vec();
    bulk(&mut cmd, b"WAIT");
    bulk(&mut cmd, replicas.to_string().as_bytes());
    bulk(&mut cmd, timeout_ms.to_string().as_bytes());
    out.put_slice(&cmd);
}

fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// One reply, as the producer needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reply {
    /// A bulk or simple string: an XADD's new entry id.
    Text,
    /// A nil bulk string or array.
    Nil,
    Int(i64),
    /// An error reply, parsed by redis-rs (a `Value::ServerError`).
    Error(Value),
    /// Anything else (an array): described, for the error message.
    Other(String),
}

/// Scan the reply at the start of `buf`. `Ok(None)`: not complete yet. `Ok(Some((reply,
/// len)))`: the reply and its length in bytes. `Err`: the bytes are not RESP2 (the connection
/// is out of step and must be dropped).
pub(super) fn scan(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let line = &buf[1..line_end];
    let after_line = line_end + 2;
    match kind {
        b'+' => Ok(Some((Reply::Text, after_line))),
        b':' => Ok(Some((Reply::Int(decimal(line)?), after_line))),
        b'-' => match ::redis::parse_redis_value(&buf[..after_line]) {
            Ok(v @ Value::ServerError(_)) => Ok(Some((Reply::Error(v), after_line))),
            Ok(other) => Err(format!("error reply read as {other:?}")),
            Err(e) => Err(format!("unreadable error reply: {e}")),
        },
        b'$' => {
            let n = decimal(line)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, after_line)));
            }
            let end = after_line + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err("a bulk string not ended by CRLF".into());
            }
            Ok(Some((Reply::Text, end)))
        }
        b'*' => {
            let n = decimal(line)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, after_line)));
            }
            let mut at = after_line;
            for _ in 0..n {
                match scan(&buf[at..])? {
                    Some((_, len)) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Other(format!("an array of {n}")), at)))
        }
        other => Err(format!("unexpected reply type byte {other:#04x}")),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == b'\r') {
        let at = from + i;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

fn decimal(digits: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{:?} is not a number", String::from_utf8_lossy(digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xadds_are_the_commands_redis_rs_would_write() {
        let mut out = BytesMut::new();
        XaddEncoder::new("{k}", 1000, "p").encode(b"abc", &mut out);
        let expected = ::redis::cmd("XADD")
            .arg("{k}")
            .arg("MAXLEN")
            .arg("~")
            .arg(1000)
            .arg("*")
            .arg("p")
            .arg(&b"abc"[..])
            .get_packed_command();
        assert_eq!(&out[..], &expected[..]);
        out.clear();
        XaddEncoder::new("{k}", 0, "p").encode(&[7u8; 1024], &mut out);
        let expected = ::redis::cmd("XADD")
            .arg("{k}")
            .arg("*")
            .arg("p")
            .arg(&[7u8; 1024][..])
            .get_packed_command();
        assert_eq!(&out[..], &expected[..]);
        out.clear();
        encode_wait(1, 500, &mut out);
        assert_eq!(
            &out[..],
            &::redis::cmd("WAIT").arg(1).arg(500).get_packed_command()[..]
        );
    }

    #[test]
    fn replies_are_scanned_in_place_and_may_be_split() {
        let stream = b"$15\r\n1700000000000-0\r\n-MOVED 3999 127.0.0.1:7002\r\n:2\r\n$-1\r\n+OK\r\n*2\r\n$1\r\na\r\n:1\r\n";
        let mut at = 0;
        let mut replies = Vec::new();
        while at < stream.len() {
            let (r, len) = scan(&stream[at..]).expect("valid").expect("complete");
            replies.push(r);
            at += len;
        }
        assert_eq!(replies.len(), 6);
        assert_eq!(replies[0], Reply::Text);
        let Reply::Error(Value::ServerError(e)) = &replies[1] else {
            panic!("not an error: {:?}", replies[1]);
        };
        assert_eq!(e.code(), "MOVED");
        assert_eq!(replies[2], Reply::Int(2));
        assert_eq!(replies[3], Reply::Nil);
        assert_eq!(replies[4], Reply::Text);
        assert!(matches!(replies[5], Reply::Other(_)));
        // Every cut short of a whole reply asks for more bytes.
        for cut in 0..20 {
            assert_eq!(scan(&stream[..cut]).expect("valid prefix"), None, "{cut}");
        }
        assert_eq!(scan(b"*2\r\n$1\r\na\r\n").expect("valid"), None);
        assert!(scan(b"$3\r\nabcde\r\n").is_err());
        assert!(scan(b"?x\r\n").is_err());
        assert!(scan(b":x\r\n").is_err());
    }
}
