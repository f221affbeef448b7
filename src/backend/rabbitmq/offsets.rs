//! Where a stream consumer starts: the backend remembers, per (queue, consumer index), the
//! highest `x-stream-offset` it handed out, so that a consumer reopened after a failure goes on
//! after it instead of reading the whole stream again from "first" (every message a duplicate).

use std::collections::HashMap;
use std::sync::Arc;

use lapin::types::{AMQPValue, FieldTable};
use parking_lot::Mutex;

use super::declare::long_string;

/// The `basic.consume` argument that says where to start, and the delivery header that says
/// where a message sits in the stream.
pub(super) const STREAM_OFFSET: &str = "x-stream-offset";

/// (queue name, consumer index) -> the highest stream offset handed out to the harness. Shared
/// by the backend and its stream consumers.
#[derive(Debug, Clone, Default)]
pub(super) struct StreamOffsets(Arc<Mutex<HashMap<(String, usize), i64>>>);

impl StreamOffsets {
    /// The `x-stream-offset` argument for consumer `index` on `queue`: "first" on its first
    /// open, else the offset after the last one it handed out (a long-long integer).
    pub fn start_argument(&self, queue: &str, index: usize) -> AMQPValue {
        match self.0.lock().get(&(queue.to_string(), index)) {
            Some(last) => AMQPValue::LongLongInt(last.saturating_add(1)),
            None => long_string("first"),
        }
    }

    /// Remember that the consumer `key` handed out `offset` (a lower one changes nothing).
    pub fn record(&self, key: &(String, usize), offset: i64) {
        let mut map = self.0.lock();
        match map.get_mut(key) {
            Some(last) => *last = (*last).max(offset),
            None => {
                map.insert(key.clone(), offset);
            }
        }
    }

    /// The highest offset each consumer of `queue` handed out (consumers that handed out
    /// nothing are not listed).
    pub fn positions(&self, queue: &str) -> Vec<i64> {
        self.0
            .lock()
            .iter()
            .filter(|((q, _), _)| q == queue)
            .map(|(_, o)| *o)
            .collect()
    }

    /// Forget every consumer's offset on `queue` (declared anew, or deleted).
    pub fn forget(&self, queue: &str) {
        self.0.lock().retain(|(q, _), _| q != queue);
    }
}

/// A stream delivery's offset, from its `x-stream-offset` header: an integer (RabbitMQ sends a
/// signed 64-bit "long"). None when the header is missing or not an integer.
pub(super) fn stream_offset(headers: Option<&FieldTable>) -> Option<i64> {
    match headers?.inner().get(STREAM_OFFSET)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::ShortString;

    use super::*;

    fn headers(value: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(ShortString::from("x-other"), long_string("ignored"));
        t.insert(ShortString::from(STREAM_OFFSET), value);
        t
    }

    #[test]
    fn offsets_come_from_the_header() {
        let offset = |v| stream_offset(Some(&headers(v)));
        assert_eq!(offset(AMQPValue::LongLongInt(1 << 40)), Some(1 << 40));
        assert_eq!(offset(AMQPValue::LongInt(7)), Some(7));
        assert_eq!(offset(AMQPValue::LongUInt(8)), Some(8));
        assert_eq!(offset(AMQPValue::ShortShortUInt(0)), Some(0));
        assert_eq!(offset(AMQPValue::Timestamp(u64::MAX)), None);
        assert_eq!(offset(long_string("12")), None);
        let mut without = FieldTable::default();
        without.insert(ShortString::from("x-other"), AMQPValue::LongLongInt(3));
        assert_eq!(stream_offset(Some(&without)), None);
        assert_eq!(stream_offset(None), None);
    }

    #[test]
    fn a_reopened_consumer_starts_after_what_it_handed_out() {
        let offsets = StreamOffsets::default();
        assert_eq!(offsets.start_argument("q", 0), long_string("first"));
        let key = ("q".to_string(), 0);
        offsets.record(&key, 41);
        offsets.record(&key, 12);
        assert_eq!(offsets.start_argument("q", 0), AMQPValue::LongLongInt(42));
        // Another consumer index, or another queue, starts from the first message.
        assert_eq!(offsets.start_argument("q", 1), long_string("first"));
        assert_eq!(offsets.start_argument("r", 0), long_string("first"));
        assert_eq!(offsets.positions("q"), vec![41]);
        assert!(offsets.positions("r").is_empty());
        offsets.forget("q");
        assert_eq!(offsets.start_argument("q", 0), long_string("first"));
    }
}
