//! The two pieces of Web Push cryptography: the message encryption of RFC 8291 (`aes128gcm`,
//! RFC 8188) and the VAPID JWT of RFC 8292. The primitives (P-256 ECDH and ECDSA, AES-128-GCM)
//! are aws-lc-rs, the crypto library rustls already runs on; HKDF with one output block is two
//! HMAC-SHA-256 calls. The framing is small, and a unit test checks it byte for byte against the
//! example RFC 8291 publishes.

use aws_lc_rs::{aead, agreement, rand::SystemRandom, signature};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The record size written in the header: any payload of ours fits in one record.
const RECORD_SIZE: u32 = 4096;
/// The largest plaintext accepted: one record, less its delimiter and the 16-byte tag, and
/// under the 4 KiB every push service takes.
pub(crate) const MAX_PLAINTEXT: usize = 3000;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // `new_from_slice` takes any key length for HMAC.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// HKDF-SHA-256 (RFC 5869) for outputs of at most 32 bytes: one expand block.
fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac(salt, &[ikm]);
    hmac(&prk, &[info, &[1]])
}

/// Why a message could not be encrypted for a subscription.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncryptError {
    #[error("the subscription's p256dh key is not a P-256 public key")]
    BadKey,
    #[error("the subscription's auth secret is not 16 bytes")]
    BadAuth,
    #[error("the message is too long for one push")]
    TooLong,
    #[error("the crypto library failed")]
    Crypto,
}

/// Encrypts `plaintext` for a subscription (`ua_public`: its `p256dh`, 65 bytes uncompressed;
/// `auth`: its 16-byte secret) with a fresh key pair and salt: the body of the push request.
pub(crate) fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let key =
        agreement::PrivateKey::generate(&agreement::ECDH_P256).map_err(|_| EncryptError::Crypto)?;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| EncryptError::Crypto)?;
    encrypt_with(plaintext, ua_public, auth, &key, &salt)
}

fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    key: &agreement::PrivateKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EncryptError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EncryptError::TooLong);
    }
    if auth.len() != 16 {
        return Err(EncryptError::BadAuth);
    }
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err(EncryptError::BadKey);
    }
    let as_public = key.compute_public_key().map_err(|_| EncryptError::Crypto)?;
    let as_public = as_public.as_ref();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let ecdh: [u8; 32] = agreement::agree(key, peer, EncryptError::BadKey, |s| {
        s.try_into().map_err(|_| EncryptError::Crypto)
    })?;
    // RFC 8291 section 3.4: the key info binds both public keys.
    let ikm = hkdf(
        auth,
        &ecdh,
        &[b"WebPush: info\0", ua_public, as_public].concat(),
    );
    let cek = hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0");
    let nonce = hkdf(salt, &ikm, b"Content-Encoding: nonce\0");
    let unbound =
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek[..16]).map_err(|_| EncryptError::Crypto)?;
    let sealing = aead::LessSafeKey::new(unbound);
    let nonce =
        aead::Nonce::try_assume_unique_for_key(&nonce[..12]).map_err(|_| EncryptError::Crypto)?;
    // One record, the last: the plaintext and its delimiter 0x02, no padding.
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2);
    sealing
        .seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| EncryptError::Crypto)?;
    let mut body = Vec::with_capacity(86 + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// The server's VAPID key pair (P-256 ECDSA).
pub(crate) struct Vapid {
    key: signature::EcdsaKeyPair,
    /// The public key, uncompressed, base64url: what `GET /api/push/key` answers and what the
    /// `k=` of every push carries.
    pub public_b64: String,
}

impl Vapid {
    /// A new key pair as PKCS#8, to be stored.
    pub(crate) fn generate_pkcs8() -> Result<Vec<u8>, String> {
        signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| "cannot generate a P-256 key pair".to_string())
    }

    pub(crate) fn from_pkcs8(pkcs8: &[u8]) -> Result<Vapid, String> {
        use signature::KeyPair as _;
        let key =
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(|e| format!("the stored VAPID key is not a P-256 PKCS#8 key ({e})"))?;
        let public_b64 = B64.encode(key.public_key().as_ref());
        Ok(Vapid { key, public_b64 })
    }

    /// The `Authorization` header for a push to `audience` (the endpoint's origin): an ES256 JWT
    /// valid until `exp` (seconds since the epoch), with `sub` when one is set.
    pub(crate) fn authorization(
        &self,
        audience: &str,
        exp: u64,
        sub: Option<&str>,
    ) -> Result<String, String> {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let mut claims = serde_json::json!({"aud": audience, "exp": exp});
        if let Some(sub) = sub {
            claims["sub"] = sub.into();
        }
        let claims = B64.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "cannot sign the VAPID token".to_string())?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            B64.encode(sig.as_ref()),
            self.public_b64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// RFC 8291 section 5 and Appendix A: the same keys and salt give the published body.
    #[test]
    fn encrypts_the_rfc_8291_example_byte_for_byte() {
        let key = agreement::PrivateKey::from_private_key(
            &agreement::ECDH_P256,
            &b("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"),
        )
        .unwrap();
        let salt: [u8; 16] = b("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = encrypt_with(
            b"When I grow up, I want to be a watermelon",
            &b("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
            &b("BTBZMqHH6r4Tts7J_aSIgg"),
            &key,
            &salt,
        )
        .unwrap();
        assert_eq!(
            B64.encode(body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn refuses_bad_keys_and_long_messages() {
        let ua = b("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        assert!(matches!(
            encrypt(b"x", &ua[..64], &[0; 16]),
            Err(EncryptError::BadKey)
        ));
        let mut off_curve = ua.clone();
        off_curve[64] ^= 1;
        assert!(matches!(
            encrypt(b"x", &off_curve, &[0; 16]),
            Err(EncryptError::BadKey)
        ));
        assert!(matches!(
            encrypt(b"x", &ua, &[0; 15]),
            Err(EncryptError::BadAuth)
        ));
        assert!(matches!(
            encrypt(&[0; MAX_PLAINTEXT + 1], &ua, &[0; 16]),
            Err(EncryptError::TooLong)
        ));
    }

    #[test]
    fn the_vapid_token_verifies_with_the_public_key() {
        let v = Vapid::from_pkcs8(&Vapid::generate_pkcs8().unwrap()).unwrap();
        let h = v
            .authorization(
                "https://push.example",
                1_900_000_000,
                Some("mailto:a@b.example"),
            )
            .unwrap();
        let (t, k) = h
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .unwrap();
        assert_eq!(k, v.public_b64);
        let (input, sig) = t.rsplit_once('.').unwrap();
        let key = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, b(k));
        key.verify(input.as_bytes(), &b(sig)).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&b(input.split_once('.').unwrap().1)).unwrap();
        assert_eq!(claims["aud"], "https://push.example");
        assert_eq!(claims["sub"], "mailto:a@b.example");
    }
}
