//! A publisher of sub-entries on a connection of its own (to its stream's leader). Each
//! sub-entry gets a publishing id, and the broker confirms (or refuses, with a code) sub-entries,
//! not messages: every message of a sub-entry gets its sub-entry's outcome. The reader task
//! settles confirms against the batches in flight (one lock per confirm frame) and sends each
//! batch one outcome per sub-entry; when the connection ends, the batches' channels close and
//! whatever was not settled is unknown (the broker may have written it).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::connection::{OnPush, Push, Requester};
use super::frame::{code, key, FrameReader, FrameWriter};
use super::subentry::{Encoded, SubEntryEncoder};
use super::{Compression, Connection, Target, WireError};

/// The one publisher of each connection.
const PUBLISHER_ID: u8 = 0;

/// What the broker said about one sub-entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    /// A publish error, with its response code.
    Refused(u16),
}

/// Counters a publisher keeps for its owner, in messages.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Messages the broker confirmed.
    pub confirmed: Arc<AtomicU64>,
    /// Messages the broker confirmed or refused.
    pub answered: Arc<AtomicU64>,
    /// The broker no longer knows the publisher (a publish error saying so, or a metadata update
    /// for its stream): publishing again needs a new one.
    pub cancelled: Arc<AtomicBool>,
}

/// The positions of a batch's sub-entries with their outcomes, as they come.
pub type Outcomes = mpsc::UnboundedReceiver<(Range<usize>, Outcome)>;

/// One batch in flight: its sub-entries (an empty range once settled).
struct Batch {
    first_id: u64,
    entries: Vec<Range<usize>>,
    left: usize,
    tx: mpsc::UnboundedSender<(Range<usize>, Outcome)>,
}

/// The batches in flight, by publishing id.
#[derive(Default)]
struct Registry {
    batches: VecDeque<Batch>,
    /// The connection ended: no outcome will come.
    closed: bool,
}

impl Registry {
    /// No outcome will come: every batch in flight ends (its channel closes).
    fn close(&mut self) {
        self.closed = true;
        self.batches.clear();
    }

    /// Settle sub-entry `id`: the number of messages it held (0: not in flight, or a repeat).
    fn settle(&mut self, id: u64, outcome: Outcome) -> u64 {
        let i = self
            .batches
            .partition_point(|b| b.first_id + b.entries.len() as u64 <= id);
        let Some(b) = self.batches.get_mut(i) else {
            return 0;
        };
        let Some(j) = id.checked_sub(b.first_id).map(|j| j as usize) else {
            return 0;
        };
        let range = std::mem::replace(&mut b.entries[j], 0..0);
        if range.is_empty() {
            return 0;
        }
        b.left -= 1;
        let _ = b.tx.send((range.clone(), outcome));
        if b.left == 0 {
            self.batches.remove(i);
        }
        range.len() as u64
    }
}

/// Settle the publishing ids of a confirm (`error` false) or publish error frame.
fn settle_frame(
    mut r: FrameReader,
    error: bool,
    registry: &Mutex<Registry>,
    counters: &Counters,
) -> Result<(), WireError> {
    let _publisher = r.u8()?;
    let n = r.u32()?;
    let (mut confirmed, mut answered) = (0, 0);
    let mut g = registry.lock();
    for _ in 0..n {
        let id = r.u64()?;
        let outcome = if error {
            let c = r.u16()?;
            if c == code::PUBLISHER_DOES_NOT_EXIST || c == code::STREAM_NOT_AVAILABLE {
                counters.cancelled.store(true, Ordering::Relaxed);
            }
            Outcome::Refused(c)
        } else {
            Outcome::Confirmed
        };
        let messages = g.settle(id, outcome);
        answered += messages;
        if outcome == Outcome::Confirmed {
            confirmed += messages;
        }
    }
    drop(g);
    counters.answered.fetch_add(answered, Ordering::Relaxed);
    counters.confirmed.fetch_add(confirmed, Ordering::Relaxed);
    Ok(())
}

/// A batch handed to the connection.
#[derive(Debug)]
pub struct Published {
    /// The payload positions of each sub-entry.
    pub entries: Vec<Range<usize>>,
    /// Payloads too large for a frame, not sent.
    pub too_large: Vec<usize>,
    /// The sub-entries' outcomes (when tracked): the channel closes once all came, or when
    /// the connection ended.
    pub outcomes: Outcomes,
}

pub struct Publisher {
    conn: Connection,
    registry: Arc<Mutex<Registry>>,
    encoder: SubEntryEncoder,
    next_id: u64,
}

