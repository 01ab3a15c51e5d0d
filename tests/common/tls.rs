//! Certificates made for a test (rcgen): a CA, the server's certificate and clients'.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority made for a test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate for `cn` (also valid for `localhost` and 127.0.0.1) and its key, PEM.
    pub fn issue(&self, cn: &str) -> Result<(String, String)> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes `text` to `dir/name`; its path as text.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text)?;
    path.to_str().map(str::to_owned).context("utf-8 path")
}

/// The server's certificate files, issued by `ca`, in `dir`; the `--tls-cert` and
/// `--tls-key` arguments naming them.
pub fn server_certificate(ca: &Ca, dir: &Path) -> Result<Vec<String>> {
    let (cert, key) = ca.issue("localhost")?;
    Ok(vec![
        "--tls-cert".into(),
        write(dir, "server.pem", &cert)?,
        "--tls-key".into(),
        write(dir, "server.key", &key)?,
    ])
}

pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
