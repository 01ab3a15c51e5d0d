//! CreateAcls, DescribeAcls and DeleteAcls: the broker's ACLs managed with Kafka's admin
//! tools (`kafka-acls.sh`, the admin clients). Creating and deleting need Alter on the
//! cluster, describing needs Describe, as in Kafka.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::BrokerError;
use sluice_broker::security::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};

use super::Context;
use crate::errors;

/// Kafka's code for "any value" in a filter.
const ANY: i8 = 1;
/// Kafka's pattern-type code asking for every binding that applies to a name.
const MATCH: i8 = 2;

/// Kafka's codes of the resource types served.
const RESOURCE_TYPES: [(i8, ResourceType); 4] = [
    (2, ResourceType::Topic),
    (3, ResourceType::Group),
    (4, ResourceType::Cluster),
    (5, ResourceType::TransactionalId),
];
/// Kafka's codes of the pattern types.
const PATTERN_TYPES: [(i8, PatternType); 2] =
    [(3, PatternType::Literal), (4, PatternType::Prefixed)];
/// Kafka's codes of the operations.
const OPERATIONS: [(i8, Operation); 11] = [
    (2, Operation::All),
    (3, Operation::Read),
    (4, Operation::Write),
    (5, Operation::Create),
    (6, Operation::Delete),
    (7, Operation::Alter),
    (8, Operation::Describe),
    (9, Operation::ClusterAction),
    (10, Operation::DescribeConfigs),
    (11, Operation::AlterConfigs),
    (12, Operation::IdempotentWrite),
];
/// Kafka's codes of the permissions.
const PERMISSIONS: [(i8, Permission); 2] = [(2, Permission::Deny), (3, Permission::Allow)];

/// The value of Kafka code `code` in `table`; `field` names it in the error.
fn decode<T: Copy>(table: &[(i8, T)], field: &'static str, code: i8) -> Result<T, BrokerError> {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let known: Vec<String> = table.iter().map(|(c, _)| c.to_string()).collect();
            BrokerError::InvalidRequest {
                field,
                reason: format!("code {code} is not one of {} here", known.join(", ")),
            }
        })
}

/// A filter field: `None` for ANY, else the value.
fn decode_filter<T: Copy>(
    table: &[(i8, T)],
    field: &'static str,
    code: i8,
) -> Result<Option<T>, BrokerError> {
    if code == ANY {
        Ok(None)
    } else {
        decode(table, field, code).map(Some)
    }
}

/// Kafka's code of `value` in `table`.
fn encode<T: Copy + PartialEq>(table: &[(i8, T)], value: T) -> i8 {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or(0, |&(c, _)| c)
}

/// A binding to create, from its Kafka form.
fn binding(creation: &AclCreation) -> Result<AclBinding, BrokerError> {
    Ok(AclBinding {
        resource_type: decode(&RESOURCE_TYPES, "resource_type", creation.resource_type)?,
        resource_name: creation.resource_name.to_string(),
        pattern_type: decode(
            &PATTERN_TYPES,
            "resource_pattern_type",
            creation.resource_pattern_type,
        )?,
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: decode(&OPERATIONS, "operation", creation.operation)?,
        permission: decode(&PERMISSIONS, "permission_type", creation.permission_type)?,
    })
}

/// The fields of a DescribeAcls or DeleteAcls filter, in Kafka's codes.
struct KafkaFilter<'a> {
    resource_type: i8,
    resource_name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission_type: i8,
}

