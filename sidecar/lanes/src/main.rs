//! `lanes`: the CLI and the sidecar daemon.

fn main() {}
