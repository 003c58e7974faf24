//! TLS as receivers run it: the certificates trusted (the system's store plus an
//! administrator's bundle of extra CAs, `pg_callback.ca_bundle`), and why a receiver's
//! certificate was refused, in words an operator can act on. Hostname and expiry are always
//! checked: nothing here can turn verification off.
//!
//! In: the bundle's path. Out: the roots the HTTP pool trusts, and the problems found reading
//! them (the worker logs those).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use ureq::tls::{parse_pem, Certificate, PemItem};

/// The CA certificates a pool trusts.
pub type Roots = Vec<Certificate<'static>>;

/// Where trust comes from, as much as tells whether the pool must be made again: a new bundle
/// path, or the same file changed since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// The extra CAs' PEM file and when it was last modified.
    pub bundle: Option<(PathBuf, Option<SystemTime>)>,
}

impl Trust {
    /// Trust in the system's store, and in the CAs of `bundle` when it is set (non-empty).
    pub fn with_bundle(bundle: &str) -> Trust {
        let bundle = (!bundle.trim().is_empty()).then(|| {
            let path = PathBuf::from(bundle.trim());
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            (path, modified)
        });
        Trust { bundle }
    }
}

/// The certificates of a PEM bundle; an error saying what is wrong with it when it cannot be
/// read or holds none.
pub fn bundle_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certificates = Vec::new();
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certificates.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{} is not a valid PEM bundle: {e}", path.display())),
        }
    }
    if certificates.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certificates)
}

/// The roots to trust: the system's store and the bundle's CAs, with the problems met (a
/// bundle that cannot be used is left out, and said so).
pub fn roots(trust: &Trust) -> (Roots, Vec<String>) {
    let mut problems = Vec::new();
    let system = rustls_native_certs::load_native_certs();
    problems.extend(system.errors.iter().map(|e| format!("the system's trust store: {e}")));
    let mut roots: Vec<Certificate<'static>> = system
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some((path, _)) = &trust.bundle {
        match bundle_certificates(path) {
            Ok(extra) => roots.extend(extra),
            Err(e) => problems.push(format!("pg_callback.ca_bundle: {e}; only the system's CAs are trusted")),
        }
    }
    (roots, problems)
}

/// A client certificate and its key, as rustls presents them (Debug elides the key).
#[derive(Debug)]
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A client certificate (mutual TLS) from PEM text: the certificate with any intermediates,
/// and its private key (PKCS#8, PKCS#1 or SEC1). An error saying what is wrong when either
/// cannot be read, or the key is not the certificate's.
pub fn client_certificate(certificate: &str, private_key: &str) -> Result<Arc<ClientCert>, String> {
    let mut chain = Vec::new();
    for item in parse_pem(certificate.as_bytes()) {
        match item {
            Ok(PemItem::Certificate(c)) => chain.push(c),
            Ok(_) => return Err("the certificate holds something other than certificates".into()),
            Err(e) => return Err(format!("the certificate is not valid PEM: {e}")),
        }
    }
    if chain.is_empty() {
        return Err("the certificate holds no PEM certificate".into());
    }
    let mut keys = parse_pem(private_key.as_bytes()).filter_map(|item| match item {
        Ok(PemItem::PrivateKey(key)) => Some(Ok(key)),
        Ok(_) => None,
        Err(e) => Some(Err(format!("the private key is not valid PEM: {e}"))),
    });
    keys.next().ok_or("the private key holds no PEM private key")??;
    if keys.next().is_some() {
        return Err("the private key holds more than one key".into());
    }
    check_pair(&chain, private_key)
}

/// The certificate and key, when the key in `private_key` is that of the first certificate of
/// `chain`, as rustls (with the provider the pool uses) loads them for a handshake.
fn check_pair(chain: &[Certificate<'static>], private_key: &str) -> Result<Arc<ClientCert>, String> {
    let key = PrivateKeyDer::from_pem_slice(private_key.as_bytes())
        .map_err(|e| format!("the private key cannot be read: {e}"))?;
    let chain: Vec<_> = chain.iter().map(|c| CertificateDer::from(c.der().to_vec())).collect();
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
        Ok(_) => Ok(Arc::new(ClientCert { chain, key })),
        Err(rustls::Error::InconsistentKeys(_)) => Err("the private key is not the certificate's".into()),
        Err(e) => Err(format!("the certificate or its key cannot be used: {e}")),
    }
}

