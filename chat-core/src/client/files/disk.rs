//! Reading a file to send: its SHA-256 and size first, then whole blocks.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::client::error::ClientError;

/// A file about to be sent or shared.
pub(super) struct Outgoing {
    /// The name it goes under: the one offered, or its own.
    pub(super) name: String,
    pub(super) size: u64,
    /// SHA-256, raw bytes.
    pub(super) sha: Vec<u8>,
}

/// Checks `path` is a file (within `max` bytes, when given: refused before
/// it is read) and reads its size and SHA-256.
pub(super) async fn outgoing(
    path: &Path,
    offered_name: Option<String>,
    max: Option<u64>,
) -> Result<Outgoing, ClientError> {
    let cant = |source: std::io::Error| ClientError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let meta = tokio::fs::metadata(path).await.map_err(cant)?;
    if !meta.is_file() {
        return Err(ClientError::NotAFile(path.to_path_buf()));
    }
    if let Some(max) = max.filter(|m| meta.len() > *m) {
        return Err(ClientError::FileTooLarge {
            path: PathBuf::from(path),
            size: meta.len(),
            max,
        });
    }
    let (sha, size) = hash_file(path).await.map_err(cant)?;
    let name = offered_name.unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into())
    });
    Ok(Outgoing { name, size, sha })
}

/// Bytes as lowercase hex (how a SHA-256 is shown).
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 and size of a file, read in chunks.
pub(super) async fn hash_file(path: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().to_vec(), n))
}

/// Reads until `buf` is full or the file ends.
pub(super) async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}
