//! A growable bitset: one bit per sequence number of a producer, in chunks of 64 Kibit (8 KiB)
//! allocated only where a bit is set. A set that follows the sequence numbers (confirmed,
//! received) costs 1 bit per message and never copies itself to grow; a sparse one (failed,
//! indeterminate) costs a chunk per region it touches.

/// Bits per chunk.
const CHUNK_BITS: u64 = 1 << 16;
const CHUNK_WORDS: usize = (CHUNK_BITS / 64) as usize;

type Chunk = Box<[u64; CHUNK_WORDS]>;

#[derive(Debug, Clone, Default)]
pub struct BitSet {
    chunks: Vec<Option<Chunk>>,
}

fn split(i: u64) -> (usize, usize, u64) {
    let c = (i / CHUNK_BITS) as usize;
    let r = i % CHUNK_BITS;
    (c, (r / 64) as usize, r % 64)
}

impl BitSet {
    /// Set bit `i`; returns whether it was already set.
    #[inline]
    pub fn insert(&mut self, i: u64) -> bool {
        let (c, w, b) = split(i);
        if c >= self.chunks.len() {
            self.chunks.resize_with(c + 1, || None);
        }
        let chunk = self.chunks[c].get_or_insert_with(|| Box::new([0; CHUNK_WORDS]));
        let was = chunk[w] & (1 << b) != 0;
        chunk[w] |= 1 << b;
        was
    }

    #[inline]
    pub fn contains(&self, i: u64) -> bool {
        let (c, w, b) = split(i);
        matches!(self.chunks.get(c), Some(Some(chunk)) if chunk[w] & (1 << b) != 0)
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> u64 {
        let chunks = self.chunks.iter().filter(|c| c.is_some()).count();
        (self.chunks.capacity() * std::mem::size_of::<Option<Chunk>>() + chunks * CHUNK_WORDS * 8)
            as u64
    }

    /// The words of chunk `c` (None: all zero).
    fn words(&self, c: usize) -> Option<&[u64; CHUNK_WORDS]> {
        self.chunks.get(c).and_then(|x| x.as_deref())
    }

    pub fn count(&self) -> u64 {
        self.chunks
            .iter()
            .flatten()
            .map(|c| c.iter().map(|w| w.count_ones() as u64).sum::<u64>())
            .sum()
    }

    /// Bits set in `self` and in `other`.
    pub fn count_and(&self, other: &BitSet) -> u64 {
        (0..self.chunks.len().min(other.chunks.len()))
            .filter_map(|c| Some((self.words(c)?, other.words(c)?)))
            .map(|(a, b)| {
                a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| (x & y).count_ones() as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Bits set at positions >= `n`.
    pub fn count_from(&self, n: u64) -> u64 {
        let (c0, w0, b0) = split(n);
        let mut total = 0;
        for (c, chunk) in self.chunks.iter().enumerate().skip(c0) {
            let Some(chunk) = chunk else { continue };
            for (w, word) in chunk.iter().enumerate() {
                total += match (c == c0).then(|| w.cmp(&w0)) {
                    Some(std::cmp::Ordering::Less) => 0,
                    Some(std::cmp::Ordering::Equal) => (word >> b0 << b0).count_ones() as u64,
                    _ => word.count_ones() as u64,
                };
            }
        }
        total
    }

    /// Iterate over the set bits in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .filter_map(|(c, chunk)| chunk.as_ref().map(|w| (c, w)))
            .flat_map(|(c, words)| {
                words.iter().enumerate().flat_map(move |(wi, &w)| {
                    let base = c as u64 * CHUNK_BITS + wi as u64 * 64;
                    let mut w = w;
                    std::iter::from_fn(move || {
                        if w == 0 {
                            return None;
                        }
                        let b = w.trailing_zeros() as u64;
                        w &= w - 1;
                        Some(base + b)
                    })
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_count_and_iterate() {
        let mut s = BitSet::default();
        assert!(!s.insert(3));
        assert!(s.insert(3));
        s.insert(64);
        s.insert(200);
        assert_eq!(s.count(), 3);
        assert!(s.contains(64) && !s.contains(65) && !s.contains(100_000));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 64, 200]);
        assert_eq!(s.count_from(4), 2);
        assert_eq!(s.count_from(201), 0);
        let mut t = BitSet::default();
        t.insert(64);
        t.insert(5);
        assert_eq!(s.count_and(&t), 1);
    }

    #[test]
    fn across_chunks_and_sparse() {
        let far = 5 * CHUNK_BITS + 7;
        let mut s = BitSet::default();
        for i in [0, CHUNK_BITS - 1, CHUNK_BITS, far] {
            assert!(!s.insert(i));
        }
        assert_eq!(s.count(), 4);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [0, CHUNK_BITS - 1, CHUNK_BITS, far]
        );
        assert!(s.contains(far) && !s.contains(far - 1) && !s.contains(3 * CHUNK_BITS));
        assert_eq!(s.count_from(CHUNK_BITS - 1), 3);
        assert_eq!(s.count_from(CHUNK_BITS + 1), 1);
        assert_eq!(s.count_from(far + 1), 0);
        assert_eq!(s.count_from(100 * CHUNK_BITS), 0);
        // Only the chunks holding a bit take memory: 3 of the 6.
        assert!(s.heap_bytes() < 4 * CHUNK_BITS / 8, "{}", s.heap_bytes());
        let mut t = BitSet::default();
        t.insert(far);
        t.insert(CHUNK_BITS);
        t.insert(2 * CHUNK_BITS);
        assert_eq!(s.count_and(&t), 2);
        assert_eq!(t.count_and(&s), 2);
    }

    /// A dense run of n messages costs n bits, rounded up to whole chunks.
    #[test]
    fn a_dense_set_costs_one_bit_per_message() {
        let mut s = BitSet::default();
        let n = 10 * CHUNK_BITS;
        for i in 0..n {
            s.insert(i);
        }
        assert_eq!(s.count(), n);
        let bytes = s.heap_bytes();
        assert!(bytes <= n / 8 + 1024, "{bytes} bytes for {n} bits");
    }
}
