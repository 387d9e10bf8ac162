//! SCRAM-SHA-256 client (RFC 5802, RFC 7677), as PostgreSQL speaks it:
//! no channel binding (`n,,`). Pure functions: the caller supplies the
//! client nonce, so the RFC 7677 test vector checks them.
//!
//! Flow: [`ScramClient::client_first`] goes in a SASLInitialResponse
//! (mechanism `SCRAM-SHA-256`); the server's `AuthenticationSASLContinue`
//! data goes to [`ScramClient::client_final`], whose message goes in a
//! SASLResponse; the `AuthenticationSASLFinal` data goes to
//! [`ScramClient::verify_server_final`].
//!
//! The password is used as given (no SASLprep); PostgreSQL also uses the raw
//! bytes when a password is not valid SASLprep input, and ASCII passwords
//! are unchanged by it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The SASL mechanism name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Most PBKDF2 iterations accepted from a server (PostgreSQL's default is
/// 4096): bounds the work a hostile upstream can make the filter do.
pub const MAX_ITERATIONS: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed server-first message")]
    MalformedServerFirst,
    #[error("server nonce does not extend the client nonce")]
    NonceMismatch,
    #[error("iteration count {0} is out of range")]
    Iterations(u32),
    #[error("server-final message reports an error: {0}")]
    ServerError(String),
    #[error("malformed server-final message")]
    MalformedServerFinal,
    #[error("server signature does not verify")]
    BadServerSignature,
}

/// One SCRAM exchange.
#[derive(Debug, Clone)]
pub struct ScramClient {
    user: String,
    password: String,
    nonce: String,
}

/// What [`ScramClient::client_final`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// The client-final message to send.
    pub message: String,
    /// The ServerSignature the server-final must carry.
    pub server_signature: [u8; 32],
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    if let Ok(mut m) = HmacSha256::new_from_slice(key) {
        m.update(data);
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// `=` and `,` escaped in a SCRAM user name.
fn saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// `user` may be empty (PostgreSQL ignores it and uses the startup
    /// user); `nonce` must be printable ASCII without `,` (e.g. base64 of 18
    /// random bytes).
    pub fn new(user: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            user: user.to_owned(),
            password: password.to_owned(),
            nonce: nonce.to_owned(),
        }
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", saslname(&self.user), self.nonce)
    }

    /// The client-first message (`n,,n=user,r=nonce`).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare())
    }

    /// The client-final message computed from the server-first message.
    pub fn client_final(&self, server_first: &str) -> Result<ClientFinal, ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = Some(
                    STANDARD
                        .decode(v)
                        .map_err(|_| ScramError::MalformedServerFirst)?,
                );
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = Some(
                    v.parse::<u32>()
                        .map_err(|_| ScramError::MalformedServerFirst)?,
                );
            } else if attr.starts_with("m=") {
                // Mandatory extensions are not supported (RFC 5802 5.1).
                return Err(ScramError::MalformedServerFirst);
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::MalformedServerFirst);
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ScramError::Iterations(iterations));
        }
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        let without_proof = format!("c={},r={}", STANDARD.encode("n,,"), nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare(),
            server_first,
            without_proof
        );
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = [0u8; 32];
        for ((p, k), s) in proof.iter_mut().zip(client_key).zip(client_signature) {
            *p = k ^ s;
        }
        Ok(ClientFinal {
            message: format!("{},p={}", without_proof, STANDARD.encode(proof)),
            server_signature: hmac(&server_key, auth_message.as_bytes()),
        })
    }

    /// Checks the server-final message against the expected signature.
    pub fn verify_server_final(server_final: &str, expected: &[u8; 32]) -> Result<(), ScramError> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        let v = server_final
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or(ScramError::MalformedServerFinal)?;
        let sig = STANDARD
            .decode(v)
            .map_err(|_| ScramError::MalformedServerFinal)?;
        // Constant-time comparison.
        let same = sig.len() == expected.len()
            && sig
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}
