//! `intercept-tls`: the proxy ends the client's TLS itself, with a
//! certificate of its own for the name the client asked for, and opens its
//! own TLS to the real server. Between the two it reads everything.
//!
//! Where the certificate comes from is the lesson:
//! - **self-signed**, made on the spot: any client that checks certificates
//!   refuses it; only `--insecure` accepts it.
//! - **minted per name by the attacker's own CA** (`mitm-proxy ca`): refused
//!   too, unless the client was told to trust that CA (`--ca
//!   attacker-ca.pem`), the mistake corporate "TLS inspection" asks users
//!   to make. A pinned server key (`--pin`) still refuses it.
//! - **a given certificate and key**: whatever the attacker got hold of.
//!
//! `--keylog` writes both legs' secrets in the NSS key log format, so
//! Wireshark (tshark) can decrypt a capture of either leg.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::KeyLog;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

/// Why a certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{0} exists: refusing to overwrite a CA (use --force)")]
    Exists(PathBuf),
    /// A PEM file holds no certificate or key that can be used.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rcgen could not make or sign a certificate.
    #[error("cannot make a certificate: {0}")]
    Make(#[from] rcgen::Error),
    /// rustls refused the key or the configuration.
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
}

/// Where forged certificates come from.
enum Source {
    /// A new self-signed certificate per name.
    SelfSigned,
    /// Minted per name by the attacker's CA.
    Ca(Box<Issuer<'static, KeyPair>>),
    /// One given certificate chain and key, for every name.
    Given(Arc<CertifiedKey>),
}

/// Forged certificates, one per server name, made once and kept.
pub struct Forger {
    source: Source,
    provider: Arc<CryptoProvider>,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// What the verdicts call it.
    pub kind: &'static str,
}

/// Most names a forger keeps certificates for; a client asking for new
/// names forever cannot grow the cache without bound.
const MAX_CACHED_NAMES: usize = 1024;

impl Forger {
    /// Self-signed certificates.
    pub fn self_signed() -> Forger {
        Forger::with(Source::SelfSigned, "a self-signed certificate")
    }

    /// Certificates minted by the CA in `dir` (`ca.pem`, `ca.key`).
    pub fn from_ca_dir(dir: &Path) -> Result<Forger, CertError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let cert = read(&cert_path)?;
        let key = read(&key_path)?;
        let key = KeyPair::from_pem(&key).map_err(|e| CertError::Pem {
            path: key_path,
            what: format!("not a key rcgen can sign with ({e})"),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|e| CertError::Pem {
            path: cert_path,
            what: format!("not a CA certificate ({e})"),
        })?;
        Ok(Forger::with(
            Source::Ca(Box::new(issuer)),
            "a certificate from the attacker's CA",
        ))
    }

    /// One given certificate (chain) and key for every name.
    pub fn given(cert: &Path, key: &Path) -> Result<Forger, CertError> {
        let provider = provider();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| CertError::Pem {
                path: cert.to_path_buf(),
                what: format!("no certificate ({e})"),
            })?;
        if chain.is_empty() {
            return Err(CertError::Pem {
                path: cert.to_path_buf(),
                what: "no certificate in it".into(),
            });
        }
        let der = PrivateKeyDer::from_pem_file(key).map_err(|e| CertError::Pem {
            path: key.to_path_buf(),
            what: format!("no private key ({e})"),
        })?;
        let signer = provider.key_provider.load_private_key(der)?;
        let ck = Arc::new(CertifiedKey::new(chain, signer));
        Ok(Forger::with(Source::Given(ck), "the given certificate"))
    }

    fn with(source: Source, kind: &'static str) -> Forger {
        Forger {
            source,
            provider: provider(),
            cache: Mutex::new(HashMap::new()),
            kind,
        }
    }

