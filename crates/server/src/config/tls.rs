//! The `[tls]` table: the certificate, its key and the client CA (mutual TLS), and which
//! listeners serve TLS.

use std::path::PathBuf;

use serde::Deserialize;
use sluice_tls::CertificateFiles;

use super::{invalid, parse};
use crate::error::ServerError;

/// The `[tls]` table.
///
/// With `cert` and `key` set every listener serves TLS, unless its own switch
/// (`grpc`, `metrics`, `kafka`, `amqp`) is `false`, which keeps it plaintext (e.g. one on
/// loopback beside TLS ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// `tls.cert`: PEM file with the server's certificate chain, leaf first (`--tls-cert`).
    pub cert: Option<PathBuf>,
    /// `tls.key`: PEM file with the certificate's private key (`--tls-key`).
    pub key: Option<PathBuf>,
    /// `tls.client_ca`: PEM file with the CAs client certificates must chain to; every
    /// client of a TLS listener must then present one (`--tls-client-ca`).
    pub client_ca: Option<PathBuf>,
    /// `tls.grpc`: whether the gRPC listener serves TLS (default: yes, with a cert).
    pub grpc: Option<bool>,
    /// `tls.metrics`: whether the metrics endpoint serves TLS (default: yes, with a cert).
    pub metrics: Option<bool>,
    /// `tls.kafka`: whether the Kafka listener serves TLS (default: yes, with a cert).
    pub kafka: Option<bool>,
    /// `tls.amqp`: whether the AMQP listener serves TLS (default: yes, with a cert).
    pub amqp: Option<bool>,
}

/// Which listeners serve TLS, with which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate, key and client CA.
    pub files: CertificateFiles,
    /// The gRPC listener serves TLS.
    pub grpc: bool,
    /// The metrics endpoint serves TLS.
    pub metrics: bool,
    /// The Kafka listener serves TLS.
    pub kafka: bool,
    /// The AMQP listener serves TLS.
    pub amqp: bool,
}

