//! Routing metadata: exchanges, queue definitions and bindings; where messages go; the
//! errors of RabbitMQ's rules; auto-delete; what survives a restart and a crash.

use std::fs;

use bytes::Bytes;
use sluice_broker::{
    BindingSpec, Broker, BrokerError, ErrorKind, ExchangeKind, ExchangeSpec, QueueSpec,
};

use crate::common::{TestBroker, config};

fn transient_exchange(name: &str, kind: ExchangeKind) -> ExchangeSpec {
    ExchangeSpec {
        durable: false,
        ..ExchangeSpec::new(name, kind)
    }
}

fn transient_queue(name: &str) -> QueueSpec {
    QueueSpec {
        durable: false,
        ..QueueSpec::new(name)
    }
}

fn with_arguments(mut binding: BindingSpec, pairs: &[(&str, &str)]) -> BindingSpec {
    binding.arguments = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    binding
}

async fn declare(broker: &Broker, spec: ExchangeSpec) {
    broker
        .declare_exchange(spec, false)
        .await
        .expect("declare exchange");
}

async fn define(broker: &Broker, spec: QueueSpec) {
    broker.define_queue(spec).await.expect("define queue");
}

async fn bind(broker: &Broker, exchange: &str, queue: &str, key: &str) {
    broker
        .bind_queue(BindingSpec::new(exchange, queue, key))
        .await
        .expect("bind");
}

fn route(broker: &Broker, exchange: &str, key: &str) -> Vec<String> {
    broker.route(exchange, key, &[]).expect("route")
}

fn route_headers(broker: &Broker, exchange: &str, headers: &[(&str, &str)]) -> Vec<String> {
    let headers: Vec<(Bytes, Option<Bytes>)> = headers
        .iter()
        .map(|(k, v)| {
            (
                Bytes::copy_from_slice(k.as_bytes()),
                Some(Bytes::copy_from_slice(v.as_bytes())),
            )
        })
        .collect();
    broker.route(exchange, "", &headers).expect("route")
}

/// Checks an error's kind and that its message holds every needle.
fn check(result: Result<(), BrokerError>, kind: ErrorKind, needles: &[&str]) {
    let err = result.expect_err("should fail");
    let text = err.to_string();
    assert_eq!(err.kind(), kind, "{text}");
    for needle in needles {
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
}

#[tokio::test]
async fn routing_declare_bind_and_route_by_every_kind() {
    let t = TestBroker::new();
    let b = &t.broker;
    for q in ["audit", "errors", "all-logs", "reports"] {
        define(b, QueueSpec::new(q)).await;
    }
    declare(b, ExchangeSpec::new("logs", ExchangeKind::Direct)).await;
    bind(b, "logs", "errors", "error").await;
    bind(b, "logs", "all-logs", "error").await;
    bind(b, "logs", "all-logs", "info").await;
    assert_eq!(route(b, "logs", "error"), ["all-logs", "errors"]);
    assert_eq!(route(b, "logs", "info"), ["all-logs"]);
    assert!(route(b, "logs", "debug").is_empty());

    declare(b, ExchangeSpec::new("events", ExchangeKind::Topic)).await;
    bind(b, "events", "audit", "*.orange.*").await;
    bind(b, "events", "errors", "*.*.rabbit").await;
    bind(b, "events", "errors", "lazy.#").await;
    assert_eq!(
        route(b, "events", "quick.orange.rabbit"),
        ["audit", "errors"]
    );
    assert_eq!(
        route(b, "events", "lazy.orange.elephant"),
        ["audit", "errors"]
    );
    assert_eq!(route(b, "events", "lazy"), ["errors"]);
    assert!(route(b, "events", "quick.orange.male.rabbit").is_empty());

    bind(b, "amq.fanout", "audit", "").await;
    bind(b, "amq.fanout", "reports", "ignored").await;
    assert_eq!(route(b, "amq.fanout", "whatever"), ["audit", "reports"]);

    let pdf = BindingSpec::new("amq.headers", "reports", "");
    b.bind_queue(with_arguments(
        pdf,
        &[("format", "pdf"), ("type", "report")],
    ))
    .await
    .expect("bind all");
    let any = BindingSpec::new("amq.headers", "audit", "");
    b.bind_queue(with_arguments(
        any,
        &[("x-match", "any"), ("format", "pdf")],
    ))
    .await
    .expect("bind any");
    assert_eq!(
        route_headers(b, "amq.headers", &[("format", "pdf"), ("type", "report")]),
        ["audit", "reports"]
    );
    assert_eq!(
        route_headers(b, "amq.headers", &[("format", "pdf")]),
        ["audit"]
    );
    assert!(route_headers(b, "amq.headers", &[("type", "report")]).is_empty());

    // The default exchange: the queue named by the routing key, if defined.
    assert_eq!(route(b, "", "reports"), ["reports"]);
    assert!(route(b, "", "nobody").is_empty());
    assert_eq!(
        b.bindings_of("audit"),
        [
            BindingSpec::new("amq.fanout", "audit", ""),
            with_arguments(
                BindingSpec::new("amq.headers", "audit", ""),
                &[("x-match", "any"), ("format", "pdf")]
            ),
            BindingSpec::new("events", "audit", "*.orange.*"),
        ]
    );
    // Binding again changes nothing; unbinding what is not bound is no error.
    bind(b, "logs", "errors", "error").await;
    assert_eq!(b.bindings_of("errors").len(), 3);
    b.unbind_queue(&BindingSpec::new("logs", "errors", "warning"))
        .await
        .expect("unbind nothing");
    b.unbind_queue(&BindingSpec::new("logs", "errors", "error"))
        .await
        .expect("unbind");
    assert_eq!(route(b, "logs", "error"), ["all-logs"]);
    let err = b.route("missing", "k", &[]).expect_err("no exchange");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("\"missing\""), "{err}");
}

