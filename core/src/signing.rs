//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64 part of a `whsec_` secret.
//!
//! No pgrx here. The integration tests check these signatures with the independent
//! `standardwebhooks` package.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

/// Signs `body` sent with `id` at `timestamp` (Unix seconds). None if the secret is not a
/// valid `whsec_` secret (settings are checked when written, so this is not expected).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<Signature> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(Signature {
        id: id.to_string(),
        timestamp: timestamp.to_string(),
        signature: format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())),
    })
}

/// The `webhook-signature` header for `body` signed with each of `secrets` (the current one
/// first, then those still in their rotation overlap), space-separated as Standard Webhooks
/// specifies, so a receiver verifying with any of them accepts it. None when no secret is valid.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let mut signed: Vec<String> = Vec::new();
    for secret in secrets {
        if let Some(s) = sign(secret, id, timestamp, body) {
            if !signed.contains(&s.signature) {
                signed.push(s.signature);
            }
        }
    }
    (!signed.is_empty()).then(|| signed.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let (old, new) = (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2Vjb25kIHNlY3JldCwgMjQgYnl0ZXMu",
        );
        let header = signature_header(&[new, old, new, "not a secret"], "msg_1", 1_614_265_330, b"{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert_eq!(parts[0], sign(new, "msg_1", 1_614_265_330, b"{}").unwrap().signature);
        assert_eq!(parts[1], sign(old, "msg_1", 1_614_265_330, b"{}").unwrap().signature);
        assert_eq!(signature_header(&["bad"], "msg_1", 0, b""), None);
    }

    /// The example of the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_example() {
        let signed = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signed.signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(signed.timestamp, "1614265330");
    }

    #[test]
    fn bad_secrets_sign_nothing() {
        assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, b""), None);
        assert_eq!(sign("whsec_!!", "m", 1, b""), None);
    }
}
