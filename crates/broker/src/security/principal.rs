//! Who is asking: the principal a connection authenticated as, and where it connects from.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The principal name of a connection that has not authenticated (Kafka's `ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// An authenticated identity, written `User:NAME` as in Kafka's ACLs.
///
/// A SASL or AMQP login gives the user's name; a client certificate (mTLS) gives its
/// subject's common name. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: Arc<str>,
}

impl Principal {
    /// The user `name`.
    pub fn user(name: &str) -> Principal {
        Principal { name: name.into() }
    }

    /// The principal of a connection that did not authenticate.
    pub fn anonymous() -> Principal {
        Principal::user(ANONYMOUS)
    }

    /// The user name, without the `User:` prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the unauthenticated principal.
    pub fn is_anonymous(&self) -> bool {
        &*self.name == ANONYMOUS
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.name)
    }
}

/// A caller of broker operations: the principal, the address it connects from (ACLs may
/// name hosts) and the listener's protocol (for the audit log and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// From where.
    pub host: IpAddr,
    /// Through which protocol: `grpc`, `kafka`, `amqp` or `metrics`.
    pub protocol: &'static str,
}

impl Caller {
    /// A caller authenticated as `principal`, connected from `host` over `protocol`.
    pub fn new(principal: Principal, host: IpAddr, protocol: &'static str) -> Caller {
        Caller {
            principal,
            host,
            protocol,
        }
    }

    /// The broker acting on its own behalf (background work, in-process tools and tests):
    /// a superuser by construction.
    pub fn internal() -> Caller {
        Caller::new(
            Principal::user(INTERNAL),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "internal",
        )
    }

    /// Whether this is [`Caller::internal`].
    pub(crate) fn is_internal(&self) -> bool {
        self.protocol == "internal" && self.principal.name() == INTERNAL
    }
}

/// The principal name of [`Caller::internal`]; `:` keeps it out of reach of real user
/// names, which may not hold it.
const INTERNAL: &str = "sluice:internal";
