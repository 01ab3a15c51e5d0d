//! Where `sluice user`, `sluice acl` and `sluice quota` make their changes: a running
//! server (over gRPC, as the caller's user) or, with `--data-dir`, a data directory with no
//! server running (to create the first users and ACLs before the first start).

use std::path::PathBuf;

use anyhow::Context as _;
use sluice_broker::security::{Caller, OfflineSecurity, QuotaKind};
use sluice_client::{Error, Transport};
use sluice_grpc::security_messages::{
    binding_from_proto, binding_to_proto, filter_from_proto, quotas_to_proto, users_to_proto,
};
use sluice_proto::v1::security_client::SecurityClient;
use sluice_proto::v1::{self as pb};

use super::ConnectArgs;

/// The flags choosing where changes go.
#[derive(Debug, clap::Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Change this data directory instead of a running server (which must not be running
    /// on it)
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

/// A running server or a data directory.
// Made once per command: the size difference of the two costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    /// Over gRPC, as the caller.
    Server(SecurityClient<Transport>),
    /// In place, holding the directory's lock.
    DataDir(OfflineSecurity),
}

impl TargetArgs {
    /// Opens the data directory, or connects to the server.
    pub(crate) async fn open(&self) -> anyhow::Result<Target> {
        match &self.data_dir {
            Some(dir) => Ok(Target::DataDir(OfflineSecurity::open(dir).with_context(
                || format!("cannot open the security state of {}", dir.display()),
            )?)),
            None => Ok(Target::Server(
                self.connect.connect().await?.security_service(),
            )),
        }
    }
}

impl Target {
    /// Creates a user.
    pub(crate) async fn add_user(&mut self, name: &str, password: &str) -> anyhow::Result<()> {
        match self {
            Target::Server(s) => {
                s.create_user(pb::CreateUserRequest {
                    name: name.to_owned(),
                    password: password.to_owned(),
                })
                .await
                .map_err(Error::from)?;
            }
            Target::DataDir(d) => {
                d.security()
                    .add_user(&Caller::internal(), name, password)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sets a user's password.
    pub(crate) async fn set_password(&mut self, name: &str, password: &str) -> anyhow::Result<()> {
        match self {
            Target::Server(s) => {
                s.set_password(pb::SetPasswordRequest {
                    name: name.to_owned(),
                    password: password.to_owned(),
                })
                .await
                .map_err(Error::from)?;
            }
            Target::DataDir(d) => {
                d.security()
                    .set_password(&Caller::internal(), name, password)
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes a user.
    pub(crate) async fn delete_user(&mut self, name: &str) -> anyhow::Result<()> {
        match self {
            Target::Server(s) => {
                s.delete_user(pb::DeleteUserRequest {
                    name: name.to_owned(),
                })
                .await
                .map_err(Error::from)?;
            }
            Target::DataDir(d) => d.security().delete_user(&Caller::internal(), name).await?,
        }
        Ok(())
    }

    /// The users, sorted by name.
    pub(crate) async fn users(&mut self) -> anyhow::Result<Vec<pb::User>> {
        Ok(match self {
            Target::Server(s) => {
                s.list_users(pb::ListUsersRequest {})
                    .await
                    .map_err(Error::from)?
                    .into_inner()
                    .users
            }
            Target::DataDir(d) => users_to_proto(d.security().users(&Caller::internal())?),
        })
    }

    /// Adds ACL bindings.
    pub(crate) async fn add_acls(&mut self, bindings: Vec<pb::AclBinding>) -> anyhow::Result<()> {
        match self {
            Target::Server(s) => {
                s.create_acls(pb::CreateAclsRequest { bindings })
                    .await
                    .map_err(Error::from)?;
            }
            Target::DataDir(d) => {
                let bindings = bindings
                    .into_iter()
                    .map(binding_from_proto)
                    .collect::<Result<Vec<_>, _>>()?;
                d.security().add_acls(&Caller::internal(), bindings).await?;
            }
        }
        Ok(())
    }

    /// Removes the bindings `filter` matches, giving them back.
    pub(crate) async fn remove_acls(
        &mut self,
        filter: pb::AclFilter,
    ) -> anyhow::Result<Vec<pb::AclBinding>> {
        Ok(match self {
            Target::Server(s) => {
                s.delete_acls(pb::DeleteAclsRequest {
                    filter: Some(filter),
                })
                .await
                .map_err(Error::from)?
                .into_inner()
                .removed
            }
            Target::DataDir(d) => d
                .security()
                .remove_acls(&Caller::internal(), &filter_from_proto(filter)?)
                .await?
                .into_iter()
                .map(binding_to_proto)
                .collect(),
        })
    }

    /// The bindings `filter` matches.
    pub(crate) async fn acls(
        &mut self,
        filter: pb::AclFilter,
    ) -> anyhow::Result<Vec<pb::AclBinding>> {
        Ok(match self {
            Target::Server(s) => {
                s.describe_acls(pb::DescribeAclsRequest {
                    filter: Some(filter),
                })
                .await
                .map_err(Error::from)?
                .into_inner()
                .bindings
            }
            Target::DataDir(d) => d
                .security()
                .acls(&Caller::internal(), &filter_from_proto(filter)?)?
                .into_iter()
                .map(binding_to_proto)
                .collect(),
        })
    }

    /// Sets (`None`: removes) a user's byte-rate quota.
    pub(crate) async fn set_quota(
        &mut self,
        user: &str,
        kind: QuotaKind,
        rate: Option<u64>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Server(s) => {
                s.set_quota(pb::SetQuotaRequest {
                    user: user.to_owned(),
                    quota: kind.as_str().to_owned(),
                    bytes_per_second: rate,
                })
                .await
                .map_err(Error::from)?;
            }
            Target::DataDir(d) => {
                d.security()
                    .set_quota(&Caller::internal(), user, kind, rate)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every quota, by user then kind.
    pub(crate) async fn quotas(&mut self) -> anyhow::Result<Vec<pb::Quota>> {
        Ok(match self {
            Target::Server(s) => {
                s.list_quotas(pb::ListQuotasRequest {})
                    .await
                    .map_err(Error::from)?
                    .into_inner()
                    .quotas
            }
            Target::DataDir(d) => quotas_to_proto(d.security().quotas(&Caller::internal())?),
        })
    }
}

/// Reads a password from standard input: everything up to the first line end.
pub(crate) fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    Ok(password)
}
