//! SCRAM (RFC 5802, RFC 7677): the stored form of a password and the server's side of the
//! exchange, for SCRAM-SHA-256 and SCRAM-SHA-512.
//!
//! A password is kept only as its salt, iteration count, `StoredKey` and `ServerKey`;
//! neither gives the password back, and `StoredKey` alone does not let anyone log in.
//! Passwords are taken as given (no SASLprep normalisation), as Kafka does.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The fewest PBKDF2 iterations accepted for a stored credential (Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most PBKDF2 iterations accepted (Kafka's maximum).
pub const MAX_ITERATIONS: u32 = 16384;
/// Bytes of salt made for a new credential.
const SALT_BYTES: usize = 16;
/// Bytes of randomness in the server's nonce.
const NONCE_BYTES: usize = 18;

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, in the order they are offered.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name, e.g. `SCRAM-SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism a SASL name stands for (case-sensitive, as SASL names are).
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(bytes).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A password's stored form for one mechanism.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// Random salt, base64 in the file.
    #[serde(with = "base64_bytes")]
    salt: Vec<u8>,
    /// PBKDF2 iterations.
    iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    #[serde(with = "base64_bytes")]
    stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    #[serde(with = "base64_bytes")]
    server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys stay out of logs and debug output.
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Derives the stored form of `password` with a fresh random salt.
    pub fn new(mechanism: ScramMechanism, password: &str, iterations: u32) -> ScramCredential {
        let salt = random_bytes(SALT_BYTES);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        ScramCredential {
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// PBKDF2 iterations of this credential.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Whether `password` is the one this credential was made from (constant time in the
    /// comparison; the PBKDF2 work dominates).
    pub fn verify(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let stored = mechanism.hash(&mechanism.hmac(&salted, b"Client Key"));
        bool::from(stored.ct_eq(&self.stored_key))
    }

    /// Whether the fields are well formed for `mechanism` (checked on load).
    pub(crate) fn is_valid(&self, mechanism: ScramMechanism) -> bool {
        let len = mechanism.hash(b"").len();
        (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations)
            && !self.salt.is_empty()
            && self.stored_key.len() == len
            && self.server_key.len() == len
    }
}

/// Why a SCRAM exchange failed; the text is safe to send to the client (it names no
/// secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that is not what RFC 5802 says it must be.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Channel binding was asked for; it is not offered.
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    /// The client's nonce does not extend the server's.
    #[error("SCRAM nonce mismatch")]
    Nonce,
    /// Unknown user or wrong password (the two are not told apart).
    #[error("invalid user name or password")]
    Credentials,
}

/// The server's side of one SCRAM exchange, between the client's first message and its
/// final one.
pub struct ScramExchange {
    mechanism: ScramMechanism,
    user: String,
    /// `client-first-message-bare`.
    client_first_bare: String,
    /// `server-first-message`.
    server_first: String,
    /// The combined nonce the client must echo.
    nonce: String,
    /// The credential to check against; `None` for an unknown user, whose exchange runs
    /// with a made-up salt so it looks like any other and fails at the proof.
    credential: Option<ScramCredential>,
}

impl fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramExchange")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The parsed `client-first-message`.
#[derive(Debug)]
pub(crate) struct ClientFirst {
    /// The user name, `=2C` and `=3D` decoded.
    pub(crate) user: String,
    bare: String,
    client_nonce: String,
}

impl ClientFirst {
    /// Parses `gs2-header client-first-message-bare`.
    pub(crate) fn parse(message: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (cbind, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel-binding flag")),
        }
        // The authorisation identity (`a=`), if any, must be the user itself.
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let mut attributes = bare.split(',');
        let user = attributes
            .next()
            .and_then(|a| a.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no user name"))?;
        let user = decode_name(user)?;
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed("no client nonce"))?;
        if let Some(authzid) = authzid.strip_prefix("a=")
            && decode_name(authzid)? != user
        {
            return Err(ScramError::Malformed(
                "authorization identity differs from the user",
            ));
        }
        Ok(ClientFirst {
            user,
            bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
        })
    }
}

/// What logins of users that do not exist are checked against, so that they cost and look
/// the same as those of users that do: a salt per name that stays the same from one
/// exchange to the next (keyed with a secret made at start-up), the configured iterations,
/// and a credential of a random password for PLAIN.
#[derive(Debug)]
pub(crate) struct Decoy {
    key: Vec<u8>,
    iterations: u32,
    credential: ScramCredential,
}

impl Decoy {
    pub(crate) fn new(iterations: u32) -> Decoy {
        let password = B64.encode(random_bytes(24));
        Decoy {
            key: random_bytes(32),
            iterations,
            credential: ScramCredential::new(ScramMechanism::Sha256, &password, iterations),
        }
    }

    /// A SCRAM-SHA-256 credential no password matches.
    pub(crate) fn credential(&self) -> ScramCredential {
        self.credential.clone()
    }

    /// The salt and iterations shown for unknown `user` under `mechanism`.
    fn salt(&self, mechanism: ScramMechanism, user: &str) -> (Vec<u8>, u32) {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(mechanism.name().as_bytes());
        mac.update(&[0]);
        mac.update(user.as_bytes());
        let salt = mac.finalize().into_bytes()[..SALT_BYTES].to_vec();
        (salt, self.iterations)
    }
}

impl ScramExchange {
    /// Answers `client_first` with the server-first message, checking against
    /// `credential` (the user's, or `None` when there is no such user: then the salt and
    /// iterations are `decoy`'s, and the proof fails).
    pub(crate) fn start(
        mechanism: ScramMechanism,
        client_first: ClientFirst,
        credential: Option<ScramCredential>,
        decoy: &Decoy,
    ) -> (ScramExchange, Vec<u8>) {
        let server_nonce = B64.encode(random_bytes(NONCE_BYTES));
        let nonce = format!("{}{server_nonce}", client_first.client_nonce);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => decoy.salt(mechanism, &client_first.user),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let answer = server_first.clone().into_bytes();
        let exchange = ScramExchange {
            mechanism,
            user: client_first.user,
            client_first_bare: client_first.bare,
            server_first,
            nonce,
            credential,
        };
        (exchange, answer)
    }

    /// The user the exchange is for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The mechanism.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Checks the client's final message; on success gives the server-final message
    /// (`v=ServerSignature`) that proves the server knew the credential.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if binding.first() == Some(&b'p') {
            return Err(ScramError::ChannelBinding);
        }
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let credential = self.credential.as_ref().ok_or(ScramError::Credentials)?;
        let m = self.mechanism;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::Credentials);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
            return Err(ScramError::Credentials);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// Decodes a SCRAM `saslname` (`=2C` is `,`, `=3D` is `=`).
fn decode_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `n` bytes from the operating system's random source.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}

/// Serde for byte strings kept as base64 text.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SCRAM client, as RFC 5802 describes it, for the tests.
    fn client_final(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let mut parts = server_first.split(',');
        let nonce = parts.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(parts.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = parts.next().unwrap()[2..].parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_sig = m.hmac(&m.hmac(&salted, b"Server Key"), auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(server_sig)).into_bytes(),
        )
    }

    fn exchange(m: ScramMechanism, stored: &str, tried: &str) -> Result<(), ScramError> {
        let credential = ScramCredential::new(m, stored, MIN_ITERATIONS);
        let first = ClientFirst::parse(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")?;
        assert_eq!(first.user, "alice");
        let decoy = Decoy::new(MIN_ITERATIONS);
        let (exchange, server_first) = ScramExchange::start(m, first, Some(credential), &decoy);
        let server_first = String::from_utf8(server_first).unwrap();
        let (final_message, expected) = client_final(
            m,
            tried,
            "n=alice,r=fyko+d2lbbFgONRv9qkxdawL",
            &server_first,
        );
        let answer = exchange.finish(final_message.as_bytes())?;
        assert_eq!(answer, expected, "the server signature proves the server");
        Ok(())
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails_for_both_mechanisms() {
        for m in ScramMechanism::ALL {
            exchange(m, "s3cret", "s3cret").expect("right password");
            assert_eq!(
                exchange(m, "s3cret", "guess"),
                Err(ScramError::Credentials),
                "{m}"
            );
        }
    }

    #[test]
    fn a_credential_verifies_its_password_only() {
        let c = ScramCredential::new(ScramMechanism::Sha512, "pw", MIN_ITERATIONS);
        assert!(c.verify(ScramMechanism::Sha512, "pw"));
        assert!(!c.verify(ScramMechanism::Sha512, "pW"));
        assert!(c.is_valid(ScramMechanism::Sha512));
        assert!(!c.is_valid(ScramMechanism::Sha256));
        assert!(!format!("{c:?}").contains("key"), "{c:?}");
    }

    #[test]
    fn malformed_and_channel_bound_first_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n,,",
            b"x,,n=a,r=b",
            b"n,,n=a",
            b"n,,n=a=zz,r=b",
            b"n,a=b,n=a,r=c",
        ] {
            assert!(
                matches!(ClientFirst::parse(bad), Err(ScramError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            ClientFirst::parse(b"p=tls-unique,,n=a,r=b").unwrap_err(),
            ScramError::ChannelBinding
        );
        let escaped = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=n1").expect("escaped name");
        assert_eq!(escaped.user, "a,b=c");
    }

    #[test]
    fn an_unknown_user_fails_at_the_proof_like_a_wrong_password() {
        let decoy = Decoy::new(8192);
        let start = || {
            let first = ClientFirst::parse(b"n,,n=nobody,r=abc").unwrap();
            ScramExchange::start(ScramMechanism::Sha256, first, None, &decoy)
        };
        let (_, again) = start();
        let (exchange, server_first) = start();
        let server_first = String::from_utf8(server_first).unwrap();
        // The same salt each time, and the configured iterations, as for a real user.
        let salt = |message: &str| {
            message
                .split(',')
                .find(|f| f.starts_with("s="))
                .map(str::to_owned)
        };
        assert_eq!(
            salt(&server_first),
            salt(&String::from_utf8(again).unwrap())
        );
        assert!(server_first.contains(",i=8192"), "{server_first}");
        let (final_message, _) =
            client_final(ScramMechanism::Sha256, "x", "n=nobody,r=abc", &server_first);
        assert_eq!(
            exchange.finish(final_message.as_bytes()),
            Err(ScramError::Credentials)
        );
    }

    #[test]
    fn a_replayed_nonce_is_refused() {
        let credential = ScramCredential::new(ScramMechanism::Sha256, "pw", MIN_ITERATIONS);
        let first = ClientFirst::parse(b"n,,n=u,r=abc").unwrap();
        let decoy = Decoy::new(MIN_ITERATIONS);
        let (exchange, _) =
            ScramExchange::start(ScramMechanism::Sha256, first, Some(credential), &decoy);
        assert_eq!(
            exchange.finish(b"c=biws,r=abcOTHER,p=AAAA"),
            Err(ScramError::Nonce)
        );
    }
}
