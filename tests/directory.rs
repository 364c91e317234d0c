//! Directory sign-in against a real OpenLDAP slapd (started by the test,
//! LDAPS with the test CA): members of the submission group send as their
//! own address and its alias with swaks on 587 and 465, counted under the
//! tenant their `ou` maps to; every other case gets the answer the issue
//! names — another person's address 550 5.7.1; a non-member, a wrong or
//! empty password and filter metacharacters 535 5.7.8, with slapd seeing
//! only escaped filters; the directory down 454 4.7.0 while Ferry's own
//! application credentials keep working; the login cache spares a bind,
//! and a password changed in the directory is honoured once it expires.

use std::process::Command;
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::ldap::{SERVICE_DN, SERVICE_PASSWORD, SUFFIX, Slapd};
use ferry_testkit::{Ferry, USER, wait_for};

const PEOPLE: &str = "\
dn: uid=alice,ou=people,dc=example,dc=edu
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: alice
cn: Alice Smith
sn: Smith
ou: Physics
mail: alice@physics.example.edu
mailLocalAddress: alice.smith@physics.example.edu
userPassword: alice-password

dn: uid=bob,ou=people,dc=example,dc=edu
objectClass: inetOrgPerson
uid: bob
cn: Bob Jones
sn: Jones
ou: Chemistry
mail: bob@chem.example.edu
userPassword: bob-password

dn: uid=mallory,ou=people,dc=example,dc=edu
objectClass: inetOrgPerson
uid: mallory
cn: Mallory Left
sn: Left
ou: Physics
mail: mallory@physics.example.edu
userPassword: mallory-password

dn: cn=smtp-submit,ou=groups,dc=example,dc=edu
objectClass: groupOfNames
cn: smtp-submit
member: uid=alice,ou=people,dc=example,dc=edu
member: uid=bob,ou=people,dc=example,dc=edu
";

/// swaks on 587 (STARTTLS) or 465 (implicit TLS): its transcript.
fn swaks(ferry: &Ferry, implicit: bool, user: &str, password: &str, from: &str) -> String {
    let (port, tls) = if implicit {
        (ferry.submissions.expect("465"), "--tlsc")
    } else {
        (ferry.submission.expect("587"), "--tls")
    };
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.port().to_string(), tls])
        .args(["--auth", "PLAIN", "--auth-user", user, "--auth-password", password])
        .args(["--from", from, "--to", "someone@example.net"])
        .args(["--header", "Subject: directory sign-in"])
        .output()
        .expect("run swaks");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sign_in(ferry: &Ferry, user: &str, password: &str) -> String {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    smtp.auth_plain(user, password)
}

fn relay_with_directory() -> (Ferry, Slapd) {
    let mut ferry = Ferry::prepare(&[("admin.listen", "127.0.0.1:0"), ("auth.cache_secs", "2")]);
    ferry.cli_ok(&["tenant", "add", "physics", "--domain", "physics.example.edu"]);
    ferry.cli_ok(&["tenant", "add", "chemistry", "--domain", "chem.example.edu"]);
    let slapd = Slapd::start(&ferry.pki, PEOPLE);
    let section = format!(
        "\n[auth.directory]\nurl = \"{url}\"\nca_file = \"{ca}\"\n\
         bind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PASSWORD}\"\n\
         base_dn = \"ou=people,{SUFFIX}\"\n\
         required_group = \"cn=smtp-submit,ou=groups,{SUFFIX}\"\n\
         alias_attributes = [\"mailLocalAddress\"]\n\
         tenant_attribute = \"ou\"\ntenant_map = {{ Physics = \"physics\", Chemistry = \"chemistry\" }}\n\
         timeout_secs = 2\n",
        url = slapd.ldaps_url(),
        ca = ferry.pki.ca.display(),
    );
    let mut config = std::fs::read_to_string(ferry.config_path()).expect("config");
    config.push_str(&section);
    std::fs::write(ferry.config_path(), config).expect("config");
    ferry.launch();
    (ferry, slapd)
}

