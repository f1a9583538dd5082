//! Signed checkpoints of a chain head, to be exported and checked outside the
//! database: a rewrite of the whole chain (by someone able to recompute every
//! hash) still contradicts a checkpoint signed earlier with the installation key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use trellis_domain::UtcMicros;

use crate::chain::{Chain, ChainHead};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint key file is malformed: {0}")]
    MalformedKey(String),
    #[error("checkpoint is malformed at line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("checkpoint was signed by key {found}, not by this installation's key {expected}")]
    UnknownKey { expected: String, found: String },
    #[error("checkpoint signature does not verify: the checkpoint was altered or forged")]
    BadSignature,
}

/// The installation's Ed25519 signing key for checkpoints.
pub struct CheckpointKey(SigningKey);

const KEY_HEADER: &str = "trellis-checkpoint-key v1";
const CHECKPOINT_HEADER: &str = "trellis-audit-checkpoint/v1";

impl CheckpointKey {
    /// Builds the key from 32 random bytes supplied by the caller (this crate does no I/O).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The key file's text: a header line and the base64 seed. Keep it out of the database.
    pub fn to_file_text(&self) -> String {
        format!("{KEY_HEADER}\n{}\n", B64.encode(self.0.to_bytes()))
    }

    pub fn from_file_text(text: &str) -> Result<Self, CheckpointError> {
        let mut lines = text.lines();
        if lines.next() != Some(KEY_HEADER) {
            return Err(CheckpointError::MalformedKey(format!(
                "first line must be `{KEY_HEADER}`"
            )));
        }
        let seed = lines
            .next()
            .and_then(|l| B64.decode(l.trim()).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                CheckpointError::MalformedKey("second line must be a base64 32-byte seed".into())
            })?;
        Ok(Self::from_seed(seed))
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Short, stable name of the key: first 8 bytes of SHA-256(public key), hex.
    pub fn key_id(&self) -> String {
        key_id(&self.public_key())
    }

    /// The public key as a one-line text a verifier can be given: `trellis-checkpoint-pub v1 <base64>`.
    pub fn public_key_text(&self) -> String {
        format!(
            "trellis-checkpoint-pub v1 {}\n",
            B64.encode(self.public_key())
        )
    }

    pub fn sign(&self, chain: Chain, head: ChainHead, created_at: UtcMicros) -> Checkpoint {
        let mut cp = Checkpoint {
            chain,
            head,
            created_at,
            key_id: self.key_id(),
            signature: [0; 64],
        };
        cp.signature = self.0.sign(cp.message().as_bytes()).to_bytes();
        cp
    }
}

fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Parses the one-line public key text written by [`CheckpointKey::public_key_text`].
pub fn parse_public_key(text: &str) -> Result<[u8; 32], CheckpointError> {
    text.trim()
        .strip_prefix("trellis-checkpoint-pub v1 ")
        .and_then(|b| B64.decode(b.trim()).ok())
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            CheckpointError::MalformedKey("expected `trellis-checkpoint-pub v1 <base64>`".into())
        })
}

