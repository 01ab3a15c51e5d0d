//! The `sluice.v1.Security` service: users, ACLs and quotas. The broker checks that the
//! caller may make each change; this maps messages and errors.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use sluice_broker::security::{
    AclBinding as Binding, AclFilter as Filter, QuotaKind, ScramMechanism, WILDCARD,
};
use sluice_broker::{Broker, BrokerError};
use sluice_proto::v1::security_server::Security;
use sluice_proto::v1::{
    AclBinding, AclFilter, CreateAclsRequest, CreateAclsResponse, CreateUserRequest,
    CreateUserResponse, DeleteAclsRequest, DeleteAclsResponse, DeleteUserRequest,
    DeleteUserResponse, DescribeAclsRequest, DescribeAclsResponse, ListQuotasRequest,
    ListQuotasResponse, ListUsersRequest, ListUsersResponse, Quota, SetPasswordRequest,
    SetPasswordResponse, SetQuotaRequest, SetQuotaResponse, User, WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::status::to_status;

/// Implements `sluice.v1.Security` on a broker.
#[derive(Debug)]
pub(crate) struct SecurityService {
    broker: Arc<Broker>,
}

impl SecurityService {
    /// The service for `broker`.
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        SecurityService { broker }
    }
}

#[tonic::async_trait]
impl Security for SecurityService {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        Ok(Response::new(WhoAmIResponse {
            principal: caller(&request).principal.to_string(),
            auth_enabled: self.broker.security().auth_required(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        self.broker
            .security()
            .add_user(&caller, &request.name, &request.password)
            .await
            .map_err(to_status)?;
        tracing::info!(user = %request.name, by = %caller.principal, "user created");
        Ok(Response::new(CreateUserResponse {}))
    }

    async fn set_password(
        &self,
        request: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        self.broker
            .security()
            .set_password(&caller, &request.name, &request.password)
            .await
            .map_err(to_status)?;
        tracing::info!(user = %request.name, by = %caller.principal, "password changed");
        Ok(Response::new(SetPasswordResponse {}))
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        self.broker
            .security()
            .delete_user(&caller, &request.name)
            .await
            .map_err(to_status)?;
        tracing::info!(user = %request.name, by = %caller.principal, "user deleted");
        Ok(Response::new(DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let users = self
            .broker
            .security()
            .users(&caller(&request))
            .map_err(to_status)?;
        Ok(Response::new(ListUsersResponse {
            users: users_to_proto(users),
        }))
    }

    async fn create_acls(
        &self,
        request: Request<CreateAclsRequest>,
    ) -> Result<Response<CreateAclsResponse>, Status> {
        let caller = caller(&request);
        let bindings = request
            .into_inner()
            .bindings
            .into_iter()
            .map(binding_from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_status)?;
        let count = bindings.len();
        self.broker
            .security()
            .add_acls(&caller, bindings)
            .await
            .map_err(to_status)?;
        tracing::info!(count, by = %caller.principal, "ACL bindings added");
        Ok(Response::new(CreateAclsResponse {}))
    }

    async fn delete_acls(
        &self,
        request: Request<DeleteAclsRequest>,
    ) -> Result<Response<DeleteAclsResponse>, Status> {
        let caller = caller(&request);
        let filter = filter_from_proto(request.into_inner().filter.unwrap_or_default())
            .map_err(to_status)?;
        let removed = self
            .broker
            .security()
            .remove_acls(&caller, &filter)
            .await
            .map_err(to_status)?;
        tracing::info!(count = removed.len(), by = %caller.principal, "ACL bindings removed");
        Ok(Response::new(DeleteAclsResponse {
            removed: removed.into_iter().map(binding_to_proto).collect(),
        }))
    }

    async fn describe_acls(
        &self,
        request: Request<DescribeAclsRequest>,
    ) -> Result<Response<DescribeAclsResponse>, Status> {
        let caller = caller(&request);
        let filter = filter_from_proto(request.into_inner().filter.unwrap_or_default())
            .map_err(to_status)?;
        let bindings = self
            .broker
            .security()
            .acls(&caller, &filter)
            .map_err(to_status)?;
        Ok(Response::new(DescribeAclsResponse {
            bindings: bindings.into_iter().map(binding_to_proto).collect(),
        }))
    }

    async fn set_quota(
        &self,
        request: Request<SetQuotaRequest>,
    ) -> Result<Response<SetQuotaResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let kind = QuotaKind::from_str(&request.quota).map_err(to_status)?;
        self.broker
            .security()
            .set_quota(&caller, &request.user, kind, request.bytes_per_second)
            .await
            .map_err(to_status)?;
        tracing::info!(user = %request.user, quota = %kind, rate = ?request.bytes_per_second, by = %caller.principal, "quota set");
        Ok(Response::new(SetQuotaResponse {}))
    }

    async fn list_quotas(
        &self,
        request: Request<ListQuotasRequest>,
    ) -> Result<Response<ListQuotasResponse>, Status> {
        let quotas = self
            .broker
            .security()
            .quotas(&caller(&request))
            .map_err(to_status)?;
        Ok(Response::new(ListQuotasResponse {
            quotas: quotas_to_proto(quotas),
        }))
    }
}

/// A binding of the wire, checked.
pub fn binding_from_proto(b: AclBinding) -> Result<Binding, BrokerError> {
    Ok(Binding {
        resource_type: b.resource_type.parse()?,
        resource_name: b.resource_name,
        pattern_type: b.pattern_type.parse()?,
        principal: b.principal,
        host: if b.host.is_empty() {
            WILDCARD.to_owned()
        } else {
            b.host
        },
        operation: b.operation.parse()?,
        permission: b.permission.parse()?,
    })
}

/// A binding for the wire.
pub fn binding_to_proto(b: Binding) -> AclBinding {
    AclBinding {
        resource_type: b.resource_type.as_str().to_owned(),
        resource_name: b.resource_name,
        pattern_type: b.pattern_type.as_str().to_owned(),
        principal: b.principal,
        host: b.host,
        operation: b.operation.as_str().to_owned(),
        permission: b.permission.as_str().to_owned(),
    }
}

/// A filter of the wire: empty fields match everything.
pub fn filter_from_proto(f: AclFilter) -> Result<Filter, BrokerError> {
    fn optional<T: FromStr<Err = BrokerError>>(text: &str) -> Result<Option<T>, BrokerError> {
        if text.is_empty() {
            Ok(None)
        } else {
            text.parse().map(Some)
        }
    }
    let text = |s: String| (!s.is_empty()).then_some(s);
    Ok(Filter {
        resource_type: optional(&f.resource_type)?,
        pattern_type: optional(&f.pattern_type)?,
        operation: optional(&f.operation)?,
        permission: optional(&f.permission)?,
        matching: f.matching,
        resource_name: text(f.resource_name),
        principal: text(f.principal),
        host: text(f.host),
    })
}

/// Users and their SCRAM mechanisms for the wire.
pub fn users_to_proto(users: Vec<(String, Vec<ScramMechanism>)>) -> Vec<User> {
    users
        .into_iter()
        .map(|(name, mechanisms)| User {
            name,
            mechanisms: mechanisms.iter().map(|m| m.name().to_owned()).collect(),
        })
        .collect()
}

/// Quotas per user for the wire, by user then kind.
pub fn quotas_to_proto(quotas: BTreeMap<String, BTreeMap<QuotaKind, u64>>) -> Vec<Quota> {
    quotas
        .into_iter()
        .flat_map(|(user, limits)| {
            limits.into_iter().map(move |(kind, rate)| Quota {
                user: user.clone(),
                quota: kind.as_str().to_owned(),
                bytes_per_second: rate,
            })
        })
        .collect()
}
