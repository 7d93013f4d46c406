//! Sandboxing: the policy a process runs under and the syscalls that apply it.
//!
//! [`template`] turns `sandbox-templates/*.toml` into plain data (the
//! environment, limits, network and isolation a sandbox asks for);
//! [`apply`] is the `__sandbox-init` process that applies it, through
//! [`ns`], the one file that makes isolation syscalls (namespaces, mounts,
//! rlimits, privileges). [`disk`] gives a sandbox a size-limited file
//! system of its own where the host allows it. [`holder`] keeps the
//! network namespace a sandbox's commands share.

pub mod apply;
pub mod disk;
pub mod holder;
pub mod ns;
pub mod template;
