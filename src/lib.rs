//! shroud: a sandbox runner and agent-execution supervisor with a built-in,
//! encrypted secret vault.
//!
//! Everything shroud does is one data flow with different front doors
//! (`exec`, sandboxes, deployments, agent runs, CI tasks, the HTTP API):
//!
//! ```text
//! grant (CLI flags, API body, task expression)
//!   → store: open the vault, check TTL and grants, decrypt (audit row written first)
//!   → SecretValue set ──┬─→ env of the child, built from nothing
//!                       └─→ MaskSet (values + variants → one automaton)
//!   → spawn (process group, rlimits, sandbox policy) ─→ stdout / stderr
//!   → one streaming masker per stream ─→ sinks
//!   → exit status
//! ```
//!
//! Modules, bottom up (dependencies point one way, downwards):
//!
//! - [`secret`]: `SecretValue`, the zeroizing, never-printed plaintext type.
//! - [`clock`]: timestamps as stored and printed.
//! - [`dotenv`]: the `.env` format (`secret import`/`export`, `--env-file`).
//! - [`store`]: the encrypted vault (SQLite, AES-256-GCM envelope encryption,
//!   hash-chained audit log).
//! - [`mask`]: the streaming masker (secrets and their encodings → replacements).
//! - [`sys`]: the OS layer (fds, poll, terminals, ptys, signals, processes).
//! - [`sandbox`]: templates, and the isolation applied to a sandboxed command.
//! - [`supervisor`]: runs one child: environment, masking, signals, exit codes;
//!   the one prepare path (`plan`), sandboxes, deployments and the manager
//!   actor that owns every long-lived run.
//! - [`tasks`]: CI task files (`shroud run`): parse, check, the DAG.
//! - [`api`]: the HTTP API of `shroud serve` (TCP, and the supervisor's
//!   Unix socket).
//! - [`cli`]: the `shroud` command line.

#![recursion_limit = "512"]

pub mod api;
pub mod cli;
pub mod clock;
pub mod dotenv;
pub mod mask;
pub mod sandbox;
pub mod secret;
pub mod store;
pub mod supervisor;
pub mod sys;
pub mod tasks;
pub mod wire;
