//! Connecting fails with errors that say what went wrong, before any call is made.

use anyhow::{Result, bail};
use sluice_client::{Client, Error};

#[tokio::test]
async fn a_malformed_url_is_rejected() -> Result<()> {
    match Client::connect("not a url").await {
        Err(Error::InvalidUrl { url, .. }) => assert_eq!(url, "not a url"),
        other => bail!("expected InvalidUrl, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn no_server_is_a_connect_error_naming_the_url() -> Result<()> {
    // A port nobody listens on: bound, then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{addr}");
    match Client::connect(url.as_str()).await {
        Err(err @ Error::Connect { .. }) => {
            assert_eq!(err.to_string(), format!("cannot connect to {url}"));
            assert!(std::error::Error::source(&err).is_some(), "cause kept");
            assert_eq!(err.code(), None);
        }
        other => bail!("expected Connect, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_ca_certificate_with_a_plaintext_url_is_refused_rather_than_ignored() -> Result<()> {
    let connected = Client::builder("http://127.0.0.1:50051")
        .ca_certificate("-----BEGIN CERTIFICATE-----\n")
        .connect()
        .await;
    match connected {
        Err(Error::InvalidArgument(text)) => assert!(text.contains("https://"), "{text}"),
        other => bail!("expected InvalidArgument, got {other:?}"),
    }
    Ok(())
}
