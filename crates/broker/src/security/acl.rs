//! Access control lists in Kafka's model (`security/acls.json`): a binding allows or
//! denies one principal one operation on the resources a name pattern matches; deny wins,
//! and with no allowing binding an operation is denied.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::file::StateFile;
use super::principal::Principal;
use crate::BrokerError;

/// The name of the one cluster resource (Kafka's `kafka-cluster`).
pub const CLUSTER_RESOURCE: &str = "kafka-cluster";
/// A literal resource name, principal or host matching every one.
pub const WILDCARD: &str = "*";

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The lower-case name used on the command line and in the files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = BrokerError;

            fn from_str(text: &str) -> Result<$name, BrokerError> {
                let wanted = text.to_ascii_lowercase().replace('_', "-");
                $name::ALL.iter().copied().find(|v| v.as_str() == wanted).ok_or_else(|| {
                    let known: Vec<_> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    BrokerError::invalid_request(
                        stringify!($name),
                        format!("{text:?} is not one of {}", known.join(", ")),
                    )
                })
            }
        }
    };
}

named_enum! {
    /// What kind of thing a binding is about.
    ResourceType {
        /// A topic (an AMQP queue is a topic of the same name).
        Topic = "topic",
        /// A consumer group or share group (an AMQP queue's consumers form the share group
        /// of the queue's name).
        Group = "group",
        /// The broker as a whole (creating topics, managing ACLs, users and quotas).
        Cluster = "cluster",
        /// A transactional producer id (kept for Kafka's tools; transactions are not offered).
        TransactionalId = "transactional-id",
    }
}

named_enum! {
    /// How a binding's name matches resource names.
    PatternType {
        /// The exact name, or every name when it is `*`.
        Literal = "literal",
        /// Every name starting with it.
        Prefixed = "prefixed",
    }
}

named_enum! {
    /// What a caller does to a resource.
    Operation {
        /// Every operation.
        All = "all",
        /// Consume from a topic; join, commit to or fetch from a group.
        Read = "read",
        /// Produce to a topic.
        Write = "write",
        /// Create a topic (on the topic, or on the cluster for every topic).
        Create = "create",
        /// Delete a topic or group.
        Delete = "delete",
        /// Change a topic's partitions, an AMQP binding; ACLs, users and quotas on the cluster.
        Alter = "alter",
        /// See a resource in metadata and lists; read ACLs, users and quotas on the cluster.
        Describe = "describe",
        /// Broker-to-broker actions (unused on one node).
        ClusterAction = "cluster-action",
        /// Read a resource's configuration.
        DescribeConfigs = "describe-configs",
        /// Change a resource's configuration.
        AlterConfigs = "alter-configs",
        /// Idempotent produce (allowed with Write on the topic too).
        IdempotentWrite = "idempotent-write",
    }
}

named_enum! {
    /// Whether a binding allows or denies.
    Permission {
        /// Allows the operation.
        Allow = "allow",
        /// Denies it, whatever allows it.
        Deny = "deny",
    }
}

impl Operation {
    /// Whether a binding for `self` covers a request for `asked`: the same operation,
    /// `All`, or one that implies it as in Kafka (Read, Write, Delete and Alter imply
    /// Describe; AlterConfigs implies DescribeConfigs; Write implies IdempotentWrite).
    /// Implication applies to allowing bindings only.
    fn allows(self, asked: Operation) -> bool {
        self == asked
            || self == Operation::All
            || match asked {
                Operation::Describe => matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ),
                Operation::DescribeConfigs => self == Operation::AlterConfigs,
                Operation::IdempotentWrite => self == Operation::Write,
                _ => false,
            }
    }

    fn denies(self, asked: Operation) -> bool {
        self == asked || self == Operation::All
    }
}

/// A resource an operation is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Its kind.
    pub kind: ResourceType,
    /// Its name ([`CLUSTER_RESOURCE`] for the cluster).
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    /// The topic `name`.
    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Topic,
            name,
        }
    }

    /// The group `name`.
    pub fn group(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Group,
            name,
        }
    }

    /// The cluster.
    pub fn cluster() -> Resource<'static> {
        Resource {
            kind: ResourceType::Cluster,
            name: CLUSTER_RESOURCE,
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind, self.name)
    }
}

/// One access control entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The name or prefix.
    pub resource_name: String,
    /// How the name matches.
    pub pattern_type: PatternType,
    /// `User:NAME`, or `User:*` for every principal.
    pub principal: String,
    /// The client address it applies to, or `*` for every one.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: Permission,
}