#[test]
fn people_sign_in_with_their_directory_account() {
    let (mut ferry, mut slapd) = relay_with_directory();

    // A member, as herself and her alias, on 587 and 465.
    for (implicit, from) in [
        (false, "alice@physics.example.edu"),
        (false, "alice.smith@physics.example.edu"),
        (true, "alice@physics.example.edu"),
    ] {
        let t = swaks(&ferry, implicit, "alice", "alice-password", from);
        assert!(t.contains("<~  235 "), "{t}");
        assert!(
            t.contains("<~  250 2.0.0 Ok: queued as "),
            "{from} (465: {implicit}): {t}"
        );
    }
    // Another person's address, even of her own tenant: 550 5.7.1.
    for from in ["bob@chem.example.edu", "mallory@physics.example.edu"] {
        let t = swaks(&ferry, false, "alice", "alice-password", from);
        assert!(t.contains("<~* 550 5.7.1"), "{from}: {t}");
    }
    ferry.wait_captured(3);
    let token = admin_token(&ferry);
    let (status, usage, _) = ferry.api("GET", "/v1/apps/alice", Some(&token), None);
    assert_eq!(status, 200, "{usage}");
    // Explain answers for a person as for an application.
    let ask = |from: &str| {
        let body = serde_json::json!({
            "source": "127.0.0.1", "envelope_from": from, "recipients": ["someone@example.net"]
        })
        .to_string();
        let (status, answer, _) = ferry.api("POST", "/v1/apps/alice/explain", Some(&token), Some(&body));
        assert_eq!(status, 200, "{answer}");
        answer
    };
    assert_eq!(ask("alice.smith@physics.example.edu")["verdict"], "pass");
    let refused = ask("mallory@physics.example.edu");
    assert!(
        refused["reply"].as_str().is_some_and(|r| r.starts_with("550 5.7.1")),
        "{refused}"
    );
    assert_eq!(usage["tenant"], "physics", "counted under the mapped tenant: {usage}");
    assert_eq!(usage["directory_dn"], format!("uid=alice,ou=people,{SUFFIX}"));
    let report = ferry.cli_ok(&["report", "usage", "--format", "json", "--to", "2099-12-31"]);
    let report: serde_json::Value = serde_json::from_str(&report).expect("json");
    let physics = report["tenants"]
        .as_array()
        .and_then(|t| t.iter().find(|r| r["tenant"] == "physics"))
        .expect("a physics row");
    assert_eq!(physics["applications"]["alice"]["usage"]["messages"], 3, "{physics}");

    // Refused like a wrong password: a non-member, a wrong password, an
    // empty one, and usernames with filter metacharacters.
    let before = slapd.log().len();
    for (user, password) in [
        ("mallory", "mallory-password"),
        ("alice", "not-her-password"),
        ("bob", ""),
        ("*", "x"),
        ("alice)(uid=*", "x"),
        ("(|(uid=*))", "x"),
        ("back\\slash", "x"),
    ] {
        let reply = sign_in(&ferry, user, password);
        assert!(reply.starts_with("535 5.7.8"), "{user:?}/{password:?}: {reply}");
    }
    let asked: Vec<String> = slapd.log()[before..]
        .iter()
        .filter(|l| l.contains("SRCH base=") && l.contains("filter="))
        .cloned()
        .collect();
    assert!(!asked.is_empty(), "the directory was searched");
    for line in &asked {
        let filter = line.split("filter=").nth(1).unwrap_or_default();
        assert!(
            !filter.contains("(uid=*") && !filter.contains("(|(uid"),
            "an injected filter reached slapd: {line}"
        );
    }
    assert!(
        asked.iter().any(|l| l.to_ascii_lowercase().contains("\\2a")),
        "escaped: {asked:?}"
    );
    assert!(
        slapd.log()[before..].iter().all(|l| !l.contains("BIND dn=\"uid=bob")),
        "an empty password never reaches a bind"
    );

    // The directory down: 454, and Ferry's own credentials still work.
    slapd.stop();
    let reply = sign_in(&ferry, "bob", "bob-password");
    assert!(reply.starts_with("454 4.7.0"), "{reply}");
    assert!(sign_in(&ferry, USER, &ferry.password).starts_with("235"));
    slapd.restart();
    let reply = sign_in(&ferry, "bob", "bob-password");
    assert!(reply.starts_with("235"), "back: {reply}");

    // Within the cache time a second session binds no more.
    let bob = format!("uid=bob,ou=people,{SUFFIX}");
    let binds = slapd.binds_of(&bob);
    assert!(sign_in(&ferry, "bob", "bob-password").starts_with("235"));
    assert_eq!(
        slapd.binds_of(&bob),
        binds,
        "the second session was answered from the cache"
    );
    // A password changed in the directory: the new one works at once, the
    // old one until the cache forgets it (2 s here), then never.
    slapd.modify(&format!(
        "dn: {bob}\nchangetype: modify\nreplace: userPassword\nuserPassword: bob-new\n"
    ));
    assert!(sign_in(&ferry, "bob", "bob-new").starts_with("235"));
    wait_for("the old password to stop working", Duration::from_secs(20), || {
        sign_in(&ferry, "bob", "bob-password").starts_with("535").then_some(())
    });
    assert!(ferry.stop().success());
}

fn admin_token(ferry: &Ferry) -> String {
    // The relay is running: the CLI asks it.
    ferry.add_token(&["--name", "directory test", "--role", "admin"])
}

/// The directory's CA is read only where applications sign in: a delivery
/// node (the chart does not mount the CA on it) starts without the file.
#[test]
fn a_delivery_node_needs_no_directory_ca() {
    let mut ferry = Ferry::node(&[]);
    let section = format!(
        "\n[auth.directory]\nurl = \"ldaps://127.0.0.1:1\"\nca_file = \"{}\"\n\
         bind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PASSWORD}\"\n\
         base_dn = \"ou=people,{SUFFIX}\"\ntenant = \"physics\"\n",
        ferry.dir.path().join("not-mounted-ca.pem").display()
    );
    let mut config = std::fs::read_to_string(ferry.config_path()).expect("config");
    config.push_str(&section);
    std::fs::write(ferry.config_path(), config).expect("config");
    ferry.launch_as("delivery");
    assert!(ferry.submission.is_none(), "a delivery node does not listen");
}
