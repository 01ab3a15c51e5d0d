//! Health against a real server: gRPC health and `/readyz` report NOT_SERVING while the
//! server recovers its logs, and a failed partition by name while the other partitions go
//! on serving, and NOT_SERVING again once shutdown begins; `/healthz` only says the process
//! is up.
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{Server, create_topic, fetch_all, metric, produce_values};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The overall status and that of the Log service.
async fn statuses(server: &Server) -> Result<(ServingStatus, ServingStatus)> {
    let mut health = HealthClient::new(server.channel().await?);
    let mut check = async |service: &str| -> Result<ServingStatus> {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        Ok(response.status())
    };
    Ok((check("").await?, check("sluice.v1.Log").await?))
}

/// Polls until the overall status is `wanted` (the server checks faults every second).
async fn wait_for(server: &Server, wanted: ServingStatus) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (overall, log) = statuses(server).await?;
        if overall == wanted && log == wanted {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "health stays {overall:?}/{log:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_makes_the_server_not_ready_and_names_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "h", 2, &[]).await?;
    let mut log = server.log().await?;
    produce_values(&mut log, "h", 0, ["kept".to_owned()]).await?;
    wait_for(&server, ServingStatus::Serving).await?;
    let (code, body) = server.metrics_get("/readyz")?;
    ensure!(code == 200, "{code} {body}");
    server.stop()?;

    // A file where partition 1's directory should be: its log cannot open.
    let partition_dir = dir.path().join("topics/h/1");
    std::fs::remove_dir_all(&partition_dir)?;
    std::fs::write(&partition_dir, b"not a directory")?;
    let server = Server::start(dir.path(), &[])?;
    wait_for(&server, ServingStatus::NotServing).await?;
    let (code, body) = server.metrics_get("/readyz")?;
    ensure!(code == 503, "{code} {body}");
    ensure!(body.contains("partition h/1 failed"), "{body}");
    ensure!(!body.contains("h/0"), "{body}");
    let (code, body) = server.metrics_get("/healthz")?;
    ensure!(code == 200, "{code} {body}");
    let text = server.scrape()?;
    let failed = |partition| {
        metric(
            &text,
            "sluice_partition_failed",
            &[("topic", "h"), ("partition", partition)],
        )
        .with_context(|| format!("no sluice_partition_failed for h/{partition}"))
    };
    ensure!(failed("1")? == 1.0 && failed("0")? == 0.0, "{text}");

    // The healthy partition still serves.
    let mut log = server.log().await?;
    produce_values(&mut log, "h", 0, ["more".to_owned()]).await?;
    ensure!(fetch_all(&mut log, "h", 0, 0).await?.len() == 2);
    server.stop()?;

    // Repaired, the server is ready again.
    std::fs::remove_file(&partition_dir)?;
    let server = Server::start(dir.path(), &[])?;
    wait_for(&server, ServingStatus::Serving).await?;
    let (code, body) = server.metrics_get("/readyz")?;
    ensure!(code == 200 && body.starts_with("ready"), "{code} {body}");
    Ok(())
}

/// The overall gRPC health statuses a client polling `url` sees until SERVING (connection
/// failures before the server listens, or while it changes over, are skipped).
async fn grpc_statuses_until_serving(url: String) -> Result<Vec<ServingStatus>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut client = None;
    while Instant::now() < deadline {
        if client.is_none() {
            client = tonic::transport::Channel::from_shared(url.clone())?
                .connect()
                .await
                .ok()
                .map(HealthClient::new);
        }
        if let Some(health) = client.as_mut() {
            let checked = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            match checked {
                Ok(response) => {
                    let status = response.into_inner().status();
                    seen.push(status);
                    if status == ServingStatus::Serving {
                        return Ok(seen);
                    }
                }
                Err(_) => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(seen)
}

/// Two distinct loopback addresses nothing listens on right now (both are bound before
/// either is released, so they cannot be the same port).
fn free_addrs() -> Result<(String, String)> {
    let first = std::net::TcpListener::bind("127.0.0.1:0")?;
    let second = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((
        first.local_addr()?.to_string(),
        second.local_addr()?.to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_not_ready_while_it_recovers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "big", 1, &[]).await?;
    let mut log = server.log().await?;
    // Some 40 MB in the active segment, which a crash makes recovery scan whole.
    let value = "v".repeat(1000);
    for _ in 0..40 {
        produce_values(&mut log, "big", 0, std::iter::repeat_n(value.clone(), 1000)).await?;
    }
    server.kill()?;

    // Restart on known ports and watch gRPC health and /readyz from the first moment.
    let (metrics, listen) = free_addrs()?;
    let grpc_seen = tokio::spawn(grpc_statuses_until_serving(format!("http://{listen}")));
    let seen = Arc::new(Mutex::new(Vec::<(u16, String)>::new()));
    let watcher = {
        let (metrics, seen) = (metrics.clone(), Arc::clone(&seen));
        let probe = Server::attach_metrics(&metrics);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(answer) = probe.metrics_get("/readyz") {
                    let ready = answer.0 == 200;
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(answer);
                    if ready {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let data_dir = dir.path().to_owned();
    let server = tokio::task::spawn_blocking(move || {
        Server::start_on(&data_dir, &listen, &["--metrics-listen", &metrics])
    })
    .await??;
    let _ = watcher.join();
    let grpc_seen = grpc_seen.await??;
    ensure!(
        grpc_seen.first() == Some(&ServingStatus::NotServing)
            && grpc_seen.last() == Some(&ServingStatus::Serving),
        "{grpc_seen:?}"
    );
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ensure!(
        seen.first()
            .is_some_and(|(code, body)| *code == 503 && body.contains("recovering")),
        "{seen:?}"
    );
    ensure!(
        seen.last().is_some_and(|(code, _)| *code == 200),
        "{seen:?}"
    );
    wait_for(&server, ServingStatus::Serving).await?;
    ensure!(
        fetch_all(&mut server.log().await?, "big", 0, 39_990)
            .await?
            .len()
            == 10
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_when_shutdown_begins() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut health = HealthClient::new(server.channel().await?);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let mut next = async || -> Result<ServingStatus> {
        let message = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .context("no health update within 30 s")??
            .context("the watch ended")?;
        Ok(message.status())
    };
    ensure!(next().await? == ServingStatus::Serving);
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    let status = next().await?;
    ensure!(status == ServingStatus::NotServing, "{status:?}");
    drop(watch);
    ensure!(
        stopped.await??.success(),
        "the server exited with a failure"
    );
    Ok(())
}
