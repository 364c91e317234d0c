//! A real OpenLDAP `slapd` for the directory sign-in tests: its own
//! configuration and database in a temporary directory, loaded from LDIF
//! with `slapadd`, LDAPS with the test PKI's certificate and a plain
//! listener for the harness's own changes (`ldapmodify`). Its stats log
//! (every BIND and SRCH with its filter) is kept, so a test can see what
//! the directory was asked. Ports are below the ephemeral range, so it can
//! be stopped and started again on the same ones.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::pki::TestPki;
use crate::servers::{Process, sbin};
use crate::wait_for;

/// The directory's suffix, its administrator and the service account.
pub const SUFFIX: &str = "dc=example,dc=edu";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=edu";
const ADMIN_PASSWORD: &str = "admin-secret";
pub const SERVICE_DN: &str = "cn=ferry,ou=services,dc=example,dc=edu";
pub const SERVICE_PASSWORD: &str = "service-secret";

pub struct Slapd {
    child: Option<Process>,
    pub ldaps_port: u16,
    pub ldap_port: u16,
    config: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// A port in 20000–29999 free right now: below the ephemeral range, so no
/// client's outbound connection takes it while the server is stopped.
pub fn restartable_port() -> u16 {
    wait_for("a free port below the ephemeral range", Duration::from_secs(10), || {
        let port = rand::random_range(20000..30000);
        std::net::TcpListener::bind(("127.0.0.1", port)).ok().map(|_| port)
    })
}

impl Slapd {
    /// A directory under [`SUFFIX`] holding the service account and `ldif`.
    pub fn start(pki: &TestPki, ldif: &str) -> Slapd {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("db dir");
        let config = dir.path().join("slapd.conf");
        let schema = |s: &str| format!("include /etc/ldap/schema/{s}.schema\n");
        let text = format!(
            "{}{}{}{}{}\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             pidfile {dir}/slapd.pid\nargsfile {dir}/slapd.args\n\
             TLSCACertificateFile {ca}\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n\
             database mdb\nmaxsize 104857600\nsuffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\nrootpw {ADMIN_PASSWORD}\ndirectory {db}\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by * read\n",
            schema("core"),
            schema("cosine"),
            schema("inetorgperson"),
            schema("nis"),
            schema("misc"),
            dir = dir.path().display(),
            ca = pki.ca.display(),
            cert = pki.cert.display(),
            key = pki.key.display(),
            db = db.display(),
        );
        std::fs::write(&config, text).expect("slapd.conf");
        let base = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example University\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: ferry\nuserPassword: {SERVICE_PASSWORD}\n\n{ldif}"
        );
        let mut add = Command::new(sbin("slapadd"))
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slapadd (apt-get install slapd)");
        add.stdin
            .take()
            .expect("stdin")
            .write_all(base.as_bytes())
            .expect("ldif");
        let out = add.wait_with_output().expect("slapadd");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut slapd = Slapd {
            child: None,
            ldaps_port: restartable_port(),
            ldap_port: restartable_port(),
            config,
            log: Arc::default(),
            _dir: dir,
        };
        slapd.launch();
        slapd
    }

    fn launch(&mut self) {
        let urls = format!(
            "ldaps://127.0.0.1:{}/ ldap://127.0.0.1:{}/",
            self.ldaps_port, self.ldap_port
        );
        let mut child = Command::new(sbin("slapd"))
            .args(["-d", "stats", "-f"])
            .arg(&self.config)
            .args(["-h", &urls])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slapd (apt-get install slapd)");
        let stderr = child.stderr.take().expect("stderr");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut child = Process(child);
        let port = self.ldaps_port;
        wait_for("slapd to listen", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("slapd exited: {status}:\n{}", self.log_text());
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        self.child = Some(child);
    }

    /// Kills slapd: the directory is down until [`Slapd::restart`].
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Starts it again on the same ports and database.
    pub fn restart(&mut self) {
        self.child = None;
        self.launch();
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// Applies an LDIF change as the directory's administrator (`ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.ldap_port)])
            .args(["-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (apt-get install ldap-utils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The stats log so far (one line per operation).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn log_text(&self) -> String {
        self.log().join("\n")
    }

    /// How many binds named `dn` so far.
    pub fn binds_of(&self, dn: &str) -> usize {
        let needle = format!("BIND dn=\"{dn}\"");
        self.log().iter().filter(|l| l.contains(&needle)).count()
    }
}
