//! 사업자등록번호 (Korean business registration number): 10 digits, written `123-45-67890`,
//! whose last digit is a check digit over the first nine (weights 1,3,7,1,3,7,1,3,5 plus
//! floor(9th digit × 5 / 10)).

/// A business registration number whose check digit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BusinessNumber([u8; 10]);

/// Why a string is not a business registration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrnError {
    /// Not 10 digits, or dashes elsewhere than `123-45-67890`.
    Format,
    /// Well-formed, but the check digit is wrong (a typo).
    CheckDigit,
}

impl BrnError {
    /// Korean-first text for the field violation.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Format => {
                "사업자등록번호는 숫자 10자리입니다 (must be 10 digits, e.g. 123-45-67890)"
            }
            Self::CheckDigit => {
                "사업자등록번호의 검증번호가 맞지 않습니다 (check digit does not match; a typo?)"
            }
        }
    }
}

const WEIGHTS: [u32; 9] = [1, 3, 7, 1, 3, 7, 1, 3, 5];

/// The check digit of the first nine digits.
pub fn check_digit(first_nine: &[u8; 9]) -> u8 {
    let mut sum: u32 = first_nine
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    // The ninth digit counts once more: the tens of (d9 × 5).
    sum += u32::from(first_nine[8]) * 5 / 10;
    ((10 - sum % 10) % 10) as u8
}

impl BusinessNumber {
    /// Accepts `1234567890` or `123-45-67890` (surrounding spaces ignored).
    pub fn parse(s: &str) -> Result<Self, BrnError> {
        let s = s.trim();
        let digits: &str = match s.len() {
            10 => s,
            12 if s.as_bytes()[3] == b'-' && s.as_bytes()[6] == b'-' => {
                return Self::parse(&format!("{}{}{}", &s[..3], &s[4..6], &s[7..]));
            }
            _ => return Err(BrnError::Format),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BrnError::Format);
        }
        let mut d = [0u8; 10];
        for (i, b) in digits.bytes().enumerate() {
            d[i] = b - b'0';
        }
        let mut first = [0u8; 9];
        first.copy_from_slice(&d[..9]);
        if check_digit(&first) != d[9] {
            return Err(BrnError::CheckDigit);
        }
        Ok(Self(d))
    }

    /// The 10 digits, as stored.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// `123-45-67890`, as shown.
    pub fn formatted(&self) -> String {
        let d = self.digits();
        format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent, literal transcription of the rule, to cross-check `check_digit`.
    fn reference_check(nine: &str) -> u8 {
        let d: Vec<u32> = nine.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum = d[0]
            + d[1] * 3
            + d[2] * 7
            + d[3]
            + d[4] * 3
            + d[5] * 7
            + d[6]
            + d[7] * 3
            + d[8] * 5
            + (d[8] * 5) / 10;
        ((10 - sum % 10) % 10) as u8
    }

    #[test]
    fn a_hand_computed_number_is_valid() {
        // 1 2 3 4 5 6 7 8 9 × 1 3 7 1 3 7 1 3 5:
        // 1 + 6 + 21 + 4 + 15 + 42 + 7 + 24 + 45 = 165; + floor(9 × 5 / 10) = 4 → 169;
        // check = (10 − 169 mod 10) mod 10 = (10 − 9) mod 10 = 1.
        let n = BusinessNumber::parse("123-45-67891").expect("valid");
        assert_eq!(n.digits(), "1234567891");
        assert_eq!(n.formatted(), "123-45-67891");
        assert_eq!(BusinessNumber::parse("1234567891"), Ok(n));
        assert_eq!(
            BusinessNumber::parse("123-45-67890"),
            Err(BrnError::CheckDigit)
        );
    }

    #[test]
    fn only_the_computed_check_digit_is_accepted() {
        for nine in [
            "220810123",
            "101860000",
            "000000000",
            "987654321",
            "555555555",
        ] {
            let check = reference_check(nine);
            for last in 0..10u8 {
                let s = format!("{nine}{last}");
                let r = BusinessNumber::parse(&s);
                if last == check {
                    assert!(r.is_ok(), "{s} should be valid");
                } else {
                    assert_eq!(r, Err(BrnError::CheckDigit), "{s}");
                }
            }
        }
        // A zero-sum case: 000000000 → sum 0 → check (10 − 0) mod 10 = 0.
        assert!(BusinessNumber::parse("000-00-00000").is_ok());
    }

    #[test]
    fn malformed_numbers_are_format_errors() {
        for s in [
            "",
            "123456789",
            "12345678901",
            "12-345-67891",
            "123-4567891",
            "abc-de-fghij",
            "123 45 67891",
            "１２３４５６７８９１",
        ] {
            assert_eq!(BusinessNumber::parse(s), Err(BrnError::Format), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_nine_digits_have_exactly_one_valid_completion(nine in "[0-9]{9}") {
            let valid = (0..10u8)
                .filter(|l| BusinessNumber::parse(&format!("{nine}{l}")).is_ok())
                .collect::<Vec<_>>();
            proptest::prop_assert_eq!(valid, vec![reference_check(&nine)]);
        }
    }
}
