//! Unique random Korean mobile numbers for sign-ups.
//!
//! Numbers are `010-XXXX-XXXX` with the eight subscriber digits in `20000000..=99999999`
//! (010-0… and 010-1… are not assigned to subscribers, so a strict validator may reject them).
//! Uniqueness within a run without a set: the n-th number is `BASE + (a·n + b) mod SPACE`, an
//! affine permutation of the space with a random multiplier `a` coprime to `SPACE` and a random
//! offset `b`, so the first `SPACE` draws never repeat and each run starts somewhere else.
//! Numbers may still collide with members left by an earlier run against the same database;
//! callers treat `ALREADY_EXISTS` on a seed sign-up as "draw another".

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

/// Size of the subscriber-number space (20000000..=99999999).
pub const SPACE: u64 = 80_000_000;
/// Smallest subscriber number.
const BASE: u64 = 20_000_000;

/// Thread-safe generator of distinct phone numbers.
#[derive(Debug)]
pub struct PhoneGen {
    multiplier: u64,
    offset: u64,
    next: AtomicU64,
}

impl PhoneGen {
    /// A generator with a random permutation.
    pub fn new(rng: &mut impl Rng) -> Self {
        // Bounded: about 40 % of candidates are coprime to 2^10·5^7 (odd and not a multiple of 5).
        let mut multiplier = 1;
        for _ in 0..1_000 {
            let candidate = rng.gen_range(1_000_001..SPACE);
            if is_coprime_to_space(candidate) {
                multiplier = candidate;
                break;
            }
        }
        Self::with_params(multiplier, rng.gen_range(0..SPACE))
    }

    /// A generator with a given permutation (tests and reproducible runs).
    pub fn with_params(multiplier: u64, offset: u64) -> Self {
        let multiplier = if is_coprime_to_space(multiplier) {
            multiplier
        } else {
            1
        };
        Self {
            multiplier,
            offset: offset % SPACE,
            next: AtomicU64::new(0),
        }
    }

    /// The next unused number as `010-XXXX-XXXX`, or `None` once all `SPACE` are used.
    pub fn next_phone(&self) -> Option<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < SPACE).then(|| format_phone(self.subscriber(n)))
    }

    /// The n-th subscriber number; `multiplier, n < SPACE`, so the product fits in `u64`.
    fn subscriber(&self, n: u64) -> u64 {
        BASE + (self.multiplier * n + self.offset) % SPACE
    }
}

/// `SPACE = 2^10 · 5^7`: coprime means neither even nor a multiple of 5.
fn is_coprime_to_space(x: u64) -> bool {
    !x.is_multiple_of(2) && !x.is_multiple_of(5) && x < SPACE
}

/// `12345678` → `010-1234-5678`.
fn format_phone(subscriber: u64) -> String {
    format!("010-{:04}-{:04}", subscriber / 10_000, subscriber % 10_000)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn numbers_are_well_formed() {
        let generator = PhoneGen::new(&mut StdRng::seed_from_u64(7));
        for _ in 0..1_000 {
            let phone = generator.next_phone().expect("space left");
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(phone.len(), 13, "{phone}");
            assert!(phone.starts_with("010-"), "{phone}");
            assert_eq!(digits.len(), 11, "{phone}");
            assert!(digits.as_bytes()[3] >= b'2', "{phone}");
        }
    }

    #[test]
    fn numbers_are_unique() {
        let generator = PhoneGen::new(&mut StdRng::seed_from_u64(42));
        let mut seen = HashSet::new();
        for _ in 0..200_000 {
            assert!(seen.insert(generator.next_phone().expect("space left")));
        }
    }

    #[test]
    fn whole_space_is_a_permutation() {
        // Same arithmetic on a space small enough to enumerate: 2^3·5^2 = 200, multiplier 37.
        let space = 200_u64;
        let seen: HashSet<u64> = (0..space).map(|n| (37 * n + 11) % space).collect();
        assert_eq!(seen.len() as u64, space);
    }

    #[test]
    fn extremes_stay_in_range() {
        let generator = PhoneGen::with_params(SPACE - 1, SPACE - 1);
        assert_eq!(generator.subscriber(0), BASE + SPACE - 1);
        assert!(generator.subscriber(SPACE - 1) < BASE + SPACE);
        assert_eq!(format_phone(99_999_999), "010-9999-9999");
        assert_eq!(format_phone(20_000_000), "010-2000-0000");
    }

    #[test]
    fn bad_multiplier_falls_back_to_identity() {
        let generator = PhoneGen::with_params(10, 0);
        assert_eq!(generator.next_phone().as_deref(), Some("010-2000-0000"));
        assert_eq!(generator.next_phone().as_deref(), Some("010-2000-0001"));
    }

    #[test]
    fn concurrent_draws_do_not_repeat() {
        let generator = std::sync::Arc::new(PhoneGen::new(&mut StdRng::seed_from_u64(3)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let generator = generator.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .filter_map(|_| generator.next_phone())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for phone in handle.join().expect("thread") {
                assert!(seen.insert(phone));
            }
        }
        assert_eq!(seen.len(), 40_000);
    }
}
