//! What message-queue operations (AMQP's queues and exchanges, and any front end serving
//! the broker's queues) ask of the ACLs. A queue is the topic of its name read by the
//! share group of its name; an exchange is a routing definition holding no data. Each
//! operation is checked as Kafka checks what it does to the data underneath:
//!
//! | Operation ([`QueueAccess`])                  | AMQP method                               | Needs                                            |
//! |----------------------------------------------|-------------------------------------------|--------------------------------------------------|
//! | [`CreateQueue`](QueueAccess::CreateQueue)     | `queue.declare` of a queue not defined yet | Create on the cluster, or Create on the topic     |
//! | [`DescribeQueue`](QueueAccess::DescribeQueue) | `queue.declare` passive, or of a defined queue | Describe on the topic                         |
//! | [`BindQueue`](QueueAccess::BindQueue)         | `queue.bind`, `queue.unbind`              | Alter on the topic (what lands in it changes)     |
//! | [`PurgeQueue`](QueueAccess::PurgeQueue)       | `queue.purge`                             | Delete on the topic (Kafka's DeleteRecords)       |
//! | [`DeleteQueue`](QueueAccess::DeleteQueue)     | `queue.delete`                            | Delete on the topic and Delete on the group       |
//! | [`ConsumeQueue`](QueueAccess::ConsumeQueue)   | `basic.consume`, `basic.get`              | Read on the group and Read on the topic (a share consumer's ACLs) |
//! | [`PublishTo`](QueueAccess::PublishTo)         | `basic.publish`, for each queue the message lands in | Write on the topic                     |
//! | [`DeadLetterTo`](QueueAccess::DeadLetterTo) | `queue.declare` of a new queue with `x-dead-letter-exchange` | Write on the topic its dead letters go to: the queue named by `x-dead-letter-routing-key` on the default exchange; any other route can reach any queue, so Write on every topic (a `*` or empty-prefix binding) |
//! | [`CreateExchange`](QueueAccess::CreateExchange) | `exchange.declare` of an exchange not defined yet | Create on the cluster                     |
//! | [`DeleteExchange`](QueueAccess::DeleteExchange) | `exchange.delete`                       | Delete on the cluster                             |
//!
//! Not checked, because they move no data and change nothing another caller sees:
//! `exchange.declare` of an existing exchange (passive or not; the built-in exchanges
//! always exist), `basic.qos`, `confirm.select`, `channel.flow`, and the acknowledgements
//! of the caller's own deliveries (`basic.ack`, `nack`, `reject`, `recover`,
//! `basic.cancel`). What routing through an exchange stores is checked at the queues it
//! lands in, so a publish that no queue takes needs nothing. Exchanges are broker-wide
//! names, so creating and deleting them is a cluster operation; Delete on the cluster is
//! asked rather than Alter, which would also allow managing users and ACLs. What the
//! broker does on its own (deleting exclusive and auto-delete queues as their connection
//! or last consumer goes, dead-lettering, expiry) is not checked then: where a queue's
//! dead letters may go is checked when it is declared.

use super::acl::{Operation, Resource, WILDCARD};
use super::{Caller, Grant, Need, Security};
use crate::BrokerError;

