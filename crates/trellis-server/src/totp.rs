//! Time-based one-time passwords (RFC 6238, HMAC-SHA1, 6 digits, 30 s) for the
//! optional second sign-in factor, with RFC 4648 base32 secrets as
//! authenticator apps expect them.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha1::Sha1;

const STEP: u64 = 30;
const DIGITS: u32 = 6;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The RFC 4226 HOTP value for `counter`, with `digits` digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let Ok(mut mac) = <Hmac<Sha1>>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    format!(
        "{:0width$}",
        bin % 10u32.pow(digits),
        width = digits as usize
    )
}

pub fn code_at(secret: &[u8], unix_seconds: u64) -> String {
    hotp(secret, unix_seconds / STEP, DIGITS)
}

/// Accepts the code of the current step or one step either side (clock drift).
pub fn verify(secret: &[u8], code: &str, unix_seconds: u64) -> bool {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let step = unix_seconds / STEP;
    [step.saturating_sub(1), step, step + 1]
        .iter()
        .any(|s| hotp(secret, *s, DIGITS) == code)
}

pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buf >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = ALPHABET
            .iter()
            .position(|&a| char::from(a) == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push(((buf >> (bits - 8)) & 0xff) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// A new 160-bit secret, base32.
pub fn new_secret() -> String {
    base32_encode(&crate::auth::random_bytes()[..20])
}

/// The `otpauth://` URI authenticator apps import.
pub fn otpauth_uri(secret_b32: &str, username: &str) -> String {
    format!(
        "otpauth://totp/Trellis:{}?secret={secret_b32}&issuer=Trellis&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        crate::ui::url_encode(username)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B (SHA-1 column): the reference values.
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(hotp(secret, t / 30, 8), expected, "T={t}");
        }
    }

    /// RFC 4226 appendix D: HOTP values for counters 0..9.
    #[test]
    fn rfc_4226_test_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (c, e) in expected.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", c as u64, 6), *e);
        }
    }

    #[test]
    fn verify_allows_one_step_of_drift_only() {
        let s = b"12345678901234567890";
        let now = 1_700_000_000;
        assert!(verify(s, &code_at(s, now), now));
        assert!(verify(s, &code_at(s, now - 30), now));
        assert!(!verify(s, &code_at(s, now - 90), now));
        assert!(!verify(s, "12345", now));
        assert!(!verify(s, "abcdef", now));
    }

    #[test]
    fn base32_round_trip_and_rfc_4648_vectors() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_encode(b"f"), "MY");
        assert_eq!(
            base32_decode("MZXW6YTBOI======").as_deref(),
            Some(&b"foobar"[..])
        );
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base32_decode(&base32_encode(&data)), Some(data));
        }
        assert_eq!(base32_decode("not base32!"), None);
    }
}
