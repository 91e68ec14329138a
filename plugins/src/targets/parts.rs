//! How an object of unknown length is cut into multipart-upload parts.
//!
//! The stream's length is not known in advance, and a target allows at most
//! `max_parts` parts (S3: 10,000; some providers 1,000), each but the last at least
//! 5 MiB. Fixed parts would cap an object at `part_size * max_parts`; so the part
//! size doubles at fixed steps:
//!
//! ```text
//! step  = max(1, max_parts / 10)                       parts per size
//! size(n) = min(part_size * 2^((n - 1) / step), 5 GiB) for part n = 1, 2, ...
//! ```
//!
//! The first `step` parts have `part_size`, the next `step` twice that, and so on: ten
//! sizes when `max_parts` is a multiple of ten. The largest object that fits in
//! `max_parts` parts is the sum of all sizes, about `part_size * step * (2^10 - 1)`,
//! i.e. roughly 100 x `part_size * max_parts` (less where the 5 GiB part cap bites):
//! 16 MiB and 10,000 parts take objects beyond S3's 5 TiB limit; 16 MiB and 1,000
//! parts take 1.5 TiB. Memory per upload is the current part size times
//! (parts in flight + 1), and only grows once an object is past
//! `part_size * step` bytes (15.6 GiB with the defaults).

/// S3's largest part.
const MAX_PART: u64 = 5 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub part_size: u64,
    pub max_parts: u32,
    pub parts_in_flight: usize,
}

impl PartPlan {
    /// Parts per size step.
    pub fn step(&self) -> u32 {
        (self.max_parts / 10).max(1)
    }

    /// Size of part `n` (1-based), or `None` past `max_parts`.
    pub fn size_of(&self, n: u32) -> Option<u64> {
        if n == 0 || n > self.max_parts {
            return None;
        }
        let doublings = (n - 1) / self.step();
        let size = if doublings >= 63 {
            MAX_PART
        } else {
            self.part_size.saturating_mul(1u64 << doublings)
        };
        Some(size.min(MAX_PART.max(self.part_size)))
    }

    /// The largest object this plan can upload.
    pub fn capacity(&self) -> u64 {
        (1..=self.max_parts)
            .filter_map(|n| self.size_of(n))
            .fold(0u64, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn plan(part_size: u64, max_parts: u32) -> PartPlan {
        PartPlan {
            part_size,
            max_parts,
            parts_in_flight: 2,
        }
    }

    #[test]
    fn sizes_double_every_step() {
        let p = plan(16 * MIB, 10_000);
        assert_eq!(p.step(), 1000);
        assert_eq!(p.size_of(1), Some(16 * MIB));
        assert_eq!(p.size_of(1000), Some(16 * MIB));
        assert_eq!(p.size_of(1001), Some(32 * MIB));
        assert_eq!(p.size_of(2001), Some(64 * MIB));
        assert_eq!(p.size_of(10_000), Some(5 << 30));
        assert_eq!(p.size_of(10_001), None);
        assert_eq!(p.size_of(0), None);
    }

    #[test]
    fn capacity_is_about_a_hundred_times_fixed_parts() {
        // 1,000 fixed parts of 5 MiB would stop at 4.9 GiB.
        let p = plan(5 * MIB, 1000);
        assert_eq!(p.capacity(), 100 * 5 * MIB * 1023);
        // Where parts reach 5 GiB they stay there.
        let capped = plan(16 * MIB, 1000);
        assert_eq!(capped.capacity(), 100 * 16 * MIB * 511 + 100 * (5 << 30));
        // The defaults reach past S3's 5 TiB object limit.
        assert!(plan(16 * MIB, 10_000).capacity() > 5 << 40);
        // Small limits still grow: 5, 10, 20, 40 MiB.
        assert_eq!(plan(5 * MIB, 4).capacity(), 75 * MIB);
    }

    #[test]
    fn sizes_never_shrink_and_respect_the_cap() {
        for (size, max) in [
            (5 * MIB, 1),
            (5 * MIB, 7),
            (16 * MIB, 999),
            (5 << 30, 10_000),
        ] {
            let p = plan(size, max);
            let mut last = 0;
            for n in 1..=max {
                let s = p.size_of(n).expect("within max_parts");
                assert!(s >= last && s >= size.min(5 << 30) && s <= (5 << 30).max(size));
                last = s;
            }
        }
    }
}
