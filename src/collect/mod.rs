//! Collection without an exporter: a scrape job with `mysql:` (config/mysql.rs)
//! reads its MySQL or MariaDB servers over SQL ([`MysqlTarget`], `mysql.rs`) and
//! renders what it read as the text exposition mysqld_exporter 0.14.0 would serve
//! (`mysqld_exporter.rs`, `exposition.rs`). The scrape loop parses that body as if
//! it had fetched it, so a `mysql:` job keeps everything a scrape job has.

mod exposition;
mod mysql;
pub mod mysqld_exporter;
mod status;

pub use exposition::{Families, MetricType};
pub use mysql::{check_config, collection_budget, Collected, MysqlTarget};
pub use status::parse_status;
