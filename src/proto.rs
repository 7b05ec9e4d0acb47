//! Code generated from `proto/`: Grafana's plugin protocol and go-plugin's services.

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
