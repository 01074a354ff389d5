//! tokengate's fuzz targets: [`world`] is the fixed setting they run in, [`targets`] the checks.
//! See `fuzz/README.md`.

pub mod targets;
pub mod world;

pub use world::*;
