//! Membership cards: 16-digit numbers whose last digit is a Luhn check digit (so a mistyped
//! number at the till is caught before any lookup), their types and life cycle.
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const CARD_NUMBER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardType {
    Mobile,
    Physical,
}

impl CardType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mobile => "MOBILE",
            Self::Physical => "PHYSICAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MOBILE" => Some(Self::Mobile),
            "PHYSICAL" => Some(Self::Physical),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardStatus {
    Active,
    Lost,
    Replaced,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Lost => "LOST",
            Self::Replaced => "REPLACED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "LOST" => Some(Self::Lost),
            "REPLACED" => Some(Self::Replaced),
            _ => None,
        }
    }

    /// The status the old card takes when a replacement is issued: a lost card stays lost
    /// (the record of the loss matters), an active one becomes replaced.
    pub fn after_replacement(self) -> Self {
        match self {
            Self::Lost => Self::Lost,
            Self::Active | Self::Replaced => Self::Replaced,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub id: Uuid,
    pub member_id: Uuid,
    pub number: String,
    pub card_type: CardType,
    pub status: CardStatus,
    pub replaces_card_id: Option<Uuid>,
    pub issue_time: DateTime<Utc>,
}

/// The Luhn check digit for `payload` (digits only).
pub fn luhn_check_digit(payload: &str) -> u8 {
    // Doubling starts at the rightmost payload digit, because the check digit will follow it.
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// 16 ASCII digits whose last digit is the Luhn check digit of the first 15.
pub fn is_valid_number(number: &str) -> bool {
    number.len() == CARD_NUMBER_LEN
        && number.bytes().all(|b| b.is_ascii_digit())
        && luhn_check_digit(&number[..CARD_NUMBER_LEN - 1])
            == number.as_bytes()[CARD_NUMBER_LEN - 1] - b'0'
}

/// A fresh random card number. Uniqueness is the database's job (the caller retries on a
/// collision); the first digit is never 0 so the number survives spreadsheets and barcodes
/// that drop leading zeros.
pub fn generate_number(rng: &mut impl Rng) -> String {
    let mut s = String::with_capacity(CARD_NUMBER_LEN);
    s.push(char::from(b'0' + rng.gen_range(1..=9u8)));
    for _ in 1..CARD_NUMBER_LEN - 1 {
        s.push(char::from(b'0' + rng.gen_range(0..=9u8)));
    }
    let check = luhn_check_digit(&s);
    s.push(char::from(b'0' + check));
    s
}

/// Keeps digits only, so "1234-5678 9012 3456" from a form works like the barcode.
pub fn normalize_number(input: &str) -> String {
    input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_luhn_numbers() {
        // Classic test numbers: 79927398713 and the Visa test card 4111 1111 1111 1111.
        assert_eq!(luhn_check_digit("7992739871"), 3);
        assert_eq!(luhn_check_digit("411111111111111"), 1);
        assert!(is_valid_number("4111111111111111"));
        assert!(!is_valid_number("4111111111111112"));
        assert!(!is_valid_number("411111111111111"), "15 digits");
        assert!(!is_valid_number("41111111111111a1"));
    }

    #[test]
    fn normalizes_separators() {
        assert_eq!(normalize_number("4111-1111 1111-1111"), "4111111111111111");
    }

    #[test]
    fn replacement_keeps_lost_cards_lost() {
        assert_eq!(CardStatus::Active.after_replacement(), CardStatus::Replaced);
        assert_eq!(CardStatus::Lost.after_replacement(), CardStatus::Lost);
    }

    proptest! {
        #[test]
        fn generated_numbers_are_valid(seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let n = generate_number(&mut rng);
            prop_assert!(is_valid_number(&n), "{}", n);
            prop_assert!(!n.starts_with('0'));
        }

        #[test]
        fn any_single_digit_change_is_caught(seed in any::<u64>(), pos in 0usize..16, delta in 1u8..10) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let n = generate_number(&mut rng);
            let mut bytes = n.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).expect("ascii digits");
            prop_assert!(!is_valid_number(&changed));
        }
    }
}