impl KafkaFilter<'_> {
    /// The broker's filter for these fields.
    fn decode(&self) -> Result<AclFilter, BrokerError> {
        let (pattern_type, matching) = match self.pattern_type {
            MATCH => (None, true),
            code => (
                decode_filter(&PATTERN_TYPES, "pattern_type_filter", code)?,
                false,
            ),
        };
        Ok(AclFilter {
            resource_type: decode_filter(
                &RESOURCE_TYPES,
                "resource_type_filter",
                self.resource_type,
            )?,
            resource_name: self.resource_name.map(ToString::to_string),
            pattern_type,
            matching,
            principal: self.principal.map(ToString::to_string),
            host: self.host.map(ToString::to_string),
            operation: decode_filter(&OPERATIONS, "operation", self.operation)?,
            permission: decode_filter(&PERMISSIONS, "permission_type", self.permission_type)?,
        })
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Answers CreateAcls: each creation on its own, with its own error.
pub(crate) async fn create_acls(
    ctx: &Context,
    _header: &RequestHeader,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let mut results = Vec::with_capacity(request.creations.len());
    for creation in &request.creations {
        let created = match binding(creation) {
            Ok(binding) => {
                ctx.broker
                    .security()
                    .add_acls(&ctx.caller, vec![binding])
                    .await
            }
            Err(err) => Err(err),
        };
        results.push(match created {
            Ok(()) => AclCreationResult::default(),
            Err(err) => {
                let (code, message) = errors::answer(&err);
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    CreateAclsResponse::default().with_results(results)
}

/// Answers DescribeAcls: the bindings the filter matches, grouped by resource pattern.
pub(crate) async fn describe_acls(
    ctx: &Context,
    _header: &RequestHeader,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let filter = KafkaFilter {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.as_ref(),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_ref(),
        host: request.host_filter.as_ref(),
        operation: request.operation,
        permission_type: request.permission_type,
    };
    let found = filter
        .decode()
        .and_then(|filter| ctx.broker.security().acls(&ctx.caller, &filter));
    let bindings = match found {
        Ok(bindings) => bindings,
        Err(err) => {
            let (code, message) = errors::answer(&err);
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)));
        }
    };
    // The bindings come sorted by resource type, name and pattern type: one resource per run.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for binding in &bindings {
        let resource_type = encode(&RESOURCE_TYPES, binding.resource_type);
        let pattern_type = encode(&PATTERN_TYPES, binding.pattern_type);
        let same = resources.last().is_some_and(|r| {
            r.resource_type == resource_type
                && r.pattern_type == pattern_type
                && r.resource_name.as_str() == binding.resource_name
        });
        if !same {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(text(&binding.resource_name))
                    .with_pattern_type(pattern_type),
            );
        }
        if let Some(resource) = resources.last_mut() {
            resource.acls.push(
                AclDescription::default()
                    .with_principal(text(&binding.principal))
                    .with_host(text(&binding.host))
                    .with_operation(encode(&OPERATIONS, binding.operation))
                    .with_permission_type(encode(&PERMISSIONS, binding.permission)),
            );
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

/// Answers DeleteAcls: each filter removes what it matches and lists it.
pub(crate) async fn delete_acls(
    ctx: &Context,
    _header: &RequestHeader,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let mut results = Vec::with_capacity(request.filters.len());
    for filter in &request.filters {
        let removed = match delete_filter(filter).decode() {
            Ok(filter) => {
                ctx.broker
                    .security()
                    .remove_acls(&ctx.caller, &filter)
                    .await
            }
            Err(err) => Err(err),
        };
        results.push(match removed {
            Ok(bindings) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(encode(&RESOURCE_TYPES, b.resource_type))
                            .with_resource_name(text(&b.resource_name))
                            .with_pattern_type(encode(&PATTERN_TYPES, b.pattern_type))
                            .with_principal(text(&b.principal))
                            .with_host(text(&b.host))
                            .with_operation(encode(&OPERATIONS, b.operation))
                            .with_permission_type(encode(&PERMISSIONS, b.permission))
                    })
                    .collect(),
            ),
            Err(err) => {
                let (code, message) = errors::answer(&err);
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

fn delete_filter(filter: &DeleteAclsFilter) -> KafkaFilter<'_> {
    KafkaFilter {
        resource_type: filter.resource_type_filter,
        resource_name: filter.resource_name_filter.as_ref(),
        pattern_type: filter.pattern_type_filter,
        principal: filter.principal_filter.as_ref(),
        host: filter.host_filter.as_ref(),
        operation: filter.operation,
        permission_type: filter.permission_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_resource_and_permission_has_its_kafka_code() {
        for &op in Operation::ALL {
            assert_eq!(
                decode(&OPERATIONS, "operation", encode(&OPERATIONS, op)).ok(),
                Some(op)
            );
        }
        for &kind in ResourceType::ALL {
            let code = encode(&RESOURCE_TYPES, kind);
            assert_eq!(
                decode(&RESOURCE_TYPES, "resource_type", code).ok(),
                Some(kind)
            );
        }
        assert_eq!(
            decode_filter(&OPERATIONS, "operation", ANY).ok(),
            Some(None)
        );
        assert!(decode(&OPERATIONS, "operation", ANY).is_err());
        assert!(decode(&PERMISSIONS, "permission_type", 9).is_err());
    }
}