    /// The certificate the proxy shows a client that asked for `name`.
    pub fn for_name(&self, name: &str) -> Result<Arc<CertifiedKey>, CertError> {
        if let Source::Given(ck) = &self.source {
            return Ok(ck.clone());
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ck) = cache.get(name) {
            return Ok(ck.clone());
        }
        let key = KeyPair::generate()?;
        let params = leaf_params(name)?;
        let cert = match &self.source {
            Source::Ca(issuer) => params.signed_by(&key, issuer.as_ref())?,
            _ => params.self_signed(&key)?,
        };
        let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| CertError::Pem {
            path: PathBuf::from(name),
            what: e.to_string(),
        })?;
        let signer = self.provider.key_provider.load_private_key(der)?;
        let ck = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer));
        if cache.len() >= MAX_CACHED_NAMES {
            cache.clear();
        }
        cache.insert(name.to_string(), ck.clone());
        Ok(ck)
    }

    /// A TLS server configuration presenting the forged certificate for
    /// `name`.
    pub fn server_config(
        &self,
        name: &str,
        keylog: Option<Arc<dyn KeyLog>>,
    ) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let ck = self.for_name(name)?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(ck)));
        if let Some(k) = keylog {
            config.key_log = k;
        }
        Ok(Arc::new(config))
    }
}

/// The workspace's one crypto provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A server certificate for `name`, valid from yesterday for 30 days.
fn leaf_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(vec![name.to_string()])?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(30);
    Ok(p)
}

/// Always the same certificate, whatever the client asked for.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// `mitm-proxy ca`: the attacker's CA, `ca.pem` and `ca.key` (mode 0600)
/// in `dir`. Existing files are kept unless `force`.
pub fn write_ca(dir: &Path, force: bool) -> Result<Vec<PathBuf>, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        "mitm-proxy attacker CA (for teaching only)",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    let cert = params.self_signed(&key)?;
    let paths = [dir.join("ca.key"), dir.join("ca.pem")];
    if !force && let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(CertError::Exists(p.clone()));
    }
    write_file(&paths[0], &key.serialize_pem(), true, force)?;
    write_file(&paths[1], &cert.pem(), false, force)?;
    Ok(paths.to_vec())
}

fn write_file(path: &Path, text: &str, secret: bool, force: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    #[cfg(unix)]
    if secret {
        // A file replaced with --force keeps its old mode otherwise.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

/// TLS secrets appended to a file in the NSS key log format
/// (`CLIENT_RANDOM ...`, `CLIENT_HANDSHAKE_TRAFFIC_SECRET ...`), one line
/// per secret, for both legs. Whoever reads the file can decrypt the
/// captured traffic: that is what it is for, in a lab.
#[derive(Debug)]
pub struct KeyLogFile(Mutex<std::fs::File>);

impl KeyLogFile {
    /// Opens (or creates, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> Result<KeyLogFile, CertError> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let f = opts.open(path).map_err(|source| CertError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(KeyLogFile(Mutex::new(f)))
    }
}

impl KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A lost line costs one decryption later, never the connection.
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_written_once_and_mints_a_certificate_per_name() {
        let dir = tempfile_dir();
        let paths = write_ca(&dir, false).unwrap();
        assert!(matches!(write_ca(&dir, false), Err(CertError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths[0]).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let forger = Forger::from_ca_dir(&dir).unwrap();
        let a = forger.for_name("localhost").unwrap();
        let again = forger.for_name("localhost").unwrap();
        assert!(Arc::ptr_eq(&a, &again), "cached per name");
        let b = forger.for_name("example.org").unwrap();
        assert_ne!(a.cert[0], b.cert[0]);
        // Signed by the CA: the leaf names the CA as its issuer.
        let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
        let issuer_cn = "mitm-proxy attacker CA";
        assert!(contains(&a.cert[0], issuer_cn.as_bytes()));
        assert!(contains(&ca_der, issuer_cn.as_bytes()));
        assert!(forger.server_config("localhost", None).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn self_signed_and_bad_files_are_told_apart() {
        let f = Forger::self_signed();
        let c = f.for_name("localhost").unwrap();
        assert!(!contains(&c.cert[0], b"attacker CA"));
        let dir = tempfile_dir();
        std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
        std::fs::write(dir.join("ca.key"), "not a key").unwrap();
        assert!(matches!(
            Forger::from_ca_dir(&dir),
            Err(CertError::Pem { .. })
        ));
        assert!(matches!(
            Forger::from_ca_dir(&dir.join("missing")),
            Err(CertError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mitm-ca-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