impl Publisher {
    /// Connect to `target` (the leader of `stream`) and declare a publisher on `stream`
    /// (without a reference: no deduplication).
    pub async fn open(
        target: &Target,
        stream: &str,
        compression: Compression,
        sub_entry_size: usize,
        counters: Counters,
    ) -> Result<Publisher, WireError> {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let on_push: OnPush = {
            let registry = registry.clone();
            let stream = stream.to_string();
            Box::new(move |push: Push, _: &Requester| match push {
                Push::Confirm(r) => {
                    let _ = settle_frame(r, false, &registry, &counters);
                }
                Push::PublishError(r) => {
                    let _ = settle_frame(r, true, &registry, &counters);
                }
                // The stream's leader moved (or it went): the broker dropped the publisher, and
                // what it has not confirmed stays unknown, as on a closed connection.
                Push::MetadataUpdate { stream: s, .. } if s == stream => {
                    counters.cancelled.store(true, Ordering::Relaxed);
                    registry.lock().close();
                }
                Push::Closed(_) => registry.lock().close(),
                _ => {}
            })
        };
        let conn = Connection::open(target, on_push).await?;
        conn.requester()
            .request_ok("declare publisher", |id| {
                let mut f = FrameWriter::new(key::DECLARE_PUBLISHER, 16 + stream.len());
                f.u32(id).u8(PUBLISHER_ID).str("").str(stream);
                f.finish()
            })
            .await?;
        let encoder = SubEntryEncoder::new(compression, sub_entry_size, conn.frame_max);
        Ok(Publisher {
            conn,
            registry,
            encoder,
            next_id: 0,
        })
    }

    /// Why the connection ended (None while it is open).
    pub fn closed(&self) -> Option<WireError> {
        self.conn.requester().closed()
    }

    /// The negotiated frame size limit (0: none).
    pub fn frame_max(&self) -> u32 {
        self.conn.frame_max
    }

    /// Publish `payloads` as sub-entries; with `track`, their outcomes come on the returned
    /// channel. Err only when nothing could be encoded.
    pub fn publish(&mut self, payloads: &[Bytes], track: bool) -> Result<Published, WireError> {
        let first_id = self.next_id;
        let Encoded {
            frames,
            entries,
            too_large,
        } = self.encoder.encode(PUBLISHER_ID, first_id, payloads)?;
        self.next_id += entries.len() as u64;
        let (tx, outcomes) = mpsc::unbounded_channel();
        if track && !entries.is_empty() {
            let mut g = self.registry.lock();
            // Registered before the frames go out, so that no confirm can come first. On a
            // closed connection the sender is dropped: the batch ends unknown at once.
            if !g.closed {
                g.batches.push_back(Batch {
                    first_id,
                    entries: entries.clone(),
                    left: entries.len(),
                    tx,
                });
            }
        }
        // A frame the connection cannot take any more is settled by its end (the registry is
        // cleared when it closes).
        for f in frames {
            if self.conn.requester().send(f).is_err() {
                break;
            }
        }
        Ok(Published {
            entries,
            too_large,
            outcomes,
        })
    }

    /// Delete the publisher and close the connection (best effort, each step bounded).
    pub async fn close(self) {
        if self.closed().is_none() {
            let _ = self
                .conn
                .requester()
                .request_ok("delete publisher", |id| {
                    let mut f = FrameWriter::new(key::DELETE_PUBLISHER, 8);
                    f.u32(id).u8(PUBLISHER_ID);
                    f.finish()
                })
                .await;
        }
        self.conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(reg: &mut Registry, first_id: u64, entries: Vec<Range<usize>>) -> Outcomes {
        let (tx, rx) = mpsc::unbounded_channel();
        reg.batches.push_back(Batch {
            first_id,
            left: entries.len(),
            entries,
            tx,
        });
        rx
    }

    fn frame(error: bool, ids: &[u64]) -> FrameReader {
        let mut f = FrameWriter::new(0, 64);
        f.u8(PUBLISHER_ID).u32(ids.len() as u32);
        for id in ids {
            f.u64(*id);
            if error {
                f.u16(code::PUBLISHER_DOES_NOT_EXIST);
            }
        }
        FrameReader::new(f.finish().slice(8..), "test")
    }

    #[test]
    fn each_message_of_a_sub_entry_gets_its_outcome() {
        let reg = Mutex::new(Registry::default());
        let counters = Counters::default();
        let mut a = batch(&mut reg.lock(), 10, vec![0..100, 100..200, 200..256]);
        let one_entry: Vec<Range<usize>> = std::iter::once(0..3).collect();
        let mut b = batch(&mut reg.lock(), 13, one_entry);
        settle_frame(frame(false, &[11, 13, 11, 99]), false, &reg, &counters).expect("frame");
        assert_eq!(a.try_recv().ok(), Some((100..200, Outcome::Confirmed)));
        assert_eq!(b.try_recv().ok(), Some((0..3, Outcome::Confirmed)));
        assert!(
            a.try_recv().is_err(),
            "a repeat and an unknown id settle nothing"
        );
        // b is complete: it left the registry, and its channel closed.
        assert_eq!(reg.lock().batches.len(), 1);
        assert!(matches!(
            b.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        settle_frame(frame(true, &[10]), true, &reg, &counters).expect("frame");
        assert_eq!(
            a.try_recv().ok(),
            Some((0..100, Outcome::Refused(code::PUBLISHER_DOES_NOT_EXIST)))
        );
        assert!(counters.cancelled.load(Ordering::Relaxed));
        assert_eq!(counters.confirmed.load(Ordering::Relaxed), 103);
        assert_eq!(counters.answered.load(Ordering::Relaxed), 203);
        // The connection ends: the rest of `a` never comes, its channel closes.
        reg.lock().batches.clear();
        assert!(matches!(
            a.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn a_short_confirm_frame_is_an_error() {
        let reg = Mutex::new(Registry::default());
        let r = FrameReader::new(
            Bytes::from_static(&[0, 0, 0, 0, 2, 0, 0]),
            "publish confirm",
        );
        assert!(settle_frame(r, false, &reg, &Counters::default()).is_err());
    }
}
