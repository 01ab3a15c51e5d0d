//! The routing state: exchanges with their bindings, queue definitions, and the routing
//! decision over them.
//!
//! One type serves twice: as the broker's live state (everything declared, durable or not)
//! and as the routing journal's durable state (what its records replay into: durable
//! things, and every queue definition, so that a transient queue left by the last run is
//! known and dropped). Operations check a request against the live state and turn it into
//! [`Change`]s, which both apply the same way; only the changes of durable things and of
//! queue definitions are journaled.
//!
//! Invariants: every binding's exchange and queue exist; each binding is held twice, in
//! its exchange's `bindings` and in its queue's, and `Exchange::len` counts the former.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use bytes::Bytes;

use crate::BrokerError;
use crate::journal::frame::FRAME_HEADER_LEN;
use crate::journal::{FrameSink, Journaled};
use crate::routing::headers::XMatch;
use crate::routing::names::{built_in_exchanges, is_built_in};
use crate::routing::record::{
    Change, FILE_HEADER, binding_len, decode, encode, exchange_len, queue_len,
};
use crate::routing::topic;
use crate::routing::{BindingSpec, ExchangeKind, ExchangeSpec, QueueSpec};

/// Where a binding sends messages: a queue, and the binding's arguments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    queue: String,
    arguments: BTreeMap<String, String>,
}

/// An exchange and the bindings from it.
#[derive(Debug, Clone)]
struct Exchange {
    spec: ExchangeSpec,
    /// The bindings by binding key.
    bindings: BTreeMap<String, BTreeSet<Target>>,
    /// How many bindings.
    len: usize,
}

/// A queue definition and the bindings to it.
#[derive(Debug, Clone)]
struct Queue {
    spec: QueueSpec,
    bindings: BTreeSet<BindingSpec>,
}

/// Every exchange, queue definition and binding.
#[derive(Debug, Clone)]
pub(crate) struct RoutingState {
    exchanges: HashMap<String, Exchange>,
    queues: BTreeMap<String, Queue>,
    /// Bytes a compacted file takes but its header: one frame per durable exchange (not
    /// built in), queue and binding between durable ends.
    durable_len: u64,
}

/// Bytes of a compacted file's frame holding a record of `len` bytes.
fn frame_len(len: usize) -> u64 {
    (FRAME_HEADER_LEN + len) as u64
}

impl Default for RoutingState {
    /// The built-in exchanges, without bindings.
    fn default() -> Self {
        let exchanges = built_in_exchanges()
            .map(|spec| {
                let exchange = Exchange {
                    spec,
                    bindings: BTreeMap::new(),
                    len: 0,
                };
                (exchange.spec.name.clone(), exchange)
            })
            .collect();
        RoutingState {
            exchanges,
            queues: BTreeMap::new(),
            durable_len: 0,
        }
    }
}

impl RoutingState {
    /// The exchange `name`, if declared (built-ins included).
    pub(crate) fn exchange(&self, name: &str) -> Option<&ExchangeSpec> {
        self.exchanges.get(name).map(|e| &e.spec)
    }

    /// How many bindings the exchange `name` has (0 if it does not exist).
    pub(crate) fn binding_count(&self, name: &str) -> usize {
        self.exchanges.get(name).map_or(0, |e| e.len)
    }

    /// The definition of queue `name`, if any.
    pub(crate) fn queue(&self, name: &str) -> Option<&QueueSpec> {
        self.queues.get(name).map(|q| &q.spec)
    }

    /// Every queue definition, by name.
    pub(crate) fn queues(&self) -> impl Iterator<Item = &QueueSpec> {
        self.queues.values().map(|q| &q.spec)
    }

    /// The bindings to queue `name`, sorted.
    pub(crate) fn bindings_of(&self, name: &str) -> impl Iterator<Item = &BindingSpec> {
        self.queues
            .get(name)
            .into_iter()
            .flat_map(|q| q.bindings.iter())
    }

    /// Whether `binding` exists.
    pub(crate) fn has_binding(&self, binding: &BindingSpec) -> bool {
        self.queues
            .get(&binding.queue)
            .is_some_and(|q| q.bindings.contains(binding))
    }

