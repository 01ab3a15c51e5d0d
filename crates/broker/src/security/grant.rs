//! What an open stream was allowed by: a subscription, a consumer group or share group
//! session, an AMQP consumer. Checked again whenever the ACLs or users change, so revoking
//! an ACL ends the streams it allowed, as Kafka's check on every Fetch does.

use std::sync::atomic::Ordering;

use super::acl::{Operation, Resource, ResourceType};
use super::{Caller, Security};
use crate::BrokerError;

/// One operation on one resource a stream needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The operation.
    pub operation: Operation,
    /// The kind of resource.
    pub kind: ResourceType,
    /// Its name.
    pub name: String,
}

impl Need {
    /// `operation` on topic `name`.
    pub fn topic(operation: Operation, name: &str) -> Need {
        Need {
            operation,
            kind: ResourceType::Topic,
            name: name.to_owned(),
        }
    }

    /// `operation` on group `name`.
    pub fn group(operation: Operation, name: &str) -> Need {
        Need {
            operation,
            kind: ResourceType::Group,
            name: name.to_owned(),
        }
    }
}

/// A caller's authorization for a stream, with what it needs; see [`Security::grant`].
#[derive(Debug, Clone)]
pub struct Grant {
    caller: Caller,
    needs: Vec<Need>,
    /// The ACL generation it was last checked at.
    checked_at: u64,
}

impl Grant {
    /// Who the stream is for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl Security {
    /// Authorizes each of `needs` for `caller` (a denial is logged and counted) and gives
    /// the grant that [`Security::recheck`] checks again later.
    pub fn grant(&self, caller: &Caller, needs: Vec<Need>) -> Result<Grant, BrokerError> {
        let checked_at = self.generation.load(Ordering::Acquire);
        self.authorize_all(caller, &needs)?;
        Ok(Grant {
            caller: caller.clone(),
            needs,
            checked_at,
        })
    }

    /// Fails (logged and counted) once `grant` no longer holds. Costs one atomic load unless
    /// the ACLs or users changed since it was last checked.
    pub fn recheck(&self, grant: &mut Grant) -> Result<(), BrokerError> {
        let now = self.generation.load(Ordering::Acquire);
        if now == grant.checked_at {
            return Ok(());
        }
        self.authorize_all(&grant.caller, &grant.needs)?;
        grant.checked_at = now;
        Ok(())
    }

    fn authorize_all(&self, caller: &Caller, needs: &[Need]) -> Result<(), BrokerError> {
        for need in needs {
            let resource = Resource {
                kind: need.kind,
                name: &need.name,
            };
            self.authorize(caller, need.operation, &resource)?;
        }
        Ok(())
    }
}
