//! One module per subcommand.

pub mod evaluate;
pub mod pe;
pub mod train;
pub mod translate;