/// A signed statement "chain C had N entries ending in hash H at time T".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub chain: Chain,
    pub head: ChainHead,
    pub created_at: UtcMicros,
    pub key_id: String,
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The exact signed text.
    pub fn message(&self) -> String {
        format!(
            "{CHECKPOINT_HEADER}\nchain {}\nseq {}\nhead {}\ntime {}\n",
            self.chain.id(),
            self.head.seq,
            hex::encode(self.head.hash),
            self.created_at.to_rfc3339()
        )
    }

    /// The exported form: the message, a blank line, and a signature line.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n— trellis {} {}\n",
            self.message(),
            self.key_id,
            B64.encode(self.signature)
        )
    }

    /// Reads an exported checkpoint and checks its signature against `public_key`.
    pub fn parse_and_verify(
        text: &str,
        public_key: &[u8; 32],
    ) -> Result<Checkpoint, CheckpointError> {
        let bad = |line: usize, message: &str| CheckpointError::Malformed {
            line,
            message: message.to_owned(),
        };
        let lines: Vec<&str> = text.lines().collect();
        if lines.first() != Some(&CHECKPOINT_HEADER) {
            return Err(bad(1, "first line must be `trellis-audit-checkpoint/v1`"));
        }
        let field = |i: usize, name: &str| -> Result<&str, CheckpointError> {
            lines
                .get(i)
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .ok_or_else(|| bad(i + 1, &format!("expected `{name} ...`")))
        };
        let chain =
            uuid::Uuid::parse_str(field(1, "chain")?).map_err(|_| bad(2, "chain is not a UUID"))?;
        let seq: u64 = field(2, "seq")?
            .parse()
            .map_err(|_| bad(3, "seq is not a number"))?;
        let hash = hex::decode(field(3, "head")?)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad(4, "head is not a 32-byte hex hash"))?;
        let time: jiff::Timestamp = field(4, "time")?
            .parse()
            .map_err(|_| bad(5, "time is not RFC 3339"))?;
        if lines.get(5) != Some(&"") {
            return Err(bad(6, "expected a blank line before the signature"));
        }
        let sig_line = lines
            .get(6)
            .ok_or_else(|| bad(7, "signature line missing"))?;
        let mut parts = sig_line
            .strip_prefix("— trellis ")
            .unwrap_or_default()
            .split(' ');
        let (Some(kid), Some(sig_b64), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(7, "expected `— trellis <key id> <base64 signature>`"));
        };
        let expected = key_id(public_key);
        if kid != expected {
            return Err(CheckpointError::UnknownKey {
                expected,
                found: kid.to_owned(),
            });
        }
        let sig = B64
            .decode(sig_b64)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad(7, "signature is not 64 bytes of base64"))?;
        let cp = Checkpoint {
            chain: Chain::from_id(chain),
            head: ChainHead { seq, hash },
            created_at: UtcMicros::from_timestamp(time),
            key_id: kid.to_owned(),
            signature: sig,
        };
        cp.verify(public_key)?;
        // The signature covers the fields, not the text: a variant spelling
        // that parses to the same fields (a space for the `T` of the time,
        // which RFC 3339 allows) would verify too. An exported checkpoint is
        // evidence, so only its canonical text is accepted (line ends may
        // be CRLF).
        let canonical = cp.to_text();
        if let Some(i) = canonical
            .lines()
            .zip(&lines)
            .position(|(want, got)| want != *got)
            .or_else(|| (lines.len() != canonical.lines().count()).then_some(lines.len()))
        {
            return Err(bad(i + 1, "not in the canonical form Trellis exports"));
        }
        Ok(cp)
    }

    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), CheckpointError> {
        let vk = VerifyingKey::from_bytes(public_key)
            .map_err(|e| CheckpointError::MalformedKey(e.to_string()))?;
        vk.verify(
            self.message().as_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| CheckpointError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CheckpointKey {
        CheckpointKey::from_seed([7; 32])
    }

    #[test]
    fn round_trip_through_text() {
        let k = key();
        let head = ChainHead {
            seq: 42,
            hash: [3; 32],
        };
        let cp = k.sign(
            Chain::Installation,
            head,
            UtcMicros::from_micros(1_764_000_000_000_001),
        );
        let text = cp.to_text();
        let back = Checkpoint::parse_and_verify(&text, &k.public_key()).expect("verifies");
        assert_eq!(back, cp);
        let pk = parse_public_key(&k.public_key_text()).expect("pub");
        assert_eq!(pk, k.public_key());
    }

    #[test]
    fn an_edited_checkpoint_fails() {
        let k = key();
        let cp = k.sign(
            Chain::Installation,
            ChainHead {
                seq: 42,
                hash: [3; 32],
            },
            UtcMicros::from_micros(0),
        );
        let forged = cp.to_text().replace("seq 42", "seq 41");
        assert_eq!(
            Checkpoint::parse_and_verify(&forged, &k.public_key()),
            Err(CheckpointError::BadSignature)
        );
        let other = CheckpointKey::from_seed([8; 32]);
        assert!(matches!(
            Checkpoint::parse_and_verify(&cp.to_text(), &other.public_key()),
            Err(CheckpointError::UnknownKey { .. })
        ));
    }

    proptest::proptest! {
        /// Exported text comes back from outside: any input is refused or accepted, never a panic.
        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC*", lines in proptest::collection::vec("[a-z0-9 =+/—-]{0,80}", 0..9)) {
            let k = key();
            let _ = Checkpoint::parse_and_verify(&text, &k.public_key());
            let _ = Checkpoint::parse_and_verify(&lines.join("\n"), &k.public_key());
            let _ = CheckpointKey::from_file_text(&text);
            let _ = parse_public_key(&text);
        }

        /// Any single-byte edit of a valid checkpoint is rejected (or is a no-op).
        #[test]
        fn any_edit_of_a_checkpoint_is_rejected(pos in 0usize..400, byte in 32u8..127) {
            let k = key();
            let text = k.sign(Chain::Installation, ChainHead { seq: 42, hash: [3; 32] }, UtcMicros::from_micros(5)).to_text();
            let mut bytes = text.clone().into_bytes();
            let pos = pos % bytes.len();
            proptest::prop_assume!(bytes[pos].is_ascii() && bytes[pos] != byte);
            bytes[pos] = byte;
            if let Ok(edited) = String::from_utf8(bytes) {
                proptest::prop_assert!(Checkpoint::parse_and_verify(&edited, &k.public_key()).is_err());
            }
        }
    }

    #[test]
    fn a_variant_spelling_of_the_same_checkpoint_is_refused() {
        let k = key();
        let text = k
            .sign(
                Chain::Installation,
                ChainHead {
                    seq: 42,
                    hash: [3; 32],
                },
                UtcMicros::from_micros(5),
            )
            .to_text();
        assert!(Checkpoint::parse_and_verify(&text, &k.public_key()).is_ok());
        assert!(Checkpoint::parse_and_verify(&text.replace('\n', "\r\n"), &k.public_key()).is_ok());
        let spaced = text.replacen("01T", "01 ", 1);
        assert_ne!(spaced, text);
        assert!(matches!(
            Checkpoint::parse_and_verify(&spaced, &k.public_key()),
            Err(CheckpointError::Malformed { line: 5, .. })
        ));
        let extra = format!("{text}trailing\n");
        assert!(Checkpoint::parse_and_verify(&extra, &k.public_key()).is_err());
    }

    #[test]
    fn key_file_round_trip() {
        let k = key();
        let k2 = CheckpointKey::from_file_text(&k.to_file_text()).expect("parse");
        assert_eq!(k.public_key(), k2.public_key());
        assert!(CheckpointKey::from_file_text("nonsense").is_err());
    }
}
