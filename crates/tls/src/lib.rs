//! TLS for Sluice's listeners.
//!
//! [`CertificateFiles`] names a PEM certificate chain, its private key and, for mutual TLS,
//! the PEM certificates of the CAs that client certificates must chain to. A
//! [`Reloadable`] holds one listener's current rustls server config (with that listener's
//! ALPN protocols); [`Reloadable::reload`] reads the files again and swaps the config in, so
//! connections accepted afterwards use the new certificates while open ones go on with
//! theirs. [`Reloadable::accept`] runs one handshake (bounded by [`HANDSHAKE_TIMEOUT`]) and
//! gives the stream with the client certificate's [`principal`].
#![warn(missing_docs)]

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN protocol of HTTP/2 (gRPC).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol of HTTP/1.1 (the metrics endpoint).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why certificates could not be loaded or a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{what} {}: {reason}", path.display())]
    Pem {
        /// What the file should hold (`certificate`, `private key`, `client CA`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and key do not make a server config (e.g. they do not match).
    #[error("certificate {} with key {}: {source}", cert.display(), key.display())]
    Config {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The client CA certificates do not make a verifier.
    #[error("client CA {}: {reason}", path.display())]
    ClientCa {
        /// The client CA file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The handshake failed (or the client sent no acceptable certificate).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The client did not finish its handshake in time.
    #[error("TLS handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
}

/// The PEM files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to; when set, every client must
    /// present one (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl CertificateFiles {
    /// Reads the files and builds a server config offering `alpn` (most preferred first).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
        let chain = read_certificates("certificate", &self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Pem {
            what: "private key",
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let builder = ServerConfig::builder();
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certificates("client CA", path)? {
                    roots.add(ca).map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder
                .with_single_cert(chain, key)
                .map_err(|source| TlsError::Config {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    source,
                })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Every certificate in the PEM file at `path`; at least one.
fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("no CERTIFICATE block in the file".to_owned()));
    }
    Ok(certificates)
}

/// One listener's TLS: its current server config, replaced by [`Reloadable::reload`].
#[derive(Debug)]
pub struct Reloadable {
    files: CertificateFiles,
    alpn: Vec<&'static [u8]>,
    /// The config new connections get.
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    /// Loads `files` for a listener offering `alpn`.
    pub fn new(files: CertificateFiles, alpn: &[&'static [u8]]) -> Result<Reloadable, TlsError> {
        let config = files.server_config(alpn)?;
        Ok(Reloadable {
            files,
            alpn: alpn.to_vec(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; connections accepted from now on use what they hold, open
    /// ones are untouched. On failure the current config stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        Reloadable::reload_all([self])
    }

    /// [`Reloadable::reload`] for every one of `listeners`, all or none: each reads its
    /// files, and only when every one could are the new configs swapped in.
    pub fn reload_all<'a>(
        listeners: impl IntoIterator<Item = &'a Reloadable>,
    ) -> Result<(), TlsError> {
        let fresh = listeners
            .into_iter()
            .map(|listener| Ok((listener, listener.files.server_config(&listener.alpn)?)))
            .collect::<Result<Vec<_>, TlsError>>()?;
        for (listener, config) in fresh {
            *listener.current.write() = Arc::new(config);
        }
        Ok(())
    }

    /// An acceptor with the current config.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.read()))
    }

    /// Runs the server side of a handshake on `stream` (for at most
    /// [`HANDSHAKE_TIMEOUT`]); gives the TLS stream and the client certificate's
    /// [`principal`], if the client sent one.
    pub async fn accept<S>(&self, stream: S) -> Result<(TlsStream<S>, Option<String>), TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = self.acceptor().accept(stream);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| TlsError::HandshakeTimeout(HANDSHAKE_TIMEOUT))?
            .map_err(TlsError::Handshake)?;
        let principal = principal(stream.get_ref().1);
        Ok((stream, principal))
    }
}

/// A connection of a listener that may or may not serve TLS.
#[derive(Debug)]
pub enum Transport<S> {
    /// Plaintext.
    Plain(S),
    /// TLS over `S`.
    Tls(Box<TlsStream<S>>),
}

impl<S> Transport<S> {
    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(stream) => stream.get_ref().0,
        }
    }
}

