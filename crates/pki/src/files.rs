//! File I/O for key material. Writes are atomic (temp file, fsync, rename) so a crash never leaves half a key,
//! and private files are created 0600 from the start rather than chmod-ed afterwards.

use crate::{Certificate, Error, KeyPair, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // The umask may have narrowed the mode, and an old temp file may have had another; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        file.write_all(contents).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a secret (private key, kubeconfig with credentials) with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, contents, 0o600)
}

/// Writes a public file (certificate, public key) with mode 0644.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, contents, 0o644)
}

pub fn read_cert(path: &Path) -> Result<Certificate> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Certificate::from_pem(&text).map_err(|e| e.in_file(path))
}

pub fn read_key(path: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    KeyPair::from_pem(&text).map_err(|e| e.in_file(path))
}

/// The `<dir>/<base>.crt` and `<dir>/<base>.key` paths kubeadm uses.
pub fn pair_paths(dir: &Path, base: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{base}.crt")), dir.join(format!("{base}.key")))
}

/// Writes `<dir>/<base>.key` (0600) then `<dir>/<base>.crt` (0644).
pub fn write_cert_and_key(dir: &Path, base: &str, cert: &Certificate, key: &KeyPair) -> Result<()> {
    let (crt, key_path) = pair_paths(dir, base);
    write_private(&key_path, key.to_pem()?.as_bytes())?;
    write_public(&crt, cert.pem().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    #[test]
    fn private_files_are_written_0600_and_public_files_0644() {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("a/secret"), b"s").unwrap();
        write_public(&dir.path().join("a/public"), b"p").unwrap();
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("a/secret"), 0o600);
        assert_eq!(mode("a/public"), 0o644);
        assert_eq!(
            std::fs::read_dir(dir.path().join("a")).unwrap().count(),
            2,
            "no temp files left"
        );
    }

    #[test]
    fn reading_a_bad_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.key");
        std::fs::write(&path, "not a key").unwrap();
        let err = read_key(&path).unwrap_err().to_string();
        assert!(err.contains("broken.key"), "{err}");
        let missing = read_cert(&dir.path().join("missing.crt"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.crt"), "{missing}");
    }

    #[test]
    fn a_key_written_is_the_key_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        write_private(&dir.path().join("k.key"), key.to_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(
            read_key(&dir.path().join("k.key")).unwrap().public_key_der(),
            key.public_key_der()
        );
    }
}
