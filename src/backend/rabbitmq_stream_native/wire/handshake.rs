//! Opening a connection: peer properties, SASL PLAIN with the backend's user and password,
//! the server's tune answered with the negotiated frame size and heartbeat (the smaller
//! non-zero value of client and server, as `rabbitmq-stream-client` does), then the virtual
//! host. Until the connection is open, frames are read here one by one.

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::connection::{io_err, split, FrameSource, Target};
use super::frame::{code, key, FrameReader, FrameWriter};
use super::WireError;

/// The frame size the client asks for (the server's default, 1 MiB).
const FRAME_MAX: u32 = 1 << 20;

/// Handshake: read frames until the response of `want` (skipping heartbeats).
async fn expect(
    rd: &mut FrameSource,
    addr: &str,
    want: u16,
    what: &'static str,
) -> Result<FrameReader, WireError> {
    loop {
        let (k, r) = split(rd.next().await?)?;
        if k == want {
            return Ok(r.named(what));
        }
        if k == key::CLOSE {
            let mut r = r.named("close");
            r.u32()?;
            let c = r.u16()?;
            return Err(WireError::Closed {
                addr: addr.to_string(),
                reason: format!("the broker closed it during {what}: {} ({c})", r.str()?),
            });
        }
        if k != key::HEARTBEAT {
            return Err(WireError::Malformed {
                what,
                detail: format!("frame {k:#06x} where its response was due"),
            });
        }
    }
}

/// A handshake response's code: Ok, or the request refused.
fn check(mut r: FrameReader, what: &'static str, addr: &str) -> Result<FrameReader, WireError> {
    r.u32()?;
    match r.u16()? {
        code::OK => Ok(r),
        c => Err(WireError::Refused {
            request: what,
            addr: addr.to_string(),
            code: c,
        }),
    }
}

/// The smaller of two non-zero values (0 means "no limit" on either side).
fn negotiate(client: u32, server: u32) -> u32 {
    if client == 0 || server == 0 {
        client.max(server)
    } else {
        client.min(server)
    }
}

pub(super) async fn handshake(
    rd: &mut FrameSource,
    wr: &mut OwnedWriteHalf,
    t: &Target,
) -> Result<(u32, u32), WireError> {
    let addr = t.addr();
    let io = io_err(&addr);
    let mut f = FrameWriter::new(key::PEER_PROPERTIES, 64);
    f.u32(1).map(&[
        ("connection_name", t.name.as_str()),
        ("product", "brokerbench"),
    ]);
    wr.write_all(&f.finish()).await.map_err(&io)?;
    let r = expect(
        rd,
        &addr,
        key::PEER_PROPERTIES | key::RESPONSE,
        "peer properties",
    )
    .await?;
    check(r, "peer properties", &addr)?;

    let mut f = FrameWriter::new(key::SASL_HANDSHAKE, 4);
    f.u32(2);
    wr.write_all(&f.finish()).await.map_err(&io)?;
    let r = expect(
        rd,
        &addr,
        key::SASL_HANDSHAKE | key::RESPONSE,
        "SASL handshake",
    )
    .await?;
    let mut r = check(r, "SASL handshake", &addr)?;
    let mut mechanisms = Vec::new();
    for _ in 0..r.u32()? {
        mechanisms.push(r.str()?);
    }
    if !mechanisms.iter().any(|m| m == "PLAIN") {
        return Err(WireError::Malformed {
            what: "SASL handshake",
            detail: format!("the broker offers {mechanisms:?}, not PLAIN"),
        });
    }

    let mut f = FrameWriter::new(key::SASL_AUTHENTICATE, 16 + t.user.len() + t.password.len());
    let plain = [b"\0", t.user.as_bytes(), b"\0", t.password.as_bytes()].concat();
    f.u32(3).str("PLAIN").bytes(&plain);
    wr.write_all(&f.finish()).await.map_err(&io)?;
    let r = expect(
        rd,
        &addr,
        key::SASL_AUTHENTICATE | key::RESPONSE,
        "SASL authenticate",
    )
    .await?;
    check(r, "SASL authenticate (PLAIN)", &addr)?;

    let mut r = expect(rd, &addr, key::TUNE, "tune").await?;
    let frame_max = negotiate(FRAME_MAX, r.u32()?);
    let heartbeat = negotiate(t.heartbeat_s, r.u32()?);
    let mut f = FrameWriter::new(key::TUNE, 8);
    f.u32(frame_max).u32(heartbeat);
    wr.write_all(&f.finish()).await.map_err(&io)?;

    let mut f = FrameWriter::new(key::OPEN, 8 + t.vhost.len());
    f.u32(4).str(&t.vhost);
    wr.write_all(&f.finish()).await.map_err(&io)?;
    let r = expect(rd, &addr, key::OPEN | key::RESPONSE, "open").await?;
    check(r, "open (virtual host)", &addr)?;
    Ok((frame_max, heartbeat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_the_smaller_non_zero_value() {
        assert_eq!(negotiate(5, 60), 5);
        assert_eq!(negotiate(5, 0), 5);
        assert_eq!(negotiate(0, 60), 60);
        assert_eq!(negotiate(1 << 20, 1 << 19), 1 << 19);
    }
}
