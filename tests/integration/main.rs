//! Integration tests: the real `shroud` binary, a real SQLite file in a
//! temporary home, real processes. One test binary (as ripgrep and nextest
//! do), one module per capability; `support` holds the helpers.

mod api;
mod api_fetch;
mod api_sandboxes;
mod audit_log;
mod concurrency;
mod containment;
mod encryption;
mod exec;
mod mask_peers;
mod masking;
mod master_key;
mod redact;
mod sandbox;
mod secrets;
mod store_api;
mod support;
mod tokens;
mod validation;
mod vaults_and_vars;

/// Every version's (wrapped_key, sealed_value), in a stable order.
pub fn encryption_blobs(home: &support::TestHome) -> Vec<(Vec<u8>, Vec<u8>)> {
    home.query_pairs(
        "SELECT wrapped_key, sealed_value FROM secret_versions ORDER BY vault, name, version",
    )
}
