//! Compiles the vendored Kubernetes `generated.proto` schemas (under `proto/`) into one descriptor set that
//! `src/protobuf.rs` embeds: request bodies in `application/vnd.kubernetes.protobuf` are decoded against it.
//! Only the descriptor is built (no generated Rust), so the schemas stay data.

use std::path::{Path, PathBuf};
use std::process::Command;

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    files.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("k8s.descriptor.pb");
    let protoc = std::env::var("PROTOC").unwrap_or_else(|_| "protoc".into());
    let output = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg("-I")
        .arg(&root)
        .args(&files)
        .output()
        .map_err(|e| format!("running {protoc} (install protobuf-compiler or set PROTOC): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{protoc} failed on the vendored Kubernetes schemas: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}
