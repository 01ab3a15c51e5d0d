//! Integration tests of the broker against real partition logs in temporary directories.

mod alter_config;
mod background;
mod classic_groups;
mod common;
mod compression;
mod errors;
mod faults;
mod fetch_many;
mod fetch_range;
mod groups;
mod idempotence;
mod produce_fetch;
mod queues;
mod routing;
mod share_groups;
mod share_reclaim;
mod topics;