impl TlsSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    pub(super) fn overlay(self, higher: TlsSettings) -> TlsSettings {
        TlsSettings {
            cert: higher.cert.or(self.cert),
            key: higher.key.or(self.key),
            client_ca: higher.client_ca.or(self.client_ca),
            grpc: higher.grpc.or(self.grpc),
            metrics: higher.metrics.or(self.metrics),
            kafka: higher.kafka.or(self.kafka),
            amqp: higher.amqp.or(self.amqp),
        }
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    pub(super) fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        match name {
            "cert" => self.cert = Some(PathBuf::from(value)),
            "key" => self.key = Some(PathBuf::from(value)),
            "client_ca" => self.client_ca = Some(PathBuf::from(value)),
            "grpc" => self.grpc = Some(parse(key, value)?),
            "metrics" => self.metrics = Some(parse(key, value)?),
            "kafka" => self.kafka = Some(parse(key, value)?),
            "amqp" => self.amqp = Some(parse(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The TLS listeners (`None`: none), checked: a certificate needs its key and the
    /// other way round, and a client CA or a listener asked to serve TLS needs both.
    pub(super) fn resolve(&self) -> Result<Option<TlsConfig>, ServerError> {
        let shown = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (Some(cert), None) => {
                return Err(invalid(
                    "tls.cert",
                    &cert.display().to_string(),
                    "needs tls.key (--tls-key) as well",
                ));
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "tls.key",
                    &key.display().to_string(),
                    "needs tls.cert (--tls-cert) as well",
                ));
            }
            (None, None) => {
                if self.client_ca.is_some() {
                    return Err(invalid(
                        "tls.client_ca",
                        &shown(&self.client_ca),
                        "needs tls.cert and tls.key (--tls-cert, --tls-key)",
                    ));
                }
                let asked = [
                    ("tls.grpc", self.grpc),
                    ("tls.metrics", self.metrics),
                    ("tls.kafka", self.kafka),
                    ("tls.amqp", self.amqp),
                ];
                if let Some((name, _)) = asked.iter().find(|(_, on)| *on == Some(true)) {
                    return Err(invalid(
                        name,
                        "true",
                        "needs tls.cert and tls.key (--tls-cert, --tls-key)",
                    ));
                }
                return Ok(None);
            }
        };
        Ok(Some(TlsConfig {
            files: CertificateFiles {
                cert,
                key,
                client_ca: self.client_ca.clone(),
            },
            grpc: self.grpc.unwrap_or(true),
            metrics: self.metrics.unwrap_or(true),
            kafka: self.kafka.unwrap_or(true),
            amqp: self.amqp.unwrap_or(true),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::PathBuf;

    use crate::ServeArgs;
    use crate::config::tests::load;

    #[test]
    fn tls_comes_from_flags_environment_and_file_with_per_listener_switches() {
        assert_eq!(load(&ServeArgs::default(), &[]).unwrap().tls, None);
        let args = ServeArgs {
            tls_cert: Some(PathBuf::from("cert.pem")),
            tls_key: Some(PathBuf::from("key.pem")),
            ..ServeArgs::default()
        };
        let tls = load(&args, &[]).unwrap().tls.expect("tls on");
        assert_eq!(tls.files.cert, PathBuf::from("cert.pem"));
        assert_eq!(tls.files.client_ca, None);
        assert!(tls.grpc && tls.metrics && tls.kafka && tls.amqp);

        let tls = load(
            &ServeArgs::default(),
            &[
                ("SLUICE_TLS_CERT", "c.pem"),
                ("SLUICE_TLS_KEY", "k.pem"),
                ("SLUICE_TLS_CLIENT_CA", "ca.pem"),
                ("SLUICE_TLS_KAFKA", "false"),
            ],
        )
        .unwrap()
        .tls
        .expect("tls on");
        assert_eq!(tls.files.key, PathBuf::from("k.pem"));
        assert_eq!(tls.files.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(!tls.kafka && tls.grpc);
        // Sources mix: the key from a flag, the certificate from the environment.
        let args = ServeArgs {
            tls_key: Some(PathBuf::from("flag-key.pem")),
            ..ServeArgs::default()
        };
        let tls = load(&args, &[("SLUICE_TLS_CERT", "env-cert.pem")])
            .unwrap()
            .tls
            .expect("tls on");
        assert_eq!(tls.files.cert, PathBuf::from("env-cert.pem"));
        assert_eq!(tls.files.key, PathBuf::from("flag-key.pem"));

        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(
            br#"
            [tls]
            cert = "file-cert.pem"
            key = "file-key.pem"
            metrics = false
            amqp = false
            "#,
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            tls_cert: Some(PathBuf::from("flag-cert.pem")),
            ..ServeArgs::default()
        };
        let tls = load(&args, &[]).unwrap().tls.expect("tls on");
        assert_eq!(tls.files.cert, PathBuf::from("flag-cert.pem"));
        assert_eq!(tls.files.key, PathBuf::from("file-key.pem"));
        assert!(!tls.metrics && !tls.amqp && tls.grpc && tls.kafka);
    }

    #[test]
    fn incomplete_tls_settings_name_what_is_missing() {
        // (variable, value, its setting, what it needs)
        let cases = [
            ("SLUICE_TLS_CERT", "c.pem", "tls.cert", "tls.key"),
            ("SLUICE_TLS_KEY", "k.pem", "tls.key", "tls.cert"),
            (
                "SLUICE_TLS_CLIENT_CA",
                "ca.pem",
                "tls.client_ca",
                "tls.cert",
            ),
            ("SLUICE_TLS_GRPC", "true", "tls.grpc", "tls.cert"),
        ];
        for (variable, value, key, needs) in cases {
            let err = load(&ServeArgs::default(), &[(variable, value)])
                .expect_err(key)
                .to_string();
            assert!(err.contains(key) && err.contains(needs), "{err}");
        }
        let err = load(&ServeArgs::default(), &[("SLUICE_TLS_KAFKA", "maybe")])
            .expect_err("not a bool")
            .to_string();
        assert!(err.contains("tls.kafka"), "{err}");
    }
}
