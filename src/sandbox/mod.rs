//! Sandboxing: the policy a process runs under and the syscalls that apply it.
//!
//! For now this holds [`sys`], the one file that calls into the kernel for
//! process hardening (core dumps, terminal echo). Templates
//! (`sandbox-templates/*.toml` → policy) and namespace isolation join it with
//! the sandbox commands.

pub mod sys;
