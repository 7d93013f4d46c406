//! Sandboxing: the policy a process runs under and the syscalls that apply it.
//!
//! [`template`] turns `sandbox-templates/*.toml` into plain data (for now,
//! the environment a run starts from); [`sys`] is the one file that calls into
//! the kernel (core dumps, terminals, pipes, signals to process groups).
//! Namespace isolation and resource limits join them with the sandbox
//! commands.

pub mod apply;
pub mod sys;
pub mod template;