/// Why a TLS connection failed, when rustls refused the receiver's certificate or the receiver
/// refused ours; None for any other error.
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::CertificateError as C;
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(rustls::Error::InvalidCertificate(why)) = e.downcast_ref::<rustls::Error>() {
            let what = match why {
                C::UnknownIssuer => "is not trusted (unknown issuer: add its CA to pg_callback.ca_bundle)".to_string(),
                C::Expired | C::ExpiredContext { .. } => "has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "is not valid yet".to_string(),
                C::NotValidForName | C::NotValidForNameContext { .. } => "is for another name".to_string(),
                C::Revoked => "is revoked".to_string(),
                C::BadSignature => "has a bad signature".to_string(),
                other => format!("was refused ({other:?})"),
            };
            return Some(format!("TLS: the receiver's certificate {what}"));
        }
        if let Some(rustls::Error::AlertReceived(alert)) = e.downcast_ref::<rustls::Error>() {
            return client_refused(*alert);
        }
        // An I/O error's source() skips the error it wraps: that is where rustls's is.
        source = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// What an alert from the receiver says about our client certificate; None for alerts that
/// do not speak of it.
fn client_refused(alert: rustls::AlertDescription) -> Option<String> {
    use rustls::AlertDescription as A;
    let what = match alert {
        A::CertificateRequired => "requires a client certificate".to_string(),
        // What TLS 1.2 receivers say when a client certificate they require is missing.
        A::HandshakeFailure => "failed the handshake (a client certificate it requires may be missing)".to_string(),
        A::BadCertificate
        | A::UnknownCA
        | A::CertificateUnknown
        | A::CertificateExpired
        | A::CertificateRevoked
        | A::UnsupportedCertificate
        | A::AccessDenied => {
            format!("refused the client certificate ({alert:?})")
        }
        _ => return None,
    };
    Some(format!("TLS: the receiver {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("pg_callback_tls_{}_{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn bundles_that_cannot_be_used_say_why() {
        let missing = bundle_certificates(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(missing.starts_with("cannot read /nonexistent/ca.pem"), "{missing}");
        let empty = temp("empty.pem", "no certificates here\n");
        assert!(bundle_certificates(&empty)
            .unwrap_err()
            .ends_with("holds no certificate"));
        std::fs::remove_file(empty).unwrap();
    }

    #[test]
    fn an_unusable_bundle_leaves_the_system_store() {
        let (system, _) = roots(&Trust::default());
        let (roots, problems) = roots(&Trust::with_bundle("/nonexistent/ca.pem"));
        assert_eq!(roots.len(), system.len());
        assert!(problems
            .iter()
            .any(|p| p.starts_with("pg_callback.ca_bundle: cannot read")));
    }

    #[test]
    fn an_empty_setting_is_no_bundle_and_a_changed_file_is_another_trust() {
        assert_eq!(Trust::with_bundle("  "), Trust::default());
        let path = temp("stamp.pem", "x");
        let before = Trust::with_bundle(path.to_str().unwrap());
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert_ne!(Trust::with_bundle(path.to_str().unwrap()), before);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn refused_certificates_are_named() {
        let error = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(error);
        let said = refusal(&wrapped).unwrap();
        assert!(
            said.starts_with("TLS: the receiver's certificate is not trusted"),
            "{said}"
        );
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert_eq!(
            refusal(&expired).unwrap(),
            "TLS: the receiver's certificate has expired"
        );
        let revoked = rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
        assert_eq!(
            refusal(&revoked).unwrap(),
            "TLS: the receiver's certificate was refused (BadEncoding)"
        );
        assert_eq!(refusal(&std::io::Error::other("reset")), None);
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn client_certificates_need_their_own_key() {
        let (cert, key) = pair("client.example");
        assert!(client_certificate(&cert, &key).is_ok());
        let (_, other_key) = pair("other.example");
        assert_eq!(
            client_certificate(&cert, &other_key).err().unwrap(),
            "the private key is not the certificate's"
        );
        assert_eq!(
            client_certificate("", &key).err().unwrap(),
            "the certificate holds no PEM certificate"
        );
        assert_eq!(
            client_certificate(&cert, &cert).err().unwrap(),
            "the private key holds no PEM private key"
        );
        assert_eq!(
            client_certificate(&key, &key).err().unwrap(),
            "the certificate holds something other than certificates"
        );
    }

    #[test]
    fn receivers_refusing_our_certificate_are_named() {
        let required = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert_eq!(
            refusal(&std::io::Error::other(required)).unwrap(),
            "TLS: the receiver requires a client certificate"
        );
        let unknown = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        assert_eq!(
            refusal(&unknown).unwrap(),
            "TLS: the receiver refused the client certificate (UnknownCA)"
        );
        let closed = rustls::Error::AlertReceived(rustls::AlertDescription::CloseNotify);
        assert_eq!(refusal(&closed), None);
    }
}
