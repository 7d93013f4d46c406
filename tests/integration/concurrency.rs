//! Several processes writing one home at once lose nothing and fail nothing.

use std::collections::BTreeSet;

use crate::support::TestHome;

const WRITERS: usize = 8;
const SECRETS_EACH: usize = 25;

fn eight_processes_setting_25_secrets_each_into_a_fresh_home() {
    let home = TestHome::new();
    // All writers start on a home that does not exist yet, so they also race
    // to create the directory, the database and the master key.
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let home = &home;
            scope.spawn(move || {
                for i in 0..SECRETS_EACH {
                    let name = format!("W{writer}_S{i}");
                    let out = home.run(&["secret", "set", &name, &format!("value-{writer}-{i}")]);
                    assert_eq!(out.code, 0, "{name}: {out:?}");
                }
            });
        }
    });
    let names: BTreeSet<String> = home.list("default").into_iter().collect();
    assert_eq!(names.len(), WRITERS * SECRETS_EACH);
    for writer in 0..WRITERS {
        for i in [0, SECRETS_EACH - 1] {
            assert_eq!(
                home.reveal(&format!("W{writer}_S{i}")),
                format!("value-{writer}-{i}")
            );
        }
    }
    let verified = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(verified["ok"], true);
    assert_eq!(
        verified["records"].as_u64().unwrap() as usize,
        WRITERS * SECRETS_EACH + 2 * WRITERS
    );
}

fn concurrent_bulk_writers_and_version_bumps_of_one_secret() {
    let home = TestHome::new();
    home.set("SHARED", "initial-shared-value");
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let home = &home;
            scope.spawn(move || {
                let mut args = vec![
                    "vault".to_owned(),
                    "set-secrets".to_owned(),
                    "--vault".to_owned(),
                    "bulk".to_owned(),
                ];
                args.extend((0..SECRETS_EACH).map(|i| format!("B{writer}_{i}=bulk-{writer}-{i}")));
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                assert_eq!(home.run(&refs).code, 0);
                let out = home.run(&["secret", "set", "SHARED", &format!("shared-from-{writer}")]);
                assert_eq!(out.code, 0, "{out:?}");
            });
        }
    });
    assert_eq!(home.list("bulk").len(), WRITERS * SECRETS_EACH);
    let json = home.run(&["--json", "secret", "list"]).json();
    assert_eq!(
        json["secrets"][0]["version"],
        1 + WRITERS as u64,
        "a version bump was lost"
    );
    home.run(&["audit", "verify"]).ok();
}

crate::conformance!(
    eight_processes_setting_25_secrets_each_into_a_fresh_home,
    concurrent_bulk_writers_and_version_bumps_of_one_secret,
);
