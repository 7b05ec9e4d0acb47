//! Code generated from `proto/`: Grafana's plugin protocol, go-plugin's services
//! and Prometheus's remote write messages.

#![allow(clippy::all, missing_docs)]

pub mod pluginv2 {
    tonic::include_proto!("pluginv2");
}

/// hashicorp/go-plugin's own services (controller, broker, stdio).
pub mod goplugin {
    tonic::include_proto!("plugin");
}

pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// Prometheus remote write 1.0 (`WriteRequest` and what it holds).
pub mod prometheus {
    tonic::include_proto!("prometheus");
}