#[tokio::test]
async fn routing_redeclares_must_be_equivalent_and_reserved_names_are_refused() {
    let t = TestBroker::new();
    let b = &t.broker;
    declare(b, ExchangeSpec::new("orders", ExchangeKind::Direct)).await;
    declare(b, ExchangeSpec::new("orders", ExchangeKind::Direct)).await;
    let fanout = ExchangeSpec::new("orders", ExchangeKind::Fanout);
    check(
        b.declare_exchange(fanout.clone(), false).await,
        ErrorKind::FailedPrecondition,
        &[
            "inequivalent arg 'type'",
            "received 'fanout' but current is 'direct'",
        ],
    );
    // Passive declares check only that it exists.
    b.declare_exchange(fanout, true).await.expect("passive");
    check(
        b.declare_exchange(ExchangeSpec::new("nope", ExchangeKind::Direct), true)
            .await,
        ErrorKind::NotFound,
        &["no exchange \"nope\""],
    );
    let transient = transient_exchange("orders", ExchangeKind::Direct);
    check(
        b.declare_exchange(transient, false).await,
        ErrorKind::FailedPrecondition,
        &["'durable'"],
    );
    let mut with_ae = ExchangeSpec::new("orders", ExchangeKind::Direct);
    with_ae
        .arguments
        .insert("alternate-exchange".into(), "ae".into());
    check(
        b.declare_exchange(with_ae, false).await,
        ErrorKind::FailedPrecondition,
        &["'alternate-exchange'", "received 'ae' but current is none"],
    );

    // The built-ins: redeclared as they are, never created, changed or deleted.
    declare(b, ExchangeSpec::new("amq.topic", ExchangeKind::Topic)).await;
    check(
        b.declare_exchange(ExchangeSpec::new("amq.topic", ExchangeKind::Direct), false)
            .await,
        ErrorKind::FailedPrecondition,
        &["'type'"],
    );
    check(
        b.declare_exchange(ExchangeSpec::new("amq.mine", ExchangeKind::Direct), false)
            .await,
        ErrorKind::PermissionDenied,
        &["\"amq.mine\"", "reserved"],
    );
    check(
        b.declare_exchange(ExchangeSpec::new("", ExchangeKind::Direct), false)
            .await,
        ErrorKind::PermissionDenied,
        &["default exchange"],
    );
    b.declare_exchange(ExchangeSpec::new("", ExchangeKind::Direct), true)
        .await
        .expect("the default exchange exists");
    check(
        b.delete_exchange("", false).await,
        ErrorKind::PermissionDenied,
        &["default exchange"],
    );
    check(
        b.delete_exchange("amq.match", false).await,
        ErrorKind::PermissionDenied,
        &["built-in"],
    );
    for name in [
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        let exchange = b.exchange(name).expect(name);
        assert!(exchange.durable, "{name}");
    }
    assert_eq!(
        b.exchange("amq.match").map(|e| e.kind),
        Some(ExchangeKind::Headers)
    );

    // Names and arguments break rules: the field is named.
    check(
        b.declare_exchange(ExchangeSpec::new("a b", ExchangeKind::Direct), false)
            .await,
        ErrorKind::InvalidArgument,
        &["exchange: ", "' '"],
    );
    check(
        b.declare_exchange(
            ExchangeSpec::new("x".repeat(256), ExchangeKind::Direct),
            false,
        )
        .await,
        ErrorKind::InvalidArgument,
        &["exchange: ", "256 bytes"],
    );
    let err = "x-delayed-message"
        .parse::<ExchangeKind>()
        .expect_err("type");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().starts_with("type: "), "{err}");
    check(
        b.define_queue(QueueSpec::new("has:colon")).await,
        ErrorKind::InvalidArgument,
        &["queue: "],
    );

    // Queue definitions: equal is fine, different names the field.
    define(b, QueueSpec::new("jobs")).await;
    define(b, QueueSpec::new("jobs")).await;
    let exclusive = QueueSpec {
        exclusive: true,
        ..QueueSpec::new("jobs")
    };
    check(
        b.define_queue(exclusive).await,
        ErrorKind::FailedPrecondition,
        &["inequivalent arg 'exclusive' for queue 'jobs' in vhost '/'"],
    );

    // Binding: both ends must exist, the default exchange cannot be bound.
    check(
        b.bind_queue(BindingSpec::new("nope", "jobs", "k")).await,
        ErrorKind::NotFound,
        &["no exchange \"nope\""],
    );
    check(
        b.bind_queue(BindingSpec::new("orders", "nope", "k")).await,
        ErrorKind::NotFound,
        &["no queue \"nope\""],
    );
    check(
        b.unbind_queue(&BindingSpec::new("orders", "nope", "k"))
            .await,
        ErrorKind::NotFound,
        &["no queue \"nope\""],
    );
    check(
        b.bind_queue(BindingSpec::new("", "jobs", "jobs")).await,
        ErrorKind::PermissionDenied,
        &["default exchange"],
    );
    check(
        b.bind_queue(BindingSpec::new("orders", "jobs", "k".repeat(256)))
            .await,
        ErrorKind::InvalidArgument,
        &["routing_key: "],
    );
    let bad_match = with_arguments(
        BindingSpec::new("amq.headers", "jobs", ""),
        &[("x-match", "most")],
    );
    check(
        b.bind_queue(bad_match).await,
        ErrorKind::InvalidArgument,
        &["x-match", "\"most\""],
    );
    check(
        b.forget_queue("nope").await,
        ErrorKind::NotFound,
        &["no queue \"nope\""],
    );
    assert!(b.bindings_of("jobs").is_empty());
}

