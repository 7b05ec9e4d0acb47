//! Process-wide runtime tuning that belongs to no one module (the memory allocator).

pub mod memory;
