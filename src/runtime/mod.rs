//! Process-wide runtime tuning that belongs to no one module: how the memory
//! allocator keeps and hands back memory, and the budget of memory that queries in
//! flight may hold. It sits below the store and the PromQL engine, which use it.

pub mod memory;
pub mod query_budget;
