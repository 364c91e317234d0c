//! A test certificate authority and a server certificate for 127.0.0.1 and
//! localhost, so clients verify the relay for real.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

pub struct TestPki {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The relay's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_der: Vec<u8>,
}

impl TestPki {
    pub fn create(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ferry test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "relay.test".to_string(),
        ])
        .expect("params");
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("server cert");
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca_der: ca_cert.der().to_vec(),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).expect("write ca");
        std::fs::write(&pki.cert, cert.pem()).expect("write cert");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
        pki
    }
}
