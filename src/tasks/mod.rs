//! CI tasks (`shroud run FILE.yml`, SPEC §7): [`file`] parses and checks a
//! task file, [`expr`] reads its `${{ }}` expressions, [`scheduler`] checks
//! what needs the store, reads every secret once, and runs the DAG through
//! the supervisor's one prepare path.

pub mod expr;
pub mod file;
pub mod scheduler;
