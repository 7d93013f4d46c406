//! Integration tests: the real `shroud` binary, a real SQLite file in a
//! temporary home (or a database of a throwaway PostgreSQL cluster, for the
//! conformance suite: see `support::conformance!`), real processes. One test binary (as ripgrep and nextest
//! do), one module per capability; `support` holds the helpers.

mod api;
mod api_fetch;
mod api_sandboxes;
mod api_seed;
mod audit_log;
mod backup;
mod concurrency;
mod containment;
mod deployments;
mod dotenv;
mod encryption;
mod exec;
mod mask_peers;
mod masking;
mod master_key;
mod pg;
mod pg_nodes;
mod readme;
mod redact;
mod sandbox;
mod sandbox_files;
mod secrets;
mod store_api;
mod support;
mod tasks;
mod tokens;
mod validation;
mod vaults_and_vars;

/// Every version's (wrapped_key, sealed_value) in hex, in a stable order.
pub fn encryption_blobs(home: &support::TestHome) -> Vec<Vec<String>> {
    home.text_rows(
        "SELECT {hex:wrapped_key}, {hex:sealed_value} FROM secret_versions ORDER BY vault, name, version",
    )
}
