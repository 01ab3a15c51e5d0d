//! The broker's routing operations: declaring and deleting exchanges, defining and
//! forgetting queues, binding, and routing a message.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::routing::headers::XMatch;
use crate::routing::names::{
    RESERVED_PREFIX, is_built_in, validate_arguments, validate_exchange_name, validate_queue_name,
    validate_routing_key,
};
use crate::routing::record::Change;
use crate::routing::store::Changes;
use crate::routing::{BindingSpec, ExchangeKind, ExchangeSpec, QueueSpec};
use crate::{Broker, BrokerError};

const DEFAULT_EXCHANGE: &str =
    "the default exchange cannot be declared (but passively), deleted, bound or unbound";
const BUILT_IN: &str = "built-in exchanges cannot be deleted";
const RESERVED: &str = "the prefix \"amq.\" is reserved for built-in exchanges";

fn refused(exchange: &str, reason: &'static str) -> BrokerError {
    BrokerError::ExchangeAccessRefused {
        exchange: exchange.to_owned(),
        reason,
    }
}

fn exchange_not_found(exchange: &str) -> BrokerError {
    BrokerError::ExchangeNotFound {
        exchange: exchange.to_owned(),
    }
}

fn queue_not_found(queue: &str) -> BrokerError {
    BrokerError::QueueNotFound {
        queue: queue.to_owned(),
    }
}

/// Deletes `exchange` if it is auto-delete and has no binding left (RabbitMQ's rule).
fn auto_delete(changes: &mut Changes<'_>, exchange: &str) {
    let state = changes.state();
    if state.exchange(exchange).is_some_and(|e| e.auto_delete) && state.binding_count(exchange) == 0
    {
        changes.apply(Change::DeleteExchange(exchange.to_owned()));
    }
}

impl Broker {
    /// Declares an exchange. With `passive` it only checks that the exchange exists
    /// ([`BrokerError::ExchangeNotFound`] otherwise).
    ///
    /// Redeclaring an existing exchange succeeds when every field is equal, and is
    /// [`BrokerError::Inequivalent`] naming the first that differs (`type`, `durable`,
    /// `auto_delete`, `internal`, then arguments by name) otherwise. Creating a name that
    /// starts with `amq.` and declaring the default exchange `""` without `passive` are
    /// [`BrokerError::ExchangeAccessRefused`]. A name of more than 255 bytes or with other
    /// characters than ASCII letters, digits, `-`, `_`, `.` and `:`, and arguments outside
    /// the limits, are [`BrokerError::InvalidRequest`] (fields `exchange`, `arguments`).
    /// Returns once a durable exchange is durable.
    pub async fn declare_exchange(
        &self,
        spec: ExchangeSpec,
        passive: bool,
    ) -> Result<(), BrokerError> {
        self.check_running()?;
        validate_exchange_name("exchange", &spec.name)?;
        if passive {
            return self
                .routing
                .change(|changes| match changes.state().exchange(&spec.name) {
                    Some(_) => Ok(()),
                    None => Err(exchange_not_found(&spec.name)),
                })
                .await;
        }
        if spec.name.is_empty() {
            return Err(refused(&spec.name, DEFAULT_EXCHANGE));
        }
        validate_arguments(&spec.arguments)?;
        self.routing
            .change(|changes| match changes.state().exchange(&spec.name) {
                Some(current) => current.inequivalence(&spec).map_or(Ok(()), Err),
                None if spec.name.starts_with(RESERVED_PREFIX) => {
                    Err(refused(&spec.name, RESERVED))
                }
                None => {
                    changes.apply(Change::Exchange(spec));
                    Ok(())
                }
            })
            .await
    }

