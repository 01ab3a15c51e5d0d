//! Compiles `proto/sluice/v1/*.proto` with protox (no `protoc` needed) and generates the
//! prost messages (`bytes` fields as `Bytes`, maps as `BTreeMap`) and tonic clients/servers
//! (which use `crate::codec::SizedCodec`), plus the encoded file descriptor set served by gRPC reflection.

use std::path::PathBuf;

use prost::Message as _;

/// The proto files of package `sluice.v1`, relative to the include root.
const PROTOS: &[&str] = &[
    "sluice/v1/records.proto",
    "sluice/v1/admin.proto",
    "sluice/v1/log.proto",
    "sluice/v1/groups.proto",
    "sluice/v1/share.proto",
    "sluice/v1/security.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let files: Vec<PathBuf> = PROTOS.iter().map(|p| include.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&include])?;
    std::fs::write(
        out_dir.join("sluice_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .bytes(".")
        .btree_map(".")
        .codec_path("crate::codec::SizedCodec")
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)?;
    Ok(())
}
