//! brokerbench: runs RabbitMQ and Redis Streams side by side on real clusters, breaks them on
//! purpose, and reports what happened.

/// `println!` that never panics: a closed pipe (`brokerbench run ... | head`) or a full disk
/// under a redirected stdout must not kill a run that owns brokers and results.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see `outln!`).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod backend;
pub mod calibrate;
pub mod cli;
pub mod client_floor;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod fault;
pub mod load;
pub mod metrics;
pub mod monitoring;
pub mod payload;
pub mod report;
pub mod run;
pub mod scenario;
pub mod text;
pub mod tutorial;
