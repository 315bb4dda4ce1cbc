//! Coupon and voucher codes: 13 Crockford base32 characters of CSPRNG randomness (65 bits, so
//! a code cannot be guessed) plus one mod-37 check character (Crockford's spec), so a mistyped
//! code is refused at the till before any lookup. Shown grouped as `K7QH-3MZ2-PXAV-9D`.
use rand::{CryptoRng, RngCore};

/// Crockford's base32 symbols: no I, L, O or U, which read like 1, 1, 0 and V.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The check symbols: the 32 above for 0..=31, then `*~$=U` for 32..=36.
const CHECK_SYMBOLS: &[u8; 37] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U";
/// Characters of randomness.
pub const DATA_LEN: usize = 13;
/// Characters of a canonical code (randomness + check character).
pub const CODE_LEN: usize = DATA_LEN + 1;
/// 13 symbols × 5 bits.
pub const RANDOM_BITS: u32 = 65;

/// A well-formed code in canonical form (upper case, no separators, check character valid).
/// It is also the barcode payload (Code 128 carries every symbol, check symbols included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Code(String);

/// Why typed text is not a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("쿠폰 번호는 14자리입니다 (a code has 14 characters, got {0})")]
    Length(usize),
    #[error("쿠폰 번호에 쓸 수 없는 문자입니다 (character {0:?} is not used in codes)")]
    Character(char),
    #[error(
        "쿠폰 번호가 올바르지 않습니다; 다시 확인해 주세요 (check character mismatch: the code was mistyped)"
    )]
    Check,
}

impl Code {
    /// A fresh code from a cryptographically secure generator (`rand::rngs::OsRng` in
    /// production): the codes of a tenant must not be predictable from each other.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self::from_value(u128::from_le_bytes(bytes))
    }

    /// The code of the low 65 bits of `value`.
    pub fn from_value(value: u128) -> Self {
        let value = value & ((1u128 << RANDOM_BITS) - 1);
        let mut s = String::with_capacity(CODE_LEN);
        for i in (0..DATA_LEN).rev() {
            let digit = ((value >> (5 * i)) & 0x1f) as usize;
            s.push(ALPHABET[digit] as char);
        }
        s.push(CHECK_SYMBOLS[(value % 37) as usize] as char);
        Self(s)
    }

    /// Reads a typed or scanned code: case-insensitive, hyphens and spaces ignored, and the
    /// Crockford aliases O → 0, I and L → 1 accepted; the check character must match.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let chars: Vec<char> = input
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .map(|c| match c {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            })
            .collect();
        if chars.len() != CODE_LEN {
            return Err(CodeError::Length(chars.len()));
        }
        let mut value: u128 = 0;
        for &c in &chars[..DATA_LEN] {
            let digit = symbol_value(&ALPHABET[..], c).ok_or(CodeError::Character(c))?;
            value = (value << 5) | digit as u128;
        }
        let check = chars[DATA_LEN];
        let expected =
            symbol_value(&CHECK_SYMBOLS[..], check).ok_or(CodeError::Character(check))?;
        if value % 37 != expected as u128 {
            return Err(CodeError::Check);
        }
        Ok(Self(chars.into_iter().collect()))
    }

    /// A canonical code read back from storage (no check: it was checked when generated).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Grouped by four for reading aloud and typing: `K7QH-3MZ2-PXAV-9D`.
    pub fn display(&self) -> String {
        display(&self.0)
    }
}

/// Groups a canonical code by four characters.
pub fn display(code: &str) -> String {
    let mut out = String::with_capacity(code.len() + code.len() / 4);
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

fn symbol_value(symbols: &[u8], c: char) -> Option<u8> {
    symbols
        .iter()
        .position(|&s| s as char == c)
        .map(|p| p as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::rngs::OsRng;

    use super::*;

    #[test]
    fn known_values_encode_with_their_check_character() {
        assert_eq!(Code::from_value(0).as_str(), "00000000000000");
        // 37 ≡ 0 (mod 37); 37 = 0b1_00101 → "15" in base32.
        assert_eq!(Code::from_value(37).as_str(), "00000000000150");
        // 36 is the last check symbol, U.
        assert_eq!(Code::from_value(36).as_str(), "0000000000014U");
        let max = Code::from_value(u128::MAX);
        assert_eq!(
            &max.as_str()[..DATA_LEN],
            "ZZZZZZZZZZZZZ",
            "65 bits fill 13 symbols"
        );
    }

    #[test]
    fn generated_codes_are_well_formed_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let c = Code::generate(&mut OsRng);
            assert_eq!(c.as_str().len(), CODE_LEN);
            assert_eq!(Code::parse(c.as_str()), Ok(c.clone()));
            assert!(seen.insert(c));
        }
    }

    #[test]
    fn typed_codes_are_forgiving_about_case_separators_and_aliases() {
        let c = Code::from_value(0x1_2345_6789_abcd_ef01);
        let typed = c
            .display()
            .to_lowercase()
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(Code::parse(&typed), Ok(c.clone()));
        assert_eq!(Code::parse(&format!(" {} ", c.display())), Ok(c));
    }

    #[test]
    fn display_groups_by_four() {
        assert_eq!(display("K7QH3MZ2PXAV9D"), "K7QH-3MZ2-PXAV-9D");
    }

    #[test]
    fn malformed_codes_name_the_problem() {
        assert_eq!(Code::parse("ABC"), Err(CodeError::Length(3)));
        assert_eq!(Code::parse("0000000000000U0"), Err(CodeError::Length(15)));
        assert_eq!(
            Code::parse("000000000000U0"),
            Err(CodeError::Character('U'))
        );
        assert_eq!(
            Code::parse("00000000000#00"),
            Err(CodeError::Character('#'))
        );
        assert_eq!(Code::parse("00000000000001"), Err(CodeError::Check));
    }

    proptest! {
        #[test]
        fn any_value_round_trips(v in any::<u128>()) {
            let c = Code::from_value(v);
            prop_assert_eq!(Code::parse(c.as_str()), Ok(c));
        }

        /// mod 37 is prime and larger than the alphabet: every single-symbol error is caught.
        #[test]
        fn a_single_wrong_symbol_is_caught(v in any::<u128>(), pos in 0..CODE_LEN, sym in 0usize..32) {
            let c = Code::from_value(v);
            let mut chars: Vec<char> = c.as_str().chars().collect();
            let replacement = ALPHABET[sym] as char;
            prop_assume!(chars[pos] != replacement);
            chars[pos] = replacement;
            let typed: String = chars.into_iter().collect();
            prop_assert!(Code::parse(&typed).is_err());
        }

        /// ... and so is every swap of two different adjacent symbols.
        #[test]
        fn an_adjacent_transposition_is_caught(v in any::<u128>(), pos in 0..DATA_LEN - 1) {
            let c = Code::from_value(v);
            let mut chars: Vec<char> = c.as_str().chars().collect();
            prop_assume!(chars[pos] != chars[pos + 1]);
            chars.swap(pos, pos + 1);
            let typed: String = chars.into_iter().collect();
            prop_assert!(Code::parse(&typed).is_err());
        }
    }
}