    /// Whether a binding between `exchange` and `queue` is durable: both ends are. False
    /// when either does not exist.
    pub(crate) fn is_durable(&self, exchange: &str, queue: &str) -> bool {
        self.exchange(exchange).is_some_and(|e| e.durable)
            && self.queue(queue).is_some_and(|q| q.durable)
    }

    /// Whether `change`, applied to this state, concerns only durable things, so that the
    /// journal must hold it.
    pub(crate) fn is_durable_change(&self, change: &Change) -> bool {
        match change {
            Change::Exchange(spec) => spec.durable,
            // Every queue definition: a transient one is dropped, records and all, after a
            // restart, so it must be known then.
            Change::Queue(_) => true,
            Change::DeleteExchange(name) => self.exchange(name).is_some_and(|e| e.durable),
            Change::ForgetQueue(name) => self.queue(name).is_some(),
            Change::Bind(binding) | Change::Unbind(binding) => {
                self.is_durable(&binding.exchange, &binding.queue)
            }
        }
    }

    /// Applies one change. Declaring what exists, binding what does not exist, removing
    /// what is absent and deleting a built-in exchange change nothing; nothing is deleted
    /// automatically (operations say so with changes of their own).
    pub(crate) fn apply(&mut self, change: &Change) {
        match change {
            Change::Exchange(spec) => {
                if !self.exchanges.contains_key(&spec.name) {
                    if spec.durable {
                        self.durable_len += frame_len(exchange_len(spec));
                    }
                    let exchange = Exchange {
                        spec: spec.clone(),
                        bindings: BTreeMap::new(),
                        len: 0,
                    };
                    self.exchanges.insert(spec.name.clone(), exchange);
                }
            }
            Change::DeleteExchange(name) => {
                if is_built_in(name) {
                    return;
                }
                let Some(exchange) = self.exchanges.remove(name) else {
                    return;
                };
                for (routing_key, targets) in exchange.bindings {
                    for Target { queue, arguments } in targets {
                        let binding = BindingSpec {
                            exchange: name.clone(),
                            queue,
                            routing_key: routing_key.clone(),
                            arguments,
                        };
                        if let Some(queue) = self.queues.get_mut(&binding.queue) {
                            if exchange.spec.durable && queue.spec.durable {
                                self.durable_len -= frame_len(binding_len(&binding));
                            }
                            queue.bindings.remove(&binding);
                        }
                    }
                }
                if exchange.spec.durable {
                    self.durable_len -= frame_len(exchange_len(&exchange.spec));
                }
            }
            Change::Queue(spec) => {
                if !self.queues.contains_key(&spec.name) {
                    self.durable_len += frame_len(queue_len(spec));
                    let queue = Queue {
                        spec: spec.clone(),
                        bindings: BTreeSet::new(),
                    };
                    self.queues.insert(spec.name.clone(), queue);
                }
            }
            Change::ForgetQueue(name) => {
                let Some(queue) = self.queues.remove(name) else {
                    return;
                };
                for binding in &queue.bindings {
                    self.remove_from_exchange(binding, queue.spec.durable);
                }
                self.durable_len -= frame_len(queue_len(&queue.spec));
            }
            Change::Bind(binding) => {
                let durable = self.is_durable(&binding.exchange, &binding.queue);
                let (Some(exchange), Some(queue)) = (
                    self.exchanges.get_mut(&binding.exchange),
                    self.queues.get_mut(&binding.queue),
                ) else {
                    return;
                };
                if !queue.bindings.insert(binding.clone()) {
                    return;
                }
                exchange
                    .bindings
                    .entry(binding.routing_key.clone())
                    .or_default()
                    .insert(Target {
                        queue: binding.queue.clone(),
                        arguments: binding.arguments.clone(),
                    });
                exchange.len += 1;
                if durable {
                    self.durable_len += frame_len(binding_len(binding));
                }
            }
            Change::Unbind(binding) => {
                let Some(queue) = self.queues.get_mut(&binding.queue) else {
                    return;
                };
                if queue.bindings.remove(binding) {
                    let durable = queue.spec.durable;
                    self.remove_from_exchange(binding, durable);
                }
            }
        }
    }

