//! A figure over the repetitions of a row: its median and its range (min to max). Rules compare
//! ranges, not points: a difference inside the spread decides nothing.

/// Median, min and max of one figure over `n` repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// None when there is no value.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `self / other` as a range: (median ratio, lowest, highest) over every pair of values.
    pub fn ratio(&self, other: &Spread) -> Option<Spread> {
        (other.min > 0.0).then(|| Spread {
            median: self.median / other.median,
            min: self.min / other.max,
            max: self.max / other.min,
            n: self.n.min(other.n),
        })
    }

    /// The ranges of `self` and `other` overlap.
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }

    /// "65600 msg/s (59200–66100, 3 runs)" with `unit` after each number and `decimals` digits.
    pub fn show(&self, decimals: usize, unit: &str) -> String {
        if self.n <= 1 {
            format!("{:.decimals$}{unit} (1 run)", self.median)
        } else {
            format!(
                "{:.decimals$}{unit} (median; {:.decimals$}–{:.decimals$} over {} runs)",
                self.median, self.min, self.max, self.n
            )
        }
    }
}

/// The words a verdict's reason ends with about its repetitions.
pub fn runs_note(n: usize) -> String {
    if n <= 1 {
        "one run each, so no spread to judge noise by".to_string()
    } else {
        format!("{n} runs each, compared by their ranges")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_range_and_ratio() {
        let a = Spread::of([3.0, 1.0, 2.0]).expect("values");
        assert_eq!((a.median, a.min, a.max, a.n), (2.0, 1.0, 3.0, 3));
        let b = Spread::of([4.0, 2.0]).expect("values");
        assert_eq!(b.median, 3.0);
        let r = b.ratio(&a).expect("ratio");
        assert_eq!((r.median, r.min, r.max), (1.5, 2.0 / 3.0, 4.0));
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&Spread::of([3.5]).expect("value")));
        assert!(Spread::of([]).is_none());
        assert_eq!(a.show(0, " msg/s"), "2 msg/s (median; 1–3 over 3 runs)");
    }
}
