//! SaslHandshake and SaslAuthenticate (KIP-43, KIP-152): a connection logs in with PLAIN,
//! SCRAM-SHA-256 or SCRAM-SHA-512, its tokens carried in SaslAuthenticate requests.
//!
//! The handshake names the mechanism; PLAIN then takes one token, SCRAM two (client-first,
//! client-final). A failed login is answered with SASL_AUTHENTICATION_FAILED (after the
//! broker's failed-login delay) and the connection is closed, as Kafka does; so is an
//! unknown mechanism (UNSUPPORTED_SASL_MECHANISM) and a token out of turn
//! (ILLEGAL_SASL_STATE). Handshake version 0 (tokens without Kafka framing) is not served.
//! Re-authentication (KIP-368) is not offered: sessions do not expire.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::{MECHANISMS, Principal, ScramExchange, ScramMechanism};

use super::{Context, PROTOCOL, respond};
use crate::KafkaError;

/// Where a connection is in its login.
#[derive(Debug, Default)]
pub(crate) enum Login {
    /// No mechanism chosen yet.
    #[default]
    Start,
    /// PLAIN chosen: its one token comes next.
    Plain,
    /// A SCRAM mechanism chosen: the client-first message comes next.
    ScramFirst(ScramMechanism),
    /// The server-first message sent: the client-final message comes next.
    ScramFinal(ScramExchange),
    /// Logged in (or refused): no more tokens are taken.
    Done,
}

/// The answer to a SASL request, and whether the connection ends after it.
#[derive(Debug)]
pub(crate) struct Answered {
    /// The response frame.
    pub(crate) frame: Bytes,
    /// Why the connection ends once the frame is sent, if it does.
    pub(crate) close: Option<KafkaError>,
}

/// Answers SaslHandshake: takes the mechanism if it is offered.
pub(crate) async fn handshake(
    ctx: &Context,
    login: &mut Login,
    header: &RequestHeader,
    request: SaslHandshakeRequest,
) -> Result<Answered, KafkaError> {
    let mechanisms = MECHANISMS
        .iter()
        .map(|m| StrBytes::from_static_str(m))
        .collect();
    let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    let name = request.mechanism.as_str();
    let chosen = match (&*login, name) {
        (Login::Start, "PLAIN") => Some(Login::Plain),
        (Login::Start, name) => ScramMechanism::from_name(name).map(Login::ScramFirst),
        _ => None,
    };
    let (code, close) = match chosen {
        Some(next) => {
            *login = next;
            (0, None)
        }
        None if matches!(login, Login::Start) => {
            let reason = format!(
                "SASL mechanism {name:?} is not offered: this server offers {}",
                MECHANISMS.join(", ")
            );
            refuse(ctx, name, &reason).await;
            (
                ResponseError::UnsupportedSaslMechanism.code(),
                Some(KafkaError::AuthenticationFailed(reason)),
            )
        }
        None => {
            let reason = "SaslHandshake after a mechanism was chosen".to_owned();
            refuse(ctx, name, &reason).await;
            (
                ResponseError::IllegalSaslState.code(),
                Some(KafkaError::AuthenticationFailed(reason)),
            )
        }
    };
    if close.is_some() {
        *login = Login::Done;
    }
    let frame = respond(
        ApiKey::SaslHandshake,
        header,
        &response.with_error_code(code),
    )?;
    Ok(Answered { frame, close })
}

/// Answers SaslAuthenticate: takes the next token of the chosen mechanism; a finished login
/// sets the connection's principal.
pub(crate) async fn authenticate(
    ctx: &mut Context,
    login: &mut Login,
    header: &RequestHeader,
    request: SaslAuthenticateRequest,
) -> Result<Answered, KafkaError> {
    let host = ctx.peer.ip();
    let security = ctx.broker.security();
    let token = &request.auth_bytes[..];
    let outcome = match std::mem::take(login) {
        Login::Plain => match plain_credentials(token) {
            Some((user, password)) => security
                .login_plain(host, PROTOCOL, &user, &password)
                .await
                .map(|principal| (Some(principal), Bytes::new()))
                .map_err(|e| e.to_string()),
            None => {
                let reason = "the PLAIN token is not authzid NUL user NUL password".to_owned();
                refuse(ctx, "PLAIN", &reason).await;
                Err(reason)
            }
        },
        Login::ScramFirst(mechanism) => security
            .scram_first(host, PROTOCOL, mechanism, token)
            .await
            .map(|(exchange, server_first)| {
                *login = Login::ScramFinal(exchange);
                (None, Bytes::from(server_first))
            })
            .map_err(|e| e.to_string()),
        Login::ScramFinal(exchange) => security
            .scram_final(host, PROTOCOL, exchange, token)
            .await
            .map(|(principal, server_final)| (Some(principal), Bytes::from(server_final)))
            .map_err(|e| e.to_string()),
        Login::Start | Login::Done => {
            let reason =
                "SaslAuthenticate without a mechanism chosen by SaslHandshake first".to_owned();
            refuse(ctx, "", &reason).await;
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_string(reason.clone())));
            let frame = respond(ApiKey::SaslAuthenticate, header, &response)?;
            return Ok(Answered {
                frame,
                close: Some(KafkaError::AuthenticationFailed(reason)),
            });
        }
    };
    let (response, close) = match outcome {
        Ok((principal, token)) => {
            if let Some(principal) = principal {
                *login = Login::Done;
                ctx.caller.principal = principal;
            }
            (
                SaslAuthenticateResponse::default().with_auth_bytes(token),
                None,
            )
        }
        Err(reason) => {
            *login = Login::Done;
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(reason.clone())));
            (response, Some(KafkaError::AuthenticationFailed(reason)))
        }
    };
    let frame = respond(ApiKey::SaslAuthenticate, header, &response)?;
    Ok(Answered { frame, close })
}

/// Whether a connection that has not logged in may send `key`: only the APIs a login needs.
pub(crate) fn allowed_before_login(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    )
}

/// Whether a connection authenticated as `principal` still has to log in.
pub(crate) fn must_log_in(ctx: &Context, principal: &Principal) -> bool {
    ctx.broker.security().auth_required() && principal.is_anonymous()
}

/// Logs and counts a login refused before a credential was checked.
async fn refuse(ctx: &Context, mechanism: &str, reason: &str) {
    ctx.broker
        .security()
        .refuse_login(ctx.peer.ip(), PROTOCOL, mechanism, reason)
        .await;
}

/// The user and password of a PLAIN token (RFC 4616: `[authzid] NUL authcid NUL passwd`).
/// An authorization identity other than the user is refused: acting as another user is not
/// offered.
fn plain_credentials(token: &[u8]) -> Option<(String, String)> {
    let mut parts = token.split(|&b| b == 0);
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || !(authzid.is_empty() || authzid == user) {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(password.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens_carry_user_and_password_and_no_other_identity() {
        assert_eq!(
            plain_credentials(b"\0alice\0secret"),
            Some(("alice".to_owned(), "secret".to_owned()))
        );
        assert_eq!(
            plain_credentials(b"alice\0alice\0secret"),
            Some(("alice".to_owned(), "secret".to_owned()))
        );
        assert_eq!(plain_credentials(b"bob\0alice\0secret"), None);
        assert_eq!(plain_credentials(b"\0alice"), None);
        assert_eq!(plain_credentials(b"\0\0secret"), None);
        assert_eq!(plain_credentials(b"\0a\0b\0c"), None);
    }
}