/// A message-queue operation, with the queue or exchange it is about; see the module
/// docs for what each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAccess<'a> {
    /// Declaring a queue that is not defined yet.
    CreateQueue(&'a str),
    /// Looking at a defined queue: a passive declare, or declaring it again.
    DescribeQueue(&'a str),
    /// Binding the queue to an exchange, or unbinding it.
    BindQueue(&'a str),
    /// Dropping the queue's waiting messages.
    PurgeQueue(&'a str),
    /// Deleting the queue (its topic and share group).
    DeleteQueue(&'a str),
    /// Consuming from the queue, or getting one message.
    ConsumeQueue(&'a str),
    /// Storing a published message in the queue.
    PublishTo(&'a str),
    /// Declaring a queue whose dead letters go to the queue named (the default exchange
    /// with `x-dead-letter-routing-key`), or with `None` possibly to any queue (another
    /// exchange, or the messages' own routing keys).
    DeadLetterTo(Option<&'a str>),
    /// Declaring an exchange that is not defined yet.
    CreateExchange(&'a str),
    /// Deleting an exchange.
    DeleteExchange(&'a str),
}

impl<'a> QueueAccess<'a> {
    /// What the operation is about: `"queue"` or `"exchange"`.
    pub fn object_kind(&self) -> &'static str {
        match self {
            QueueAccess::CreateExchange(_) | QueueAccess::DeleteExchange(_) => "exchange",
            _ => "queue",
        }
    }

    /// The name of the queue or exchange.
    pub fn object_name(&self) -> &'a str {
        match *self {
            QueueAccess::CreateQueue(name)
            | QueueAccess::DescribeQueue(name)
            | QueueAccess::BindQueue(name)
            | QueueAccess::PurgeQueue(name)
            | QueueAccess::DeleteQueue(name)
            | QueueAccess::ConsumeQueue(name)
            | QueueAccess::PublishTo(name)
            | QueueAccess::CreateExchange(name)
            | QueueAccess::DeleteExchange(name) => name,
            QueueAccess::DeadLetterTo(target) => target.unwrap_or(WILDCARD),
        }
    }
}

impl Security {
    /// Fails with [`BrokerError::NotAuthorized`] (logged and counted, naming the first
    /// operation and resource refused) unless `caller` may do `access`.
    pub fn authorize_queue(
        &self,
        caller: &Caller,
        access: QueueAccess<'_>,
    ) -> Result<(), BrokerError> {
        let check =
            |operation, resource: Resource<'_>| self.authorize(caller, operation, &resource);
        match access {
            QueueAccess::CreateQueue(name) => self.authorize_create_topic(caller, name),
            QueueAccess::DescribeQueue(name) => check(Operation::Describe, Resource::topic(name)),
            QueueAccess::BindQueue(name) => check(Operation::Alter, Resource::topic(name)),
            QueueAccess::PurgeQueue(name) => check(Operation::Delete, Resource::topic(name)),
            QueueAccess::DeleteQueue(name) => {
                check(Operation::Delete, Resource::topic(name))?;
                check(Operation::Delete, Resource::group(name))
            }
            QueueAccess::ConsumeQueue(name) => self.grant_consumer(caller, name).map(drop),
            QueueAccess::PublishTo(name) => check(Operation::Write, Resource::topic(name)),
            // Dead letters are stored by the broker on the declarer's behalf later, so
            // where they may go is checked now.
            QueueAccess::DeadLetterTo(target) => check(
                Operation::Write,
                Resource::topic(target.unwrap_or(WILDCARD)),
            ),
            QueueAccess::CreateExchange(_) => check(Operation::Create, Resource::cluster()),
            QueueAccess::DeleteExchange(_) => check(Operation::Delete, Resource::cluster()),
        }
    }

    /// Authorizes a consumer of queue `name` (Read on its group and its topic) and gives the
    /// grant its deliveries are held to.
    pub fn grant_consumer(&self, caller: &Caller, name: &str) -> Result<Grant, BrokerError> {
        self.grant(
            caller,
            vec![
                Need::group(Operation::Read, name),
                Need::topic(Operation::Read, name),
            ],
        )
    }

    /// Fails with [`BrokerError::NotAuthorized`] unless `caller` may create topic `name`:
    /// Create on the cluster, or on the topic, as in Kafka (only a refusal of both is
    /// logged and counted, as the one on the topic).
    pub fn authorize_create_topic(&self, caller: &Caller, name: &str) -> Result<(), BrokerError> {
        if self.permits(caller, Operation::Create, &Resource::cluster()) {
            return Ok(());
        }
        self.authorize(caller, Operation::Create, &Resource::topic(name))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::security::acl::{AclBinding, PatternType, Permission, ResourceType};
    use crate::security::{Principal, SecurityConfig};

    fn allow(kind: ResourceType, name: &str, operation: Operation) -> AclBinding {
        AclBinding {
            resource_type: kind,
            resource_name: name.to_owned(),
            pattern_type: PatternType::Literal,
            principal: "User:bob".to_owned(),
            host: "*".to_owned(),
            operation,
            permission: Permission::Allow,
        }
    }

    fn denied(result: Result<(), BrokerError>) -> Option<(Operation, ResourceType, String)> {
        match result {
            Err(BrokerError::NotAuthorized {
                operation,
                resource_type,
                resource,
                ..
            }) => Some((operation, resource_type, resource)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn each_operation_needs_what_it_does_to_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let config = SecurityConfig {
            auth: true,
            ..SecurityConfig::default()
        };
        let security = Security::open(dir.path(), config).unwrap();
        let bob = Caller::new(
            Principal::user("bob"),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "amqp",
        );
        let internal = Caller::internal();
        assert_eq!(
            denied(security.authorize_queue(&bob, QueueAccess::ConsumeQueue("q"))),
            Some((Operation::Read, ResourceType::Group, "q".to_owned()))
        );
        security
            .add_acls(
                &internal,
                vec![
                    allow(ResourceType::Group, "q", Operation::Read),
                    allow(ResourceType::Topic, "q", Operation::Write),
                    allow(ResourceType::Topic, "new", Operation::Create),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            denied(security.authorize_queue(&bob, QueueAccess::ConsumeQueue("q"))),
            Some((Operation::Read, ResourceType::Topic, "q".to_owned())),
            "reading the group is not reading the topic"
        );
        assert!(
            security
                .authorize_queue(&bob, QueueAccess::PublishTo("q"))
                .is_ok()
        );
        assert!(
            security
                .authorize_queue(&bob, QueueAccess::DescribeQueue("q"))
                .is_ok(),
            "write implies describe"
        );
        assert!(
            security
                .authorize_queue(&bob, QueueAccess::CreateQueue("new"))
                .is_ok()
        );
        assert_eq!(
            denied(security.authorize_queue(&bob, QueueAccess::CreateQueue("other"))),
            Some((Operation::Create, ResourceType::Topic, "other".to_owned()))
        );
        assert_eq!(
            denied(security.authorize_queue(&bob, QueueAccess::CreateExchange("logs"))),
            Some((
                Operation::Create,
                ResourceType::Cluster,
                "kafka-cluster".to_owned()
            ))
        );
        assert_eq!(
            denied(security.authorize_queue(&bob, QueueAccess::PurgeQueue("q"))),
            Some((Operation::Delete, ResourceType::Topic, "q".to_owned()))
        );
        security
            .add_acls(
                &internal,
                vec![allow(
                    ResourceType::Cluster,
                    "kafka-cluster",
                    Operation::Create,
                )],
            )
            .await
            .unwrap();
        assert!(
            security
                .authorize_queue(&bob, QueueAccess::CreateQueue("other"))
                .is_ok(),
            "create on the cluster creates any queue"
        );
        assert!(
            security
                .authorize_queue(&bob, QueueAccess::CreateExchange("logs"))
                .is_ok()
        );
        assert_eq!(
            QueueAccess::DeleteExchange("logs").object_kind(),
            "exchange"
        );
        assert_eq!(QueueAccess::BindQueue("q").object_name(), "q");
    }
}
