//! A growable bitset: one bit per sequence number of a producer.

#[derive(Debug, Clone, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Set bit `i`; returns whether it was already set.
    pub fn insert(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        was
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> u64 {
        (self.words.capacity() * 8) as u64
    }

    pub fn contains(&self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        self.words.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// Bits set in `self` and in `other`.
    pub fn count_and(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as u64)
            .sum()
    }

    /// Bits set at positions >= `n`.
    pub fn count_from(&self, n: u64) -> u64 {
        let (w, b) = ((n / 64) as usize, n % 64);
        if w >= self.words.len() {
            return 0;
        }
        let first = (self.words[w] >> b << b).count_ones() as u64;
        first
            + self.words[w + 1..]
                .iter()
                .map(|x| x.count_ones() as u64)
                .sum::<u64>()
    }

    /// Iterate over the set bits in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as u64;
                w &= w - 1;
                Some(wi as u64 * 64 + b)
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
}