    /// Deletes an exchange and every binding from it. With `if_unused`, an exchange that
    /// has bindings is [`BrokerError::ExchangeInUse`]. A missing exchange is
    /// [`BrokerError::ExchangeNotFound`]; the built-in ones are
    /// [`BrokerError::ExchangeAccessRefused`].
    pub async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), BrokerError> {
        self.check_running()?;
        if name.is_empty() {
            return Err(refused(name, DEFAULT_EXCHANGE));
        }
        if is_built_in(name) {
            return Err(refused(name, BUILT_IN));
        }
        self.routing
            .change(|changes| {
                let state = changes.state();
                if state.exchange(name).is_none() {
                    return Err(exchange_not_found(name));
                }
                let bindings = state.binding_count(name);
                if if_unused && bindings > 0 {
                    return Err(BrokerError::ExchangeInUse {
                        exchange: name.to_owned(),
                        bindings,
                    });
                }
                changes.apply(Change::DeleteExchange(name.to_owned()));
                Ok(())
            })
            .await
    }

    /// The exchange `name`, if declared (the built-in ones always are).
    pub fn exchange(&self, name: &str) -> Option<ExchangeSpec> {
        self.routing.read(|state| state.exchange(name).cloned())
    }

    /// Records a queue definition: its records are the topic of its name, read by the share
    /// group of its name, neither of which this creates. Defining it again with an equal
    /// spec does nothing; with another is [`BrokerError::Inequivalent`] naming the first
    /// field that differs (`durable`, `exclusive`, `auto_delete`, then arguments by name).
    /// A name that is no valid topic name, and arguments outside the limits, are
    /// [`BrokerError::InvalidRequest`] (fields `queue`, `arguments`). Returns once a durable
    /// definition is durable.
    pub async fn define_queue(&self, spec: QueueSpec) -> Result<(), BrokerError> {
        self.check_running()?;
        validate_queue_name("queue", &spec.name, self.config.limits.max_topic_name_len)?;
        validate_arguments(&spec.arguments)?;
        self.routing
            .change(|changes| match changes.state().queue(&spec.name) {
                Some(current) => current.inequivalence(&spec).map_or(Ok(()), Err),
                None => {
                    changes.apply(Change::Queue(spec));
                    Ok(())
                }
            })
            .await
    }

    /// The definition of queue `name`, if any.
    pub fn queue_definition(&self, name: &str) -> Option<QueueSpec> {
        if self.routing.stale.lock().contains(name) {
            return None;
        }
        self.routing.read(|state| state.queue(name).cloned())
    }

    /// Every queue definition, by name.
    pub fn queue_definitions(&self) -> Vec<QueueSpec> {
        let stale = self.routing.stale.lock().clone();
        self.routing.read(|state| {
            state
                .queues()
                .filter(|q| !stale.contains(&q.name))
                .cloned()
                .collect()
        })
    }

    /// Removes a queue definition and every binding to it; an auto-delete exchange left
    /// without bindings is deleted. A queue not defined is [`BrokerError::QueueNotFound`].
    /// The queue's topic and share group are left alone.
    pub async fn forget_queue(&self, name: &str) -> Result<(), BrokerError> {
        self.check_running()?;
        self.routing
            .change(|changes| {
                if changes.state().queue(name).is_none() {
                    return Err(queue_not_found(name));
                }
                let exchanges: BTreeSet<String> = changes
                    .state()
                    .bindings_of(name)
                    .map(|b| b.exchange.clone())
                    .collect();
                changes.apply(Change::ForgetQueue(name.to_owned()));
                for exchange in &exchanges {
                    auto_delete(changes, exchange);
                }
                Ok(())
            })
            .await
    }

    /// Binds a queue to an exchange; binding again does nothing. The exchange must exist
    /// ([`BrokerError::ExchangeNotFound`]) and not be the default one
    /// ([`BrokerError::ExchangeAccessRefused`]), the queue must be defined
    /// ([`BrokerError::QueueNotFound`]). A binding key over 255 bytes, arguments outside
    /// the limits and, for a headers exchange, an `x-match` other than `all`, `any`,
    /// `all-with-x` or `any-with-x` are [`BrokerError::InvalidRequest`]. Returns once a
    /// binding between durable ends is durable.
    pub async fn bind_queue(&self, binding: BindingSpec) -> Result<(), BrokerError> {
        self.check_running()?;
        if binding.exchange.is_empty() {
            return Err(refused("", DEFAULT_EXCHANGE));
        }
        validate_routing_key(&binding.routing_key)?;
        validate_arguments(&binding.arguments)?;
        self.routing
            .change(|changes| {
                let state = changes.state();
                let exchange = state
                    .exchange(&binding.exchange)
                    .ok_or_else(|| exchange_not_found(&binding.exchange))?;
                if exchange.kind == ExchangeKind::Headers {
                    XMatch::of(&binding.arguments)?;
                }
                if state.queue(&binding.queue).is_none() {
                    return Err(queue_not_found(&binding.queue));
                }
                if !state.has_binding(&binding) {
                    changes.apply(Change::Bind(binding));
                }
                Ok(())
            })
            .await
    }

    /// Removes a binding; one that does not exist is no error (as in RabbitMQ), but a
    /// missing exchange or queue is ([`BrokerError::ExchangeNotFound`],
    /// [`BrokerError::QueueNotFound`]), and the default exchange is
    /// [`BrokerError::ExchangeAccessRefused`]. An auto-delete exchange left without
    /// bindings is deleted.
    pub async fn unbind_queue(&self, binding: &BindingSpec) -> Result<(), BrokerError> {
        self.check_running()?;
        if binding.exchange.is_empty() {
            return Err(refused("", DEFAULT_EXCHANGE));
        }
        self.routing
            .change(|changes| {
                let state = changes.state();
                if state.exchange(&binding.exchange).is_none() {
                    return Err(exchange_not_found(&binding.exchange));
                }
                if state.queue(&binding.queue).is_none() {
                    return Err(queue_not_found(&binding.queue));
                }
                if state.has_binding(binding) {
                    changes.apply(Change::Unbind(binding.clone()));
                    auto_delete(changes, &binding.exchange);
                }
                Ok(())
            })
            .await
    }

    /// The bindings to queue `queue`, sorted (none for a queue not defined).
    pub fn bindings_of(&self, queue: &str) -> Vec<BindingSpec> {
        self.routing
            .read(|state| state.bindings_of(queue).cloned().collect())
    }

    /// The queues a message published to `exchange` with `routing_key` and `headers` goes
    /// to, each once, sorted. A missing exchange is [`BrokerError::ExchangeNotFound`].
    ///
    /// - `""`, the default exchange: the queue named `routing_key`, if defined.
    /// - direct: the queues bound with a binding key equal to `routing_key`.
    /// - fanout: every bound queue.
    /// - topic: the queues bound with a pattern `routing_key` matches (words split on `.`,
    ///   `*` one word, `#` zero or more).
    /// - headers: the queues whose binding arguments the headers match: `x-match` `all`
    ///   (the default) or `any`, each other argument not starting with `x-` (with
    ///   `all-with-x` or `any-with-x`, those too) compared with the value bytes of the header
    ///   of its name.
    ///
    /// Holds the routing state's read lock, no I/O, and allocates only the result.
    /// Internal exchanges are routed like the others: refusing clients' publishes to them
    /// is the front end's call.
    pub fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: &[(Bytes, Option<Bytes>)],
    ) -> Result<Vec<String>, BrokerError> {
        self.routing
            .read(|state| state.route(exchange, routing_key, headers))
    }
}