impl AclBinding {
    /// Checks the fields: a principal `User:NAME`, a host that is `*` or an IP address, a
    /// non-empty name (`kafka-cluster` for the cluster).
    pub fn validate(&self) -> Result<(), BrokerError> {
        let user = self.principal.strip_prefix("User:").ok_or_else(|| {
            BrokerError::invalid_request(
                "principal",
                format!("{:?} is not of the form User:NAME", self.principal),
            )
        })?;
        if user != WILDCARD {
            super::users::validate_user_name(user)?;
        }
        if self.host != WILDCARD && self.host.parse::<IpAddr>().is_err() {
            return Err(BrokerError::invalid_request(
                "host",
                format!("{:?} is neither * nor an IP address", self.host),
            ));
        }
        if self.resource_name.is_empty() {
            return Err(BrokerError::invalid_request("resource_name", "is empty"));
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_RESOURCE {
            return Err(BrokerError::invalid_request(
                "resource_name",
                format!("the cluster resource is named {CLUSTER_RESOURCE:?}"),
            ));
        }
        Ok(())
    }

    fn matches_resource(&self, resource: &Resource<'_>) -> bool {
        self.resource_type == resource.kind
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == WILDCARD || self.resource_name == resource.name
                }
                PatternType::Prefixed => resource.name.starts_with(&self.resource_name),
            }
    }

    fn matches_caller(&self, principal: &Principal, host: IpAddr) -> bool {
        let user = self.principal.strip_prefix("User:").unwrap_or_default();
        (user == WILDCARD || user == principal.name())
            && (self.host == WILDCARD || self.host.parse::<IpAddr>().is_ok_and(|h| h == host))
    }
}

/// Which bindings a list or delete is about: each `None` matches every value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    /// The kind of resource.
    pub resource_type: Option<ResourceType>,
    /// The exact stored name (or, with [`AclFilter::matching`], a resource name).
    pub resource_name: Option<String>,
    /// The stored pattern type.
    pub pattern_type: Option<PatternType>,
    /// With a resource name: match every binding that applies to a resource of that
    /// name (literal, wildcard and prefixed), as Kafka's `MATCH` pattern filter does.
    pub matching: bool,
    /// The principal.
    pub principal: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The operation.
    pub operation: Option<Operation>,
    /// The permission.
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Whether `binding` passes the filter.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let name_matches = match (&self.resource_name, self.matching) {
            (None, _) => true,
            (Some(name), false) => &binding.resource_name == name,
            (Some(name), true) => binding.matches_resource(&Resource {
                kind: binding.resource_type,
                name,
            }),
        };
        self.resource_type
            .is_none_or(|t| t == binding.resource_type)
            && name_matches
            && self.pattern_type.is_none_or(|p| p == binding.pattern_type)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| p == &binding.principal)
            && self.host.as_ref().is_none_or(|h| h == &binding.host)
            && self.operation.is_none_or(|o| o == binding.operation)
            && self.permission.is_none_or(|p| p == binding.permission)
    }
}

/// What `acls.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AclsFile {
    #[serde(default)]
    version: u32,
    acls: Vec<AclBinding>,
}

/// The bindings of a data directory, kept in memory and written through to its file.
#[derive(Debug)]
pub(crate) struct Acls {
    file: StateFile,
    /// The bindings, sorted and unique; replaced whole on a change so a check reads a
    /// snapshot without holding the lock.
    current: RwLock<Arc<Vec<AclBinding>>>,
    /// Serialises changes and the writes of the file.
    write: Mutex<()>,
}

impl Acls {
    pub(crate) fn open(data_dir: &Path) -> Result<Acls, BrokerError> {
        let file = StateFile::new(data_dir, "acls.json");
        let mut state: AclsFile = file.load()?;
        if let Some(bad) = state.acls.iter().find(|b| b.validate().is_err()) {
            return Err(BrokerError::SecurityState {
                path: file.path(),
                reason: format!("holds an invalid binding {bad:?}"),
                source: None,
            });
        }
        state.acls.sort();
        state.acls.dedup();
        Ok(Acls {
            file,
            current: RwLock::new(Arc::new(state.acls)),
            write: Mutex::new(()),
        })
    }

    /// Whether `principal` at `host` may do `operation` on `resource`.
    pub(crate) fn allows(
        &self,
        principal: &Principal,
        host: IpAddr,
        operation: Operation,
        resource: &Resource<'_>,
    ) -> bool {
        let acls = Arc::clone(&self.current.read());
        let applying = || {
            acls.iter()
                .filter(|b| b.matches_resource(resource) && b.matches_caller(principal, host))
        };
        if applying().any(|b| b.permission == Permission::Deny && b.operation.denies(operation)) {
            return false;
        }
        applying().any(|b| b.permission == Permission::Allow && b.operation.allows(operation))
    }

    /// Adds `bindings` (those already present are kept once).
    pub(crate) fn add(&self, bindings: Vec<AclBinding>) -> Result<(), BrokerError> {
        for b in &bindings {
            b.validate()?;
        }
        self.change(|acls| {
            acls.extend(bindings);
            acls.sort();
            acls.dedup();
        })
        .map(drop)
    }

