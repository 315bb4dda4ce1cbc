//! Korean mobile numbers: one normal form (digits only) for storage, the blind index and
//! lookups, whatever dashes or spaces the caller typed.

/// Why a phone number was refused (the message is user-facing).
pub const INVALID_PHONE: &str =
    "휴대폰 번호 형식이 아닙니다 (must be a Korean mobile number like 010-1234-5678)";

/// Digits only, after dropping `-` and spaces: `01[016789]` then 7 or 8 digits.
/// `None` when it is not a Korean mobile number.
pub fn normalize(input: &str) -> Option<String> {
    let digits: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let ok = matches!(digits.len(), 10 | 11)
        && digits.starts_with("01")
        && matches!(
            digits.as_bytes()[2],
            b'0' | b'1' | b'6' | b'7' | b'8' | b'9'
        );
    ok.then_some(digits)
}

/// `01012345678` → `010-1234-5678`, `0111234567` → `011-123-4567` (display in clear).
pub fn format(normalized: &str) -> String {
    match normalized.len() {
        11 => format!(
            "{}-{}-{}",
            &normalized[..3],
            &normalized[3..7],
            &normalized[7..]
        ),
        10 => format!(
            "{}-{}-{}",
            &normalized[..3],
            &normalized[3..6],
            &normalized[6..]
        ),
        _ => normalized.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_and_spaces_are_dropped() {
        assert_eq!(normalize("010-1234-5678").as_deref(), Some("01012345678"));
        assert_eq!(normalize(" 010 1234 5678 ").as_deref(), Some("01012345678"));
        assert_eq!(normalize("01012345678").as_deref(), Some("01012345678"));
        assert_eq!(normalize("011-123-4567").as_deref(), Some("0111234567"));
    }

    #[test]
    fn only_mobile_prefixes_and_lengths_pass() {
        for ok in [
            "0161234567",
            "0171234567",
            "0181234567",
            "0191234567",
            "01098765432",
        ] {
            assert!(normalize(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "02-1234-5678",   // Seoul landline
            "012-1234-5678",  // not a mobile prefix
            "010-123-456",    // too short
            "010-1234-56789", // too long
            "010-1234-567a",
            "+82-10-1234-5678",
            "010.1234.5678",
        ] {
            assert!(normalize(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn formats_for_display() {
        assert_eq!(format("01012345678"), "010-1234-5678");
        assert_eq!(format("0111234567"), "011-123-4567");
    }
}
