//! `chat-tls certs`: a lab certificate authority and a server certificate
//! signed by it.
//!
//! The CA is what clients trust (`--ca ca.pem`); the server presents
//! `server.pem` and proves it holds `server.key`. Whoever holds `ca.key` can
//! sign a certificate for any name that these clients will accept: keep it
//! away from the server, and never install it in a browser or system store.

use protocol::outln;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::verify::{pin_text, spki_sha256};

/// Flags of `chat-tls certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Folder for ca.pem, ca.key, server.pem and server.key.
    #[arg(long)]
    pub out: PathBuf,
    /// The XMPP domain the server certificate is for (localhost, 127.0.0.1
    /// and ::1 are always added).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Replace existing keys and certificates.
    #[arg(long)]
    pub force: bool,
    /// Days the server certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// For the labs: make a server certificate that expired yesterday.
    #[arg(long)]
    pub expired: bool,
    /// Keep the CA already in --out and issue a new server key and
    /// certificate under it: key rotation. Clients that trust the CA go on;
    /// clients that pinned the old key (--pin) stop, as they should.
    #[arg(long, conflicts_with = "force")]
    pub renew: bool,
}

const FILES: [&str; 4] = ["ca.pem", "ca.key", "server.pem", "server.key"];

/// Writes `name` in `dir`; key files are readable by their owner only.
fn write_file(
    dir: &Path,
    name: &str,
    contents: &str,
    secret: bool,
    force: bool,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        // Never replace a key by accident: a new CA key silently breaks
        // every client that trusts the old one.
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        // An existing file (--force) keeps its old mode otherwise.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

/// SHA-256 of a key's SubjectPublicKeyInfo.
fn spki_hash_of(key: &KeyPair) -> [u8; 32] {
    use rcgen::PublicKeyData;
    use sha2::Digest;
    sha2::Sha256::digest(key.subject_public_key_info()).into()
}

/// Makes the CA and the server certificate; prints what it wrote and the
/// server key's pin.
pub fn run(args: &CertsArgs) -> anyhow::Result<u8> {
    let domain = args.domain.trim().to_lowercase();
    if domain.is_empty() || domain.contains(['/', '@', ' ']) {
        anyhow::bail!("--domain '{}' is not a domain name", args.domain);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    if !args.force && !args.renew {
        for f in FILES {
            let p = args.out.join(f);
            if p.exists() {
                anyhow::bail!(
                    "{} exists: refusing to overwrite keys and certificates (use --force)",
                    p.display()
                );
            }
        }
    }
    let now = OffsetDateTime::now_utc();
    let out = &args.out;
    // Rotation: the CA stays, only the server's key and certificate change.
    let renewed = if args.renew {
        let read = |f: &str| {
            std::fs::read_to_string(out.join(f)).with_context(|| {
                format!("--renew needs the CA in {}: cannot read {f}", out.display())
            })
        };
        let ca_key = KeyPair::from_pem(&read("ca.key")?).with_context(|| {
            format!("{} is not a PEM private key", out.join("ca.key").display())
        })?;
        Some(
            Issuer::from_ca_cert_pem(&read("ca.pem")?, ca_key).with_context(|| {
                format!("{} is not a CA certificate", out.join("ca.pem").display())
            })?,
        )
    } else {
        None
    };

    let ca_key = KeyPair::generate().context("cannot generate the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    // A name of its own per CA (a random tag), so two labs' CAs are told
    // apart by name, as real CAs are.
    let tag = pin_text(&spki_hash_of(&ca_key))[7..15].to_string();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("Twin chat lab CA {tag} (for teaching only)"),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::days(1);
    ca.not_after = now + Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate().context("cannot generate the server key")?;
    let mut names = vec![domain.clone()];
    if domain != "localhost" {
        names.push("localhost".into());
    }
    let mut server = CertificateParams::new(names.clone())?;
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        if !server.subject_alt_names.contains(&SanType::IpAddress(ip)) {
            server.subject_alt_names.push(SanType::IpAddress(ip));
        }
    }
    server
        .distinguished_name
        .push(DnType::CommonName, domain.clone());
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if args.expired {
        server.not_before = now - Duration::days(30);
        server.not_after = now - Duration::days(1);
    } else {
        server.not_before = now - Duration::days(1);
        server.not_after = now + Duration::days(i64::from(args.days.max(1)));
    }
    let server_cert = match &renewed {
        Some(issuer) => server.signed_by(&server_key, issuer)?,
        None => server.signed_by(&server_key, &Issuer::from_params(&ca, &ca_key))?,
    };

    let replace = args.force || args.renew;
    if renewed.is_none() {
        write_file(out, "ca.key", &ca_key.serialize_pem(), true, args.force)?;
        write_file(out, "ca.pem", &ca_cert.pem(), false, args.force)?;
    }
    write_file(
        out,
        "server.key",
        &server_key.serialize_pem(),
        true,
        replace,
    )?;
    write_file(out, "server.pem", &server_cert.pem(), false, replace)?;

    let der: &CertificateDer<'_> = server_cert.der();
    let pin = spki_sha256(der)?;
    if renewed.is_some() {
        outln!(
            "wrote {}/{{server.pem, server.key}}: a new server key under the same CA",
            out.display()
        );
    } else {
        outln!(
            "wrote {}/{{ca.pem, ca.key, server.pem, server.key}}",
            out.display()
        );
    }
    outln!(
        "server certificate for {} and 127.0.0.1, ::1; {}",
        names.join(", "),
        if args.expired {
            "EXPIRED on purpose (--expired)".to_string()
        } else {
            format!("valid {} days", args.days.max(1))
        }
    );
    outln!(
        "clients trust it with: --ca {}",
        out.join("ca.pem").display()
    );
    outln!("server key pin:        --pin {}", pin_text(&pin));
    outln!("keep ca.key secret: whoever has it can impersonate any server to these clients");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> CertsArgs {
        CertsArgs {
            out: dir.to_path_buf(),
            domain: "localhost".into(),
            force: false,
            days: 30,
            expired: false,
            renew: false,
        }
    }

    /// `--renew`: the same CA, a new server key (so a new pin), and the
    /// new certificate verifies under the old CA.
    #[test]
    fn renew_keeps_the_ca_and_changes_the_server_key() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let d = tempfile::tempdir().unwrap();
        let mut a = args(d.path());
        a.renew = true;
        let err = run(&a).unwrap_err().to_string();
        assert!(err.contains("--renew needs the CA"), "{err}");
        assert_eq!(run(&args(d.path())).unwrap(), 0);
        let read = |f: &str| std::fs::read(d.path().join(f)).unwrap();
        let (ca, ca_key, key) = (read("ca.pem"), read("ca.key"), read("server.key"));
        assert_eq!(run(&a).unwrap(), 0);
        assert_eq!(read("ca.pem"), ca);
        assert_eq!(read("ca.key"), ca_key);
        assert_ne!(read("server.key"), key);
        // The new certificate chains to the old CA.
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let leaf = CertificateDer::from_pem_slice(&read("server.pem")).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .unwrap();
    }

    #[test]
    fn writes_four_files_keys_private_and_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(run(&args(d.path())).unwrap(), 0);
        for f in FILES {
            assert!(d.path().join(f).exists(), "{f}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca.key", "server.key"] {
                let mode = std::fs::metadata(d.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        let before = std::fs::read(d.path().join("ca.key")).unwrap();
        let err = run(&args(d.path())).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(d.path().join("ca.key")).unwrap(), before);
        let mut a = args(d.path());
        a.force = true;
        assert_eq!(run(&a).unwrap(), 0);
        assert_ne!(std::fs::read(d.path().join("ca.key")).unwrap(), before);
    }

    #[test]
    fn the_server_certificate_names_the_domain_localhost_and_loopback_ips() {
        let d = tempfile::tempdir().unwrap();
        let mut a = args(d.path());
        a.domain = "chat.lab".into();
        run(&a).unwrap();
        let pem = std::fs::read(d.path().join("server.pem")).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = p.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        use x509_parser::extensions::GeneralName;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for n in &san.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                _ => {}
            }
        }
        assert_eq!(dns, ["chat.lab", "localhost"]);
        let v6_loopback = std::net::Ipv6Addr::LOCALHOST.octets().to_vec();
        assert_eq!(ips, [vec![127, 0, 0, 1], v6_loopback]);
    }
}