    /// Removes `binding` from its exchange's side, a queue of durability `queue_durable`
    /// having let it go already.
    fn remove_from_exchange(&mut self, binding: &BindingSpec, queue_durable: bool) {
        let Some(exchange) = self.exchanges.get_mut(&binding.exchange) else {
            return;
        };
        let Some(targets) = exchange.bindings.get_mut(&binding.routing_key) else {
            return;
        };
        // A lookup by borrowed parts would need a second key type; bindings are removed
        // far less often than messages are routed.
        let target = Target {
            queue: binding.queue.clone(),
            arguments: binding.arguments.clone(),
        };
        if !targets.remove(&target) {
            return;
        }
        if targets.is_empty() {
            exchange.bindings.remove(&binding.routing_key);
        }
        exchange.len -= 1;
        if exchange.spec.durable && queue_durable {
            self.durable_len -= frame_len(binding_len(binding));
        }
    }

    /// The queues a message published to `exchange` with `routing_key` and `headers` goes
    /// to, each once, sorted (see [`crate::Broker::route`]). Allocates only the result.
    pub(crate) fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: &[(Bytes, Option<Bytes>)],
    ) -> Result<Vec<String>, BrokerError> {
        let Some(found) = self.exchanges.get(exchange) else {
            return Err(BrokerError::ExchangeNotFound {
                exchange: exchange.to_owned(),
            });
        };
        if exchange.is_empty() {
            return Ok(self
                .queues
                .contains_key(routing_key)
                .then(|| routing_key.to_owned())
                .into_iter()
                .collect());
        }
        let mut queues: Vec<&str> = Vec::new();
        match found.spec.kind {
            ExchangeKind::Direct => {
                if let Some(targets) = found.bindings.get(routing_key) {
                    add(&mut queues, targets, None);
                }
            }
            ExchangeKind::Fanout => found
                .bindings
                .values()
                .for_each(|t| add(&mut queues, t, None)),
            ExchangeKind::Topic => found
                .bindings
                .iter()
                .filter(|(pattern, _)| topic::matches(pattern, routing_key))
                .for_each(|(_, t)| add(&mut queues, t, None)),
            ExchangeKind::Headers => found
                .bindings
                .values()
                .for_each(|t| add(&mut queues, t, Some(headers))),
        }
        queues.sort_unstable();
        queues.dedup();
        Ok(queues.into_iter().map(str::to_owned).collect())
    }
}

/// Adds the queues of `targets` to `queues`; with `headers`, only those whose binding
/// arguments the headers match.
fn add<'a>(
    queues: &mut Vec<&'a str>,
    targets: &'a BTreeSet<Target>,
    headers: Option<&[(Bytes, Option<Bytes>)]>,
) {
    let matching = targets.iter().filter(|t| {
        headers.is_none_or(|headers| {
            XMatch::parse(&t.arguments).is_some_and(|mode| mode.matches(&t.arguments, headers))
        })
    });
    queues.extend(matching.map(|t| t.queue.as_str()));
}

impl Journaled for RoutingState {
    type Record = Change;

    const NAME: &'static str = "routing";
    const FILE_HEADER: [u8; 6] = FILE_HEADER;

    fn encode(record: &Change, out: &mut Vec<u8>) -> Result<(), String> {
        encode(record, out)
    }

    fn decode(body: &[u8]) -> Result<Vec<Change>, String> {
        decode(body)
    }

    fn apply(&mut self, record: &Change) {
        RoutingState::apply(self, record);
    }

    fn compacted_len(&self) -> u64 {
        FILE_HEADER.len() as u64 + self.durable_len
    }

    /// One record per frame: every queue, the durable exchanges but the built-in ones,
    /// then the bindings between durable ends.
    fn snapshot(&self, frame: &mut FrameSink<'_, Change>) -> Result<(), BrokerError> {
        for queue in self.queues.values() {
            frame(&[Change::Queue(queue.spec.clone())])?;
        }
        let mut exchanges: Vec<&Exchange> = self
            .exchanges
            .values()
            .filter(|e| e.spec.durable && !is_built_in(&e.spec.name))
            .collect();
        exchanges.sort_unstable_by(|a, b| a.spec.name.cmp(&b.spec.name));
        for exchange in exchanges {
            frame(&[Change::Exchange(exchange.spec.clone())])?;
        }
        for queue in self.queues.values().filter(|q| q.spec.durable) {
            for binding in &queue.bindings {
                if self.exchange(&binding.exchange).is_some_and(|e| e.durable) {
                    frame(&[Change::Bind(binding.clone())])?;
                }
            }
        }
        Ok(())
    }

