//! The caller's credentials, sent with every call as HTTP basic credentials.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The channel every service client of this crate calls through: the shared connection,
/// with the caller's credentials added to each call.
pub type Transport = InterceptedService<Channel, Credentials>;

/// A user name and password as an `authorization` header, or none. Its `Debug` output does
/// not show them.
#[derive(Clone, Default)]
pub struct Credentials {
    header: Option<AsciiMetadataValue>,
}

impl Credentials {
    /// Basic credentials for `user` and `password`.
    pub(crate) fn basic(user: &str, password: &str) -> Credentials {
        let encoded = B64.encode(format!("{user}:{password}"));
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Basic {encoded}"))
            .expect("base64 text is a valid header value");
        header.set_sensitive(true);
        Credentials {
            header: Some(header),
        }
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.header.is_some() {
            "Credentials(basic)"
        } else {
            "Credentials(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_sent_and_not_shown() {
        let mut credentials = Credentials::basic("alice", "s3cret");
        assert!(!format!("{credentials:?}").contains("s3cret"));
        let request = credentials.call(Request::new(())).expect("intercepted");
        let header = request.metadata().get("authorization").expect("header");
        assert_eq!(header.to_str().expect("ascii"), "Basic YWxpY2U6czNjcmV0");
    }

    #[test]
    fn no_credentials_send_no_header() {
        let request = Credentials::default()
            .call(Request::new(()))
            .expect("intercepted");
        assert!(request.metadata().get("authorization").is_none());
    }
}