#[tokio::test]
async fn routing_if_unused_refuses_an_exchange_with_bindings() {
    let t = TestBroker::new();
    let b = &t.broker;
    define(b, QueueSpec::new("q")).await;
    declare(b, ExchangeSpec::new("x", ExchangeKind::Fanout)).await;
    bind(b, "x", "q", "a").await;
    bind(b, "x", "q", "b").await;
    check(
        b.delete_exchange("x", true).await,
        ErrorKind::FailedPrecondition,
        &["\"x\" is in use", "2 binding(s)"],
    );
    assert_eq!(route(b, "x", ""), ["q"]);
    b.unbind_queue(&BindingSpec::new("x", "q", "a"))
        .await
        .expect("unbind");
    b.unbind_queue(&BindingSpec::new("x", "q", "b"))
        .await
        .expect("unbind");
    b.delete_exchange("x", true).await.expect("unused now");
    assert!(b.exchange("x").is_none());
    check(
        b.delete_exchange("x", false).await,
        ErrorKind::NotFound,
        &["no exchange \"x\""],
    );

    // Without if_unused the bindings go with it.
    declare(b, ExchangeSpec::new("y", ExchangeKind::Direct)).await;
    bind(b, "y", "q", "k").await;
    b.delete_exchange("y", false).await.expect("delete");
    assert!(b.bindings_of("q").is_empty());
    check(
        b.route("y", "k", &[]).map(drop),
        ErrorKind::NotFound,
        &["\"y\""],
    );
}

