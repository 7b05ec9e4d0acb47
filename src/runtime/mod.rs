//! Process-wide runtime tuning that belongs to no one module: how the memory
//! allocator keeps and hands back memory. It sits below the store, which calls it.

pub mod memory;
