//! One module per subcommand.

pub mod attention;
pub mod average;
pub mod bench;
pub mod evaluate;
pub mod export;
pub mod lab;
pub mod pe;
pub mod plot;
pub mod prepare;
pub mod score;
pub mod serve;
pub mod train;
pub mod translate;
