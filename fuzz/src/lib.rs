//! Fuzz targets for arrowmon's readers of untrusted input; see `targets`.
pub mod targets;
