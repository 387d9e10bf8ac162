//! Fixed signing keys and the verification policy of the `jwt` target.
//!
//! Two keys the targets can sign with (Ed25519 from a fixed seed, P-256 from
//! a fixed scalar; both signature schemes are deterministic) and, as a second
//! issuer, the RSA and Ed25519 public keys of `examples/mcp-tools` (nobody
//! here holds their private keys: tokens for that issuer can only fail).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;

use pinhole_filter::identity::jwks::parse_jwks;
use pinhole_filter::identity::Verifier;
use pinhole_filter::policy::{Alg, Issuer, Jwk, KeyMaterial, Policy};

/// `now` for every verification.
pub const NOW: u64 = 1_700_000_000;
pub const ISS: &str = "https://issuer.fuzz.example";
pub const AUDIENCE: &str = "pinhole";
pub const LEEWAY: u64 = 30;
pub const MAX_LIFETIME: u64 = 3600;
pub const ED_KID: &str = "ed-1";
pub const EC_KID: &str = "ec-1";
pub const CORP_ISS: &str = "https://sso.acme.example";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Ed,
    Ec,
}

impl Key {
    pub fn alg(self) -> &'static str {
        match self {
            Key::Ed => "EdDSA",
            Key::Ec => "ES256",
        }
    }
}

fn ed_pair() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7u8; 32]))
}

fn ec_key() -> Option<p256::ecdsa::SigningKey> {
    p256::ecdsa::SigningKey::from_slice(&[0x11u8; 32]).ok()
}

pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The signature of `input` (the `header.payload` text) with `key`.
pub fn sign(key: Key, input: &[u8]) -> Vec<u8> {
    match key {
        Key::Ed => ed_pair().sk.sign(input, None).to_vec(),
        Key::Ec => match ec_key() {
            Some(k) => {
                let s: p256::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            None => Vec::new(),
        },
    }
}

/// `b64u(header).b64u(payload).b64u(signature)`.
pub fn mint(key: Key, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64u(header), b64u(payload));
    let sig = sign(key, input.as_bytes());
    format!("{input}.{}", b64u(&sig))
}

/// A token that verifies under [`policy`] at [`NOW`].
pub fn valid_token(key: Key) -> String {
    let kid = match key {
        Key::Ed => ED_KID,
        Key::Ec => EC_KID,
    };
    let header = format!(r#"{{"alg":"{}","typ":"JWT","kid":"{kid}"}}"#, key.alg());
    mint(key, header.as_bytes(), valid_claims().as_bytes())
}

pub fn valid_claims() -> String {
    format!(
        r#"{{"iss":"{ISS}","sub":"alice","aud":["{AUDIENCE}","other"],"iat":{},"nbf":{},"exp":{},"jti":"t-1","groups":["eng","oncall"]}}"#,
        NOW - 10,
        NOW - 10,
        NOW + 600
    )
}

fn material(key: Key) -> Option<KeyMaterial> {
    match key {
        Key::Ed => Some(KeyMaterial::Ed25519 {
            x: b64u(&ed_pair().pk[..]),
        }),
        Key::Ec => {
            let pt = ec_key()?.verifying_key().to_encoded_point(false);
            Some(KeyMaterial::P256 {
                x: b64u(pt.x()?),
                y: b64u(pt.y()?),
            })
        }
    }
}

/// The verification policy: issuer [`ISS`] with both fixed keys (by kid)
/// and a kid-less Ed25519 key; issuer `corp-sso` with the example JWKS.
pub fn policy() -> Result<Policy, String> {
    let ed = material(Key::Ed).ok_or("ed25519 key")?;
    let ec = material(Key::Ec).ok_or("p256 key")?;
    let fuzz = Issuer {
        name: "fuzz".into(),
        issuer: ISS.into(),
        audiences: vec![AUDIENCE.into(), "mcp".into()],
        algorithms: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
        keys: vec![
            Jwk {
                kid: Some(ED_KID.into()),
                alg: None,
                key: ed.clone(),
            },
            Jwk {
                kid: Some(EC_KID.into()),
                alg: Some(Alg::ES256),
                key: ec,
            },
            Jwk {
                kid: None,
                alg: None,
                key: ed,
            },
        ],
        groups_claim: "groups".into(),
        max_token_lifetime_secs: Some(MAX_LIFETIME),
        leeway_secs: LEEWAY,
    };
    let jwks_path = super::policies::repo_root().join("examples/mcp-tools/keys/corp-sso.jwks.json");
    let text =
        std::fs::read_to_string(&jwks_path).map_err(|e| format!("{}: {e}", jwks_path.display()))?;
    let corp_keys = parse_jwks(&text).map_err(|e| e.to_string())?;
    let corp = Issuer {
        name: "corp-sso".into(),
        issuer: CORP_ISS.into(),
        audiences: vec![AUDIENCE.into()],
        algorithms: vec![Alg::RS256, Alg::EdDSA],
        keys: corp_keys,
        groups_claim: "realm.roles".into(),
        max_token_lifetime_secs: None,
        leeway_secs: 0,
    };
    Ok(Policy {
        issuers: vec![fuzz, corp],
        ..Policy::default()
    })
}

/// The verifier of [`policy`]; exits on a broken setup.
pub fn must_verifier() -> (Policy, Verifier) {
    let built = policy().and_then(|p| Verifier::new(&p).map(|v| (p, v)));
    match built {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fuzz setup: {e}");
            std::process::exit(2);
        }
    }
}
