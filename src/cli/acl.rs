//! `sluice acl`: add, remove and list access control bindings (Kafka's model: a
//! principal is allowed or denied an operation on the resources a name pattern matches).

use std::io::{self, Write};

use clap::Subcommand;
use serde_json::json;
use sluice_proto::v1 as pb;

use super::output::{Output, Table, write_json};
use super::security::TargetArgs;

/// Flags of `sluice acl`.
#[derive(Debug, clap::Args)]
pub(crate) struct AclArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    action: AclAction,
}

#[derive(Debug, Subcommand)]
enum AclAction {
    /// Allow (or with --deny, deny) principals operations on a resource; one binding per
    /// principal and operation.
    Add {
        #[command(flatten)]
        resource: ResourceArgs,
        /// `User:NAME`, or `User:*` for every principal; repeatable
        #[arg(long, value_name = "PRINCIPAL", required = true)]
        principal: Vec<String>,
        /// read, write, create, delete, alter, describe, describe-configs, alter-configs,
        /// idempotent-write, cluster-action or all; comma-separated or repeated
        #[arg(long, value_name = "OP", value_delimiter = ',', required = true)]
        operation: Vec<String>,
        /// The client address the bindings apply to (default: every one)
        #[arg(long, value_name = "IP", default_value = "*")]
        host: String,
        /// The resource name is a prefix: the bindings apply to every resource it begins
        #[arg(long)]
        prefixed: bool,
        /// Deny instead of allow (a deny wins over every allow)
        #[arg(long)]
        deny: bool,
    },
    /// Remove the bindings the filter matches (every given flag must match).
    Remove {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// List the bindings the filter matches (every given flag must match).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// The resource a binding or filter is about.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
struct ResourceArgs {
    /// A topic (or topic name prefix), `*` for every topic
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    /// A consumer or share group (or prefix), `*` for every group
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// A transactional id (or prefix)
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// The cluster (creating topics, managing users, ACLs and quotas)
    #[arg(long)]
    cluster: bool,
}

impl ResourceArgs {
    /// The resource type and name; `None` when no resource was named.
    fn resource(&self) -> Option<(&'static str, String)> {
        if let Some(topic) = &self.topic {
            Some(("topic", topic.clone()))
        } else if let Some(group) = &self.group {
            Some(("group", group.clone()))
        } else if let Some(id) = &self.transactional_id {
            Some(("transactional-id", id.clone()))
        } else if self.cluster {
            Some(("cluster", "kafka-cluster".to_owned()))
        } else {
            None
        }
    }
}

/// Which bindings a remove or list is about.
#[derive(Debug, clap::Args)]
struct FilterArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    /// Only bindings whose name is of this pattern type: literal or prefixed
    #[arg(long, value_name = "TYPE", conflicts_with = "matching")]
    pattern: Option<String>,
    /// Every binding that applies to the named resource: literal, `*` and prefixed ones
    #[arg(long)]
    matching: bool,
    /// Only bindings of this principal
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Only bindings of this operation
    #[arg(long, value_name = "OP")]
    operation: Option<String>,
    /// Only bindings of this host
    #[arg(long, value_name = "IP")]
    host: Option<String>,
    /// Only allowing (allow) or denying (deny) bindings
    #[arg(long, value_name = "PERMISSION")]
    permission: Option<String>,
}

impl FilterArgs {
    fn filter(self) -> pb::AclFilter {
        let (resource_type, resource_name) = self.resource.resource().unwrap_or_default();
        pb::AclFilter {
            resource_type: resource_type.to_owned(),
            resource_name,
            pattern_type: self.pattern.unwrap_or_default(),
            matching: self.matching,
            principal: self.principal.unwrap_or_default(),
            host: self.host.unwrap_or_default(),
            operation: self.operation.unwrap_or_default(),
            permission: self.permission.unwrap_or_default(),
        }
    }
}

/// Runs `sluice acl ...`.
pub(crate) async fn run(args: AclArgs) -> anyhow::Result<()> {
    let mut target = args.target.open().await?;
    let mut out = io::stdout().lock();
    match args.action {
        AclAction::Add {
            resource,
            principal,
            operation,
            host,
            prefixed,
            deny,
        } => {
            let Some((resource_type, resource_name)) = resource.resource() else {
                anyhow::bail!(
                    "name the resource: --topic, --group, --transactional-id or --cluster"
                );
            };
            let bindings: Vec<pb::AclBinding> = principal
                .iter()
                .flat_map(|principal| {
                    operation.iter().map(|operation| pb::AclBinding {
                        resource_type: resource_type.to_owned(),
                        resource_name: resource_name.clone(),
                        pattern_type: if prefixed { "prefixed" } else { "literal" }.to_owned(),
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: operation.clone(),
                        permission: if deny { "deny" } else { "allow" }.to_owned(),
                    })
                })
                .collect();
            let count = bindings.len();
            target.add_acls(bindings).await?;
            writeln!(out, "added {count} binding(s)")?;
        }
        AclAction::Remove { filter } => {
            let removed = target.remove_acls(filter.filter()).await?;
            writeln!(out, "removed {} binding(s)", removed.len())?;
        }
        AclAction::List { filter, output } => {
            print_bindings(&mut out, &target.acls(filter.filter()).await?, output)?;
        }
    }
    Ok(())
}

fn print_bindings(
    out: &mut impl Write,
    bindings: &[pb::AclBinding],
    output: Output,
) -> io::Result<()> {
    match output {
        Output::Table => {
            let mut table = Table::new(&[
                "PRINCIPAL",
                "PERMISSION",
                "OPERATION",
                "RESOURCE",
                "NAME",
                "PATTERN",
                "HOST",
            ]);
            for b in bindings {
                table.row(vec![
                    b.principal.clone(),
                    b.permission.clone(),
                    b.operation.clone(),
                    b.resource_type.clone(),
                    b.resource_name.clone(),
                    b.pattern_type.clone(),
                    b.host.clone(),
                ]);
            }
            table.write(out)
        }
        Output::Json => {
            for b in bindings {
                write_json(
                    out,
                    &json!({
                        "principal": b.principal,
                        "permission": b.permission,
                        "operation": b.operation,
                        "resource_type": b.resource_type,
                        "resource_name": b.resource_name,
                        "pattern_type": b.pattern_type,
                        "host": b.host,
                    }),
                )?;
            }
            Ok(())
        }
    }
}