    /// Removes every binding `filter` matches, giving them back.
    pub(crate) fn remove(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, BrokerError> {
        self.change(|acls| {
            let (removed, kept) = acls.drain(..).partition(|b| filter.matches(b));
            *acls = kept;
            removed
        })
    }

    /// The bindings `filter` matches.
    pub(crate) fn list(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.current
            .read()
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    fn change<R>(&self, edit: impl FnOnce(&mut Vec<AclBinding>) -> R) -> Result<R, BrokerError> {
        let _writing = self.write.lock();
        let mut acls = Vec::clone(&self.current.read());
        let result = edit(&mut acls);
        self.file.store(&AclsFile {
            version: 1,
            acls: acls.clone(),
        })?;
        *self.current.write() = Arc::new(acls);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn binding(
        kind: ResourceType,
        name: &str,
        pattern: PatternType,
        who: &str,
        op: Operation,
        p: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: kind,
            resource_name: name.to_owned(),
            pattern_type: pattern,
            principal: format!("User:{who}"),
            host: WILDCARD.to_owned(),
            operation: op,
            permission: p,
        }
    }

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn allow_deny_prefix_wildcard_and_implication() {
        let dir = tempfile::tempdir().unwrap();
        let acls = Acls::open(dir.path()).unwrap();
        let alice = Principal::user("alice");
        let bob = Principal::user("bob");
        let orders = Resource::topic("orders.eu");
        assert!(
            !acls.allows(&alice, HOST, Operation::Read, &orders),
            "denied by default"
        );
        acls.add(vec![
            binding(
                ResourceType::Topic,
                "orders.",
                PatternType::Prefixed,
                "alice",
                Operation::Read,
                Permission::Allow,
            ),
            binding(
                ResourceType::Topic,
                "*",
                PatternType::Literal,
                "*",
                Operation::Write,
                Permission::Allow,
            ),
            binding(
                ResourceType::Topic,
                "orders.eu",
                PatternType::Literal,
                "bob",
                Operation::All,
                Permission::Deny,
            ),
        ])
        .unwrap();
        assert!(acls.allows(&alice, HOST, Operation::Read, &orders));
        assert!(
            acls.allows(&alice, HOST, Operation::Describe, &orders),
            "read implies describe"
        );
        assert!(!acls.allows(&alice, HOST, Operation::Delete, &orders));
        assert!(!acls.allows(&alice, HOST, Operation::Read, &Resource::topic("other")));
        assert!(acls.allows(&alice, HOST, Operation::Write, &Resource::topic("other")));
        assert!(
            !acls.allows(&bob, HOST, Operation::Write, &orders),
            "deny wins"
        );
        assert!(!acls.allows(&alice, HOST, Operation::Read, &Resource::group("orders.eu")));

        let reopened = Acls::open(dir.path()).unwrap();
        assert_eq!(reopened.list(&AclFilter::default()).len(), 3);
        let matching = AclFilter {
            resource_type: Some(ResourceType::Topic),
            resource_name: Some("orders.eu".to_owned()),
            matching: true,
            ..AclFilter::default()
        };
        assert_eq!(reopened.list(&matching).len(), 3);
        let removed = reopened
            .remove(&AclFilter {
                permission: Some(Permission::Deny),
                ..AclFilter::default()
            })
            .unwrap();
        assert_eq!(removed.len(), 1);
        assert!(reopened.allows(&bob, HOST, Operation::Write, &orders));
    }

    #[test]
    fn a_host_binding_applies_to_that_address_only() {
        let dir = tempfile::tempdir().unwrap();
        let acls = Acls::open(dir.path()).unwrap();
        let mut b = binding(
            ResourceType::Group,
            "g",
            PatternType::Literal,
            "alice",
            Operation::Read,
            Permission::Allow,
        );
        b.host = "10.0.0.1".to_owned();
        acls.add(vec![b]).unwrap();
        let alice = Principal::user("alice");
        assert!(acls.allows(
            &alice,
            "10.0.0.1".parse().unwrap(),
            Operation::Read,
            &Resource::group("g")
        ));
        assert!(!acls.allows(&alice, HOST, Operation::Read, &Resource::group("g")));
    }

    #[test]
    fn invalid_bindings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let acls = Acls::open(dir.path()).unwrap();
        let mut b = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "a",
            Operation::Read,
            Permission::Allow,
        );
        b.principal = "alice".to_owned();
        assert!(acls.add(vec![b]).is_err());
        let c = binding(
            ResourceType::Cluster,
            "x",
            PatternType::Literal,
            "a",
            Operation::Alter,
            Permission::Allow,
        );
        assert!(acls.add(vec![c]).is_err());
        assert!("READ".parse::<Operation>().is_ok());
        assert!("describe_configs".parse::<Operation>().is_ok());
        assert!(
            "nope"
                .parse::<Operation>()
                .unwrap_err()
                .to_string()
                .contains("read")
        );
    }
}
