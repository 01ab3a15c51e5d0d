//! Users and ACLs for end-to-end tests, made with the `sluice` CLI as an operator would:
//! in the data directory before the server starts, or on the running server as a user.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

/// What a finished `sluice` run printed.
#[derive(Debug)]
pub struct Run {
    /// Whether it exited with success.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `sluice ARGS` with `env` set and `stdin` as standard input.
pub fn sluice(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Result<Run> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_USER")
        .env_remove("SLUICE_PASSWORD")
        .env("SLUICE_LOG", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn sluice")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    Ok(Run {
        ok: output.status.success(),
        stdout: String::from_utf8(output.stdout)?,
        stderr: String::from_utf8(output.stderr)?,
    })
}

/// Runs `sluice ARGS`, which must succeed; gives its standard output.
pub fn sluice_ok(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Result<String> {
    let run = sluice(args, env, stdin)?;
    ensure!(run.ok, "sluice {args:?} failed: {}", run.stderr);
    Ok(run.stdout)
}

/// Creates user `name` with `password` in `data_dir` (no server running on it).
pub fn add_user(data_dir: &Path, name: &str, password: &str) -> Result<()> {
    let dir = data_dir.to_str().context("data dir path")?;
    sluice_ok(
        &["user", "add", name, "--data-dir", dir, "--password-stdin"],
        &[],
        &format!("{password}\n"),
    )?;
    Ok(())
}

/// Adds ACL bindings in `data_dir` (no server running on it): `sluice acl add ARGS`.
pub fn add_acl(data_dir: &Path, args: &[&str]) -> Result<()> {
    let dir = data_dir.to_str().context("data dir path")?;
    let mut all = vec!["acl", "add", "--data-dir", dir];
    all.extend_from_slice(args);
    sluice_ok(&all, &[], "")?;
    Ok(())
}

/// Sets `user`'s quotas on the server at `url` as the superuser `admin` (user, password):
/// `sluice quota set USER QUOTA_ARGS`, for example `&["--produce", "100000"]`.
pub fn set_quota(url: &str, admin: (&str, &str), user: &str, quota_args: &[&str]) -> Result<()> {
    let mut all = vec!["quota", "set", user];
    all.extend_from_slice(quota_args);
    all.extend_from_slice(&["--server", url]);
    sluice_ok(&all, &as_user(admin.0, admin.1), "")?;
    Ok(())
}

/// The environment that makes the `sluice` CLI authenticate as `user` with `password`.
pub fn as_user<'a>(user: &'a str, password: &'a str) -> [(&'a str, &'a str); 2] {
    [("SLUICE_USER", user), ("SLUICE_PASSWORD", password)]
}

/// An `Authorization: Basic ...` header line for `user` with `password`.
pub fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}")
}

/// The server's `/metrics` page, read as `user` with `password`; fails unless it answers
/// 200.
pub fn scrape_as(server: &super::Server, user: &str, password: &str) -> Result<String> {
    let (status, body) = server.metrics_get_with("/metrics", &[&basic_header(user, password)])?;
    ensure!(
        status == 200,
        "/metrics as {user} answered {status}: {body}"
    );
    Ok(body)
}
