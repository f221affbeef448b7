//! The consumer: XREADGROUP (COUNT, BLOCK) in the backend's group on its own connection, and
//! XACK.

use ::redis::cluster_async::ClusterConnection;
use ::redis::Value;
use async_trait::async_trait;
use bytes::Bytes;

use super::{as_text, map_err, RedisStreams, FIELD, GROUP};
use crate::backend::{AckToken, Consumer, Delivery, Destination, OpError};

impl RedisStreams {
    /// `Backend::consumer`: consumer `c<index>` of the group on `dest`.
    pub(super) async fn open_consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        // Each consumer has its own connection: XREADGROUP BLOCK holds the connection it runs on.
        let conn = self.client.get_async_connection().await.map_err(map_err)?;
        Ok(Box::new(RedisConsumer {
            conn,
            key: dest.name.clone(),
            name: format!("c{index}"),
            count: self.settings.read_count,
            block_ms: self.settings.block_ms,
        }))
    }
}

struct RedisConsumer {
    conn: ClusterConnection,
    key: String,
    name: String,
    count: usize,
    block_ms: u64,
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        let v: Value = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.count)
            .arg("BLOCK")
            .arg(self.block_ms)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(&mut self.conn)
            .await
            .map_err(map_err)?;
        parse_xreadgroup(&v, out)
    }

    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError> {
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(&self.key).arg(GROUP);
        let mut any = false;
        for t in tokens {
            if let AckToken::Id(id) = t {
                cmd.arg(id);
                any = true;
            }
        }
        if any {
            let _: Value = cmd.query_async(&mut self.conn).await.map_err(map_err)?;
        }
        Ok(())
    }
}

/// Parse an XREADGROUP reply (RESP2 nested arrays, or a RESP3 map) into deliveries.
fn parse_xreadgroup(v: &Value, out: &mut Vec<Delivery>) -> Result<(), OpError> {
    let streams: Vec<&Value> = match v {
        Value::Nil => return Ok(()),
        Value::Array(items) => items.iter().collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        other => return Err(OpError::Protocol(format!("XREADGROUP answered {other:?}"))),
    };
    for s in streams {
        let entries = match s {
            Value::Array(kv) if kv.len() == 2 => &kv[1],
            Value::Array(_) => continue,
            other => other,
        };
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(parts) = e else { continue };
            let (Some(id), Some(fields)) = (parts.first().and_then(as_text), parts.get(1)) else {
                continue;
            };
            let payload = match fields {
                Value::Array(f) => f
                    .chunks(2)
                    .find(|kv| kv.first().and_then(as_text).as_deref() == Some(FIELD))
                    .and_then(|kv| kv.get(1)),
                Value::Map(m) => m
                    .iter()
                    .find(|(k, _)| as_text(k).as_deref() == Some(FIELD))
                    .map(|(_, v)| v),
                // An entry deleted after delivery (trimmed by MAXLEN) comes back with nil fields.
                _ => None,
            };
            let payload = match payload {
                Some(Value::BulkString(b)) => Bytes::copy_from_slice(b),
                _ => Bytes::new(),
            };
            out.push(Delivery {
                payload,
                redelivered: false,
                token: AckToken::Id(id),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xreadgroup_replies() {
        let entry = |id: &str, p: &[u8]| {
            Value::Array(vec![
                Value::BulkString(id.into()),
                Value::Array(vec![
                    Value::BulkString(b"p".to_vec()),
                    Value::BulkString(p.to_vec()),
                ]),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"{k}".to_vec()),
            Value::Array(vec![entry("1-0", b"a"), entry("1-1", b"bc")]),
        ])]);
        let mut out = Vec::new();
        parse_xreadgroup(&reply, &mut out).expect("parse");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].payload.as_ref(), b"bc");
        assert_eq!(out[1].token, AckToken::Id("1-1".into()));
        out.clear();
        parse_xreadgroup(&Value::Nil, &mut out).expect("nil");
        assert!(out.is_empty());
        assert!(parse_xreadgroup(&Value::Int(3), &mut out).is_err());
    }
}