/// `stream` as it is when `tls` is `None`, else after a TLS handshake (see
/// [`Reloadable::accept`]); with the client certificate's principal.
pub async fn accept<S>(
    tls: Option<&Reloadable>,
    stream: S,
) -> Result<(Transport<S>, Option<String>), TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tls {
        None => Ok((Transport::Plain(stream), None)),
        Some(tls) => {
            let (stream, principal) = tls.accept(stream).await?;
            Ok((Transport::Tls(Box::new(stream)), principal))
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Transport::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(stream) => stream.is_write_vectored(),
            Transport::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// The principal of a connection's client certificate: its subject's common name, or the
/// whole subject (RFC 4514 text) when it has none. `None` without a client certificate
/// (or with one that does not parse, which the verifier would have refused).
pub fn principal(connection: &ServerConnection) -> Option<String> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = certificate.subject();
    let common_name = subject
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok().map(str::to_owned));
    common_name.or_else(|| Some(subject.to_string()).filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate and key (PEM) signed by `ca`.
    fn leaf(ca: &Ca, names: &[&str], cn: Option<&str>) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        } else {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Sluice Tests");
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    /// Connects a rustls client trusting `ca` (with `client` as its certificate) to
    /// `server`, and gives what the server saw as the principal.
    async fn handshake(
        server: &Reloadable,
        ca: &str,
        client: Option<(String, String)>,
    ) -> Result<Option<String>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let client = tokio::spawn(async move {
            let mut stream = connector.connect(name, client_io).await?;
            stream.write_all(b"ping").await?;
            let mut answer = [0; 4];
            stream.read_exact(&mut answer).await?;
            Ok::<_, io::Error>(answer)
        });
        let (mut stream, principal) = server.accept(server_io).await?;
        let mut ping = [0; 4];
        stream.read_exact(&mut ping).await.unwrap();
        stream.write_all(b"pong").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(&client.await.unwrap().unwrap(), b"pong");
        Ok(principal)
    }

    #[tokio::test]
    async fn serves_tls_and_names_the_client_by_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = ca("server CA");
        let client_ca = ca("client CA");
        let (cert, key) = leaf(&server_ca, &["localhost"], Some("localhost"));
        let files = CertificateFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: write(dir.path(), "key.pem", &key),
            client_ca: None,
        };
        let plain = Reloadable::new(files.clone(), &[ALPN_H2]).unwrap();
        assert_eq!(handshake(&plain, &server_ca.pem, None).await.unwrap(), None);

        let mutual = Reloadable::new(
            CertificateFiles {
                client_ca: Some(write(dir.path(), "ca.pem", &client_ca.pem)),
                ..files
            },
            &[],
        )
        .unwrap();
        let alice = leaf(&client_ca, &[], Some("alice"));
        assert_eq!(
            handshake(&mutual, &server_ca.pem, Some(alice))
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        let nameless = leaf(&client_ca, &[], None);
        assert_eq!(
            handshake(&mutual, &server_ca.pem, Some(nameless))
                .await
                .unwrap()
                .as_deref(),
            Some("O=Sluice Tests")
        );
        // No certificate, or one from another CA: refused.
        assert!(matches!(
            handshake(&mutual, &server_ca.pem, None).await,
            Err(TlsError::Handshake(_))
        ));
        let stranger = leaf(&ca("other"), &[], Some("mallory"));
        assert!(
            handshake(&mutual, &server_ca.pem, Some(stranger))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn reload_swaps_certificates_and_keeps_the_old_ones_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = ca("first");
        let second = ca("second");
        let (cert, key) = leaf(&first, &["localhost"], Some("localhost"));
        let files = CertificateFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: write(dir.path(), "key.pem", &key),
            client_ca: None,
        };
        let server = Reloadable::new(files.clone(), &[]).unwrap();

        write(dir.path(), "cert.pem", "not a certificate");
        let err = server.reload().unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        assert!(handshake(&server, &first.pem, None).await.is_ok());

        let (cert, key) = leaf(&second, &["localhost"], Some("localhost"));
        write(dir.path(), "cert.pem", &cert);
        write(dir.path(), "key.pem", &key);
        server.reload().unwrap();
        assert!(handshake(&server, &second.pem, None).await.is_ok());
        assert!(handshake(&server, &first.pem, None).await.is_err());
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = ca("first");
        let (cert, _) = leaf(&first, &["localhost"], None);
        let (_, other_key) = leaf(&first, &["localhost"], None);
        let files = CertificateFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: dir.path().join("missing.pem"),
            client_ca: None,
        };
        let err = files.server_config(&[]).unwrap_err().to_string();
        assert!(
            err.contains("private key") && err.contains("missing.pem"),
            "{err}"
        );
        let mismatched = CertificateFiles {
            key: write(dir.path(), "key.pem", &other_key),
            ..files.clone()
        };
        let err = mismatched.server_config(&[]).unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
        let empty_ca = CertificateFiles {
            client_ca: Some(write(dir.path(), "ca.pem", "")),
            ..mismatched
        };
        let err = empty_ca.server_config(&[]).unwrap_err().to_string();
        assert!(err.contains("client CA") && err.contains("ca.pem"), "{err}");
    }
}
