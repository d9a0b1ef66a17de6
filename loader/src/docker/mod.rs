//! Following the Docker Engine API: containers' endpoints and `-p` ports.
pub mod model;
pub mod watch;
