//! Passwords, sessions and signing re-authentication.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// 32 random bytes from the operating system.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    // The OS RNG failing is not recoverable for a security product.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("operating system random number generator");
    b
}

/// A random URL-safe token (256 bits).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Hashes a password with argon2id. CPU-heavy: call from `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC string. CPU-heavy: call from `spawn_blocking`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A real argon2id hash of a random password, verified against when the user
/// does not exist, so that response time does not reveal which names exist.
pub fn absent_user_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// Generates a one-time password that satisfies the default policy.
pub fn generate_password() -> String {
    let t = random_token();
    // Base64url has letters and digits; add a separator and guarantee each class.
    format!("{}-{}-Aa1", &t[..10], &t[10..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("Correct-Horse-42").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Correct-Horse-42", &h));
        assert!(!verify_password("correct-horse-42", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn generated_passwords_meet_the_policy() {
        for _ in 0..20 {
            let p = generate_password();
            assert_eq!(
                trellis_domain::PasswordPolicy::default().check(&p, "admin"),
                Ok(()),
                "{p}"
            );
        }
    }
}
