//! The `shadowcat` command.

fn main() {}