#[tokio::test]
async fn routing_auto_delete_exchanges_go_with_their_last_binding() {
    let t = TestBroker::new();
    let b = &t.broker;
    for q in ["a", "b"] {
        define(b, QueueSpec::new(q)).await;
    }
    let auto = |name: &str| ExchangeSpec {
        auto_delete: true,
        ..ExchangeSpec::new(name, ExchangeKind::Direct)
    };
    // Declared without bindings, it stays (RabbitMQ deletes only on the last unbind).
    declare(b, auto("by-unbind")).await;
    bind(b, "by-unbind", "a", "k").await;
    bind(b, "by-unbind", "b", "k").await;
    b.unbind_queue(&BindingSpec::new("by-unbind", "a", "k"))
        .await
        .expect("unbind");
    assert!(b.exchange("by-unbind").is_some(), "one binding left");
    b.unbind_queue(&BindingSpec::new("by-unbind", "b", "k"))
        .await
        .expect("unbind");
    assert!(b.exchange("by-unbind").is_none(), "the last binding went");

    declare(b, auto("by-forget")).await;
    declare(b, ExchangeSpec::new("kept", ExchangeKind::Direct)).await;
    bind(b, "by-forget", "a", "k").await;
    bind(b, "by-forget", "a", "other").await;
    bind(b, "kept", "a", "k").await;
    b.forget_queue("a").await.expect("forget");
    assert!(b.queue_definition("a").is_none());
    assert!(b.exchange("by-forget").is_none());
    assert!(b.exchange("kept").is_some(), "not auto-delete");
    assert!(route(b, "kept", "k").is_empty());
    assert_eq!(
        b.queue_definitions()
            .into_iter()
            .map(|q| q.name)
            .collect::<Vec<_>>(),
        ["b"]
    );
}

/// Builds durable and transient routing state, with deletions of each kind.
async fn mixed_state(b: &Broker) {
    define(b, QueueSpec::new("durable-q")).await;
    define(b, QueueSpec::new("forgotten-q")).await;
    define(b, transient_queue("transient-q")).await;
    let mut with_ttl = QueueSpec::new("ttl-q");
    with_ttl
        .arguments
        .insert("x-message-ttl".into(), "60000".into());
    with_ttl.auto_delete = true;
    define(b, with_ttl).await;

    let mut topic = ExchangeSpec::new("durable-x", ExchangeKind::Topic);
    topic.internal = true;
    topic
        .arguments
        .insert("alternate-exchange".into(), "ae".into());
    declare(b, topic).await;
    declare(b, transient_exchange("transient-x", ExchangeKind::Fanout)).await;
    declare(b, ExchangeSpec::new("deleted-x", ExchangeKind::Direct)).await;
    let auto = ExchangeSpec {
        auto_delete: true,
        ..ExchangeSpec::new("auto-x", ExchangeKind::Fanout)
    };
    declare(b, auto.clone()).await;
    declare(
        b,
        ExchangeSpec {
            name: "auto-kept-x".into(),
            ..auto
        },
    )
    .await;

    bind(b, "durable-x", "durable-q", "a.*").await;
    bind(b, "durable-x", "ttl-q", "#").await;
    bind(b, "durable-x", "transient-q", "a.*").await;
    bind(b, "transient-x", "durable-q", "").await;
    bind(b, "deleted-x", "durable-q", "k").await;
    bind(b, "durable-x", "forgotten-q", "a.b").await;
    bind(b, "auto-x", "durable-q", "").await;
    bind(b, "auto-kept-x", "durable-q", "").await;
    bind(b, "auto-kept-x", "transient-q", "").await;
    let headers = with_arguments(
        BindingSpec::new("amq.match", "durable-q", ""),
        &[("x-match", "any-with-x"), ("x-tenant", "7")],
    );
    b.bind_queue(headers).await.expect("bind headers");
    b.bind_queue(BindingSpec::new("durable-x", "durable-q", "gone.#"))
        .await
        .expect("bind");
    b.unbind_queue(&BindingSpec::new("durable-x", "durable-q", "gone.#"))
        .await
        .expect("unbind");

    b.delete_exchange("deleted-x", false).await.expect("delete");
    b.forget_queue("forgotten-q").await.expect("forget");
    b.unbind_queue(&BindingSpec::new("auto-x", "durable-q", ""))
        .await
        .expect("unbind the last");
    // A durable auto-delete exchange whose remaining binding is to a transient queue.
    b.unbind_queue(&BindingSpec::new("auto-kept-x", "durable-q", ""))
        .await
        .expect("unbind");
}

