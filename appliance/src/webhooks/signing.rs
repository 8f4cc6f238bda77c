//! Delivery signatures, as the Standard Webhooks spec defines them (so a
//! receiver can use any of its libraries, or Svix's): HMAC-SHA256, keyed
//! with the secret's bytes (the base64 after `whsec_`), over
//! `{webhook-id}.{webhook-timestamp}.{body}`; sent as
//! `webhook-signature: v1,<base64>`. The timestamp (Unix seconds, the time
//! of the attempt) is inside the signed content, so a receiver that refuses
//! stale timestamps also refuses replays; the id is too, so an attacker
//! cannot replay a body under another id to defeat de-duplication.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secrets' prefix in the Standard Webhooks form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Secrets are 24–64 bytes: shorter is guessable, longer buys nothing
/// (HMAC-SHA256 hashes longer keys down to 32 bytes).
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Base64 with or without padding: secrets pasted from other tools come
/// both ways.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The HMAC key of a `whsec_…` secret, or why it is not one.
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("must start with `{SECRET_PREFIX}`"))?;
    let key = LENIENT
        .decode(b64)
        .map_err(|e| format!("the part after `{SECRET_PREFIX}` is not base64: {e}"))?;
    if !SECRET_BYTES.contains(&key.len()) {
        return Err(format!(
            "must encode {}–{} bytes, this one has {}",
            SECRET_BYTES.start(),
            SECRET_BYTES.end(),
            key.len()
        ));
    }
    Ok(key)
}

/// A new secret: 32 bytes from the OS's generator.
pub fn new_secret() -> crate::error::Result<String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| crate::error::Error::Task(format!("no randomness: {e}")))?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// The `webhook-signature` header value for one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // new_from_slice takes keys of any length (HMAC pads or hashes them).
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks spec and Svix's libraries: a
    /// signature made by their reference code, not by this one.
    #[test]
    fn the_standard_webhooks_vector_signs_the_same() {
        let key = LENIENT.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    /// RFC 4231 test case 2 (a key shorter than a block): the HMAC under
    /// the signature is the standard one.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_are_whsec_base64_of_24_to_64_bytes() {
        let made = new_secret().unwrap();
        assert_eq!(key_of(&made).unwrap().len(), 32);
        assert_ne!(made, new_secret().unwrap(), "random");
        // The spec's example secret decodes to 24 bytes, padded or not.
        assert_eq!(
            key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap()
                .len(),
            24
        );
        let short = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([1u8; 23])
        );
        let long = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([1u8; 65])
        );
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!!",
            &short,
            &long,
        ] {
            assert!(key_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_part_of_the_signed_content_matters() {
        let key = [7u8; 32];
        let base = signature(&key, "evt_1", 100, b"{}");
        assert_ne!(base, signature(&key, "evt_2", 100, b"{}"));
        assert_ne!(base, signature(&key, "evt_1", 101, b"{}"));
        assert_ne!(base, signature(&key, "evt_1", 100, b"{ }"));
        assert_ne!(base, signature(&[8u8; 32], "evt_1", 100, b"{}"));
    }
}