    fn corrupt(path: &Path, reason: String) -> BrokerError {
        BrokerError::RoutingStateCorrupt {
            path: path.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::frame::encode_frame;

    fn exchange(name: &str, kind: ExchangeKind, durable: bool) -> Change {
        Change::Exchange(ExchangeSpec {
            durable,
            ..ExchangeSpec::new(name, kind)
        })
    }

    fn queue(name: &str, durable: bool) -> Change {
        Change::Queue(QueueSpec {
            durable,
            ..QueueSpec::new(name)
        })
    }

    fn bind(exchange: &str, queue: &str, key: &str) -> BindingSpec {
        BindingSpec::new(exchange, queue, key)
    }

    fn state(changes: &[Change]) -> RoutingState {
        let mut state = RoutingState::default();
        for change in changes {
            state.apply(change);
        }
        state
    }

    fn route(state: &RoutingState, exchange: &str, key: &str) -> Vec<String> {
        state.route(exchange, key, &[]).expect("route")
    }

    /// The compacted file's bytes.
    fn snapshot_bytes(state: &RoutingState) -> (Vec<u8>, Vec<Change>) {
        let mut out = FILE_HEADER.to_vec();
        let mut records = Vec::new();
        state
            .snapshot(&mut |frame| {
                records.extend_from_slice(frame);
                encode_frame(&mut out, |body| {
                    frame.iter().try_for_each(|r| encode(r, body))
                })
                .map_err(|reason| BrokerError::invalid_request("test", reason))
            })
            .expect("snapshot");
        (out, records)
    }

    #[test]
    fn each_kind_routes_by_its_rule_each_queue_once() {
        let state = state(&[
            exchange("d", ExchangeKind::Direct, true),
            exchange("f", ExchangeKind::Fanout, true),
            exchange("t", ExchangeKind::Topic, true),
            queue("q1", true),
            queue("q2", true),
            queue("q3", false),
            Change::Bind(bind("d", "q2", "red")),
            Change::Bind(bind("d", "q1", "red")),
            Change::Bind(bind("d", "q3", "blue")),
            Change::Bind(bind("f", "q1", "a")),
            Change::Bind(bind("f", "q1", "b")),
            Change::Bind(bind("f", "q3", "")),
            Change::Bind(bind("t", "q1", "*.orange.*")),
            Change::Bind(bind("t", "q2", "*.*.rabbit")),
            Change::Bind(bind("t", "q2", "lazy.#")),
        ]);
        assert_eq!(route(&state, "d", "red"), ["q1", "q2"]);
        assert_eq!(route(&state, "d", "blue"), ["q3"]);
        assert!(route(&state, "d", "green").is_empty());
        assert_eq!(route(&state, "f", "anything"), ["q1", "q3"]);
        assert_eq!(route(&state, "t", "quick.orange.rabbit"), ["q1", "q2"]);
        assert_eq!(route(&state, "t", "lazy.pink.rabbit"), ["q2"]);
        assert_eq!(route(&state, "t", "quick.orange.fox"), ["q1"]);
        assert!(route(&state, "t", "quick.brown.fox").is_empty());
        // The default exchange: the queue of the routing key's name.
        assert_eq!(route(&state, "", "q3"), ["q3"]);
        assert!(route(&state, "", "nope").is_empty());
        let err = state.route("missing", "k", &[]).expect_err("no exchange");
        assert!(matches!(err, BrokerError::ExchangeNotFound { .. }), "{err}");
    }

    #[test]
    fn headers_bindings_route_by_their_arguments() {
        let mut all = bind("amq.match", "pdfs", "ignored");
        all.arguments.insert("format".into(), "pdf".into());
        all.arguments.insert("type".into(), "report".into());
        let mut any = bind("amq.match", "any", "");
        any.arguments.insert("x-match".into(), "any".into());
        any.arguments.insert("format".into(), "pdf".into());
        any.arguments.insert("type".into(), "log".into());
        let state = state(&[
            queue("pdfs", true),
            queue("any", true),
            Change::Bind(all),
            Change::Bind(any),
        ]);
        let headers = |pairs: &[(&'static str, &'static str)]| -> Vec<(Bytes, Option<Bytes>)> {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        Bytes::from_static(k.as_bytes()),
                        Some(Bytes::from_static(v.as_bytes())),
                    )
                })
                .collect()
        };
        let routed = |pairs| {
            state
                .route("amq.match", "", &headers(pairs))
                .expect("route")
        };
        assert_eq!(
            routed(&[("format", "pdf"), ("type", "report")]),
            ["any", "pdfs"]
        );
        assert_eq!(routed(&[("type", "log")]), ["any"]);
        assert!(routed(&[("type", "report")]).is_empty());
    }

    #[test]
    fn removing_an_end_removes_its_bindings_from_both_sides() {
        let mut state = state(&[
            exchange("x", ExchangeKind::Fanout, true),
            exchange("y", ExchangeKind::Direct, true),
            queue("a", true),
            queue("b", true),
            Change::Bind(bind("x", "a", "")),
            Change::Bind(bind("x", "b", "")),
            Change::Bind(bind("y", "a", "k")),
            Change::Bind(bind("y", "a", "k")),
        ]);
        assert_eq!(state.binding_count("y"), 1, "binding twice is one binding");
        state.apply(&Change::ForgetQueue("a".into()));
        assert_eq!(route(&state, "x", ""), ["b"]);
        assert_eq!((state.binding_count("x"), state.binding_count("y")), (1, 0));
        state.apply(&Change::DeleteExchange("x".into()));
        assert!(state.exchange("x").is_none());
        assert_eq!(state.bindings_of("b").count(), 0);
        // Bindings to ends that do not exist are not made; built-ins stay.
        state.apply(&Change::Bind(bind("x", "b", "")));
        state.apply(&Change::Bind(bind("y", "a", "")));
        assert_eq!(state.bindings_of("b").count(), 0);
        state.apply(&Change::DeleteExchange("amq.direct".into()));
        assert!(state.exchange("amq.direct").is_some());
        state.apply(&Change::Unbind(bind("y", "b", "nothing")));
        assert_eq!(state.binding_count("y"), 0);
    }

    #[test]
    fn a_snapshot_holds_every_queue_and_only_durable_exchanges_and_bindings() {
        let mut state = RoutingState::default();
        let (empty, _) = snapshot_bytes(&state);
        assert_eq!(state.compacted_len(), empty.len() as u64);
        let mut with_args = bind("amq.topic", "dq", "a.#");
        with_args.arguments.insert("k".into(), "v".into());
        let changes = [
            exchange("dx", ExchangeKind::Topic, true),
            exchange("tx", ExchangeKind::Direct, false),
            queue("dq", true),
            queue("tq", false),
            Change::Bind(bind("dx", "dq", "a.*")),
            Change::Bind(bind("dx", "tq", "a.*")),
            Change::Bind(bind("tx", "dq", "k")),
            Change::Bind(with_args.clone()),
        ];
        for change in &changes {
            state.apply(change);
            let (bytes, _) = snapshot_bytes(&state);
            assert_eq!(
                state.compacted_len(),
                bytes.len() as u64,
                "after {change:?}"
            );
        }
        let (_, records) = snapshot_bytes(&state);
        assert_eq!(
            records,
            [
                queue("dq", true),
                queue("tq", false),
                exchange("dx", ExchangeKind::Topic, true),
                Change::Bind(with_args.clone()),
                Change::Bind(bind("dx", "dq", "a.*")),
            ]
        );
        let mut replayed = RoutingState::default();
        for record in &records {
            replayed.apply(record);
        }
        assert_eq!(replayed.bindings_of("dq").count(), 2);
        assert_eq!(replayed.compacted_len(), state.compacted_len());
        for change in [
            Change::Unbind(with_args),
            Change::DeleteExchange("tx".into()),
            Change::ForgetQueue("tq".into()),
            Change::ForgetQueue("dq".into()),
            Change::DeleteExchange("dx".into()),
        ] {
            state.apply(&change);
            let (bytes, _) = snapshot_bytes(&state);
            assert_eq!(
                state.compacted_len(),
                bytes.len() as u64,
                "after {change:?}"
            );
        }
        assert_eq!(state.compacted_len(), empty.len() as u64);
    }
}