async fn durable_state_survives(shutdown_first: bool) {
    let t = TestBroker::new();
    mixed_state(&t.broker).await;
    let before_queues = t.broker.queue_definitions();
    let before_bindings = t.broker.bindings_of("durable-q");
    let before_exchange = t.broker.exchange("durable-x");
    if shutdown_first {
        t.broker.shutdown().await.expect("shutdown");
    }
    let t = t.restart();
    let b = &t.broker;

    let names: Vec<String> = b.queue_definitions().into_iter().map(|q| q.name).collect();
    assert_eq!(names, ["durable-q", "ttl-q"], "the transient queue is gone");
    let durable: Vec<QueueSpec> = before_queues.into_iter().filter(|q| q.durable).collect();
    assert_eq!(b.queue_definitions(), durable);
    assert_eq!(b.exchange("durable-x"), before_exchange);
    for gone in ["transient-x", "deleted-x", "auto-x"] {
        assert!(b.exchange(gone).is_none(), "{gone}");
    }
    // Kept with no binding: its last one went with the transient queue at the restart.
    assert!(b.exchange("auto-kept-x").is_some());
    // Bindings between durable ends, only.
    let durable_bindings: Vec<BindingSpec> = before_bindings
        .into_iter()
        .filter(|binding| binding.exchange != "transient-x")
        .collect();
    assert_eq!(
        durable_bindings
            .iter()
            .map(|binding| (binding.exchange.as_str(), binding.routing_key.as_str()))
            .collect::<Vec<_>>(),
        [("amq.match", ""), ("durable-x", "a.*")]
    );
    assert_eq!(b.bindings_of("durable-q"), durable_bindings);
    assert_eq!(route(b, "durable-x", "a.b"), ["durable-q", "ttl-q"]);
    assert_eq!(
        route_headers(b, "amq.match", &[("x-tenant", "7")]),
        ["durable-q"]
    );
    assert!(b.bindings_of("forgotten-q").is_empty());
    for built_in in [
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        assert!(b.exchange(built_in).is_some(), "{built_in:?}");
    }

    // It goes on from there, and again across a restart.
    b.forget_queue("ttl-q").await.expect("forget");
    bind(b, "auto-kept-x", "durable-q", "again").await;
    let t = t.restart();
    assert_eq!(route(&t.broker, "durable-x", "a.b"), ["durable-q"]);
    assert_eq!(route(&t.broker, "auto-kept-x", ""), ["durable-q"]);
    assert!(t.broker.queue_definition("ttl-q").is_none());
}

#[tokio::test]
async fn routing_durable_state_survives_a_shutdown_and_restart() {
    durable_state_survives(true).await;
}

#[tokio::test]
async fn routing_durable_state_survives_a_crash() {
    durable_state_survives(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_concurrent_changes_are_all_durable_when_they_return() {
    let t = TestBroker::new();
    declare(&t.broker, ExchangeSpec::new("x", ExchangeKind::Direct)).await;
    define(&t.broker, QueueSpec::new("q")).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let broker = t.broker.clone();
        tasks.push(tokio::spawn(async move {
            broker
                .bind_queue(BindingSpec::new("x", "q", format!("k{i}")))
                .await
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("bind");
    }
    let t = t.restart();
    assert_eq!(t.broker.bindings_of("q").len(), 64);
    for i in [0, 31, 63] {
        assert_eq!(route(&t.broker, "x", &format!("k{i}")), ["q"]);
    }
}

#[tokio::test]
async fn routing_a_corrupt_journal_stops_the_broker_naming_the_file() {
    let t = TestBroker::new();
    define(&t.broker, QueueSpec::new("first")).await;
    define(&t.broker, QueueSpec::new("second")).await;
    let TestBroker { dir, broker } = t;
    drop(broker);
    let routing = dir.path().join("routing");
    let segment = fs::read_dir(&routing)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a segment");
    let mut bytes = fs::read(&segment).expect("read");
    // A byte inside the first record's frame, which is followed by the second.
    bytes[6 + 8 + 3] ^= 0x20;
    fs::write(&segment, &bytes).expect("corrupt");
    let err = Broker::open(config(dir.path())).expect_err("corrupt");
    assert_eq!(err.kind(), ErrorKind::DataLoss);
    let text = err.to_string();
    assert!(text.contains("corrupt routing state file"), "{text}");
    assert!(text.contains(&segment.display().to_string()), "{text}");
    assert!(text.contains("at byte 6"), "{text}");
}
