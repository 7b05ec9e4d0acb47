//! The pluginv2 services Grafana calls: QueryData, CheckHealth, CollectMetrics and
//! CallResource, plus go-plugin's controller, broker and stdio services.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::exemplar;
use super::query::{frames, plan, FrameShape, Plan, QueryModel, QueryTiming};
use crate::api::panic::catch_panic;
use crate::api::{self, query_error_status, Access, ApiRequest, ApiResponse};
use crate::config::settings::DatasourceSettings;
use crate::config::settings::TenantKey;
use crate::promql::{Engine, EngineOptions};
use crate::proto::goplugin;
use crate::proto::health as grpc_health;
use crate::proto::pluginv2 as pb;
use crate::scrape::Health;
use crate::tenant::{RunError, Tenant, Tenants};

/// Shared state of every service.
#[derive(Clone)]
pub struct Plugin {
    pub tenants: Arc<Tenants>,
    pub engine: Arc<Engine>,
    /// Set to true when Grafana asks the plugin to stop.
    pub shutdown: watch::Sender<bool>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Plugin {
    /// The tenant a request is addressed to, from its datasource settings.
    async fn tenant(&self, ctx: Option<&pb::PluginContext>) -> Result<Arc<Tenant>, Status> {
        catch_panic(self.resolve_tenant(ctx))
            .await
            .unwrap_or_else(|msg| {
                Err(Status::internal(format!(
                    "internal error while opening the datasource: {msg}"
                )))
            })
    }

    async fn resolve_tenant(&self, ctx: Option<&pb::PluginContext>) -> Result<Arc<Tenant>, Status> {
        let ctx = ctx.ok_or_else(|| Status::invalid_argument("request has no plugin context"))?;
        let ds = ctx.data_source_instance_settings.as_ref().ok_or_else(|| {
            Status::invalid_argument("request is not addressed to a datasource instance")
        })?;
        let settings = DatasourceSettings::from_grafana(
            ctx.org_id,
            &ds.uid,
            &ds.name,
            &ds.json_data,
            &ds.decrypted_secure_json_data,
            ds.last_updated_ms,
        )
        .map_err(Status::invalid_argument)?;
        self.tenants
            .get(settings)
            .await
            .map_err(Status::invalid_argument)
    }

    /// Runs one query of a request; `from_alert`: Grafana's alerting sent it.
    async fn run_query(
        &self,
        tenant: &Arc<Tenant>,
        q: &pb::DataQuery,
        from_alert: bool,
        features: GrafanaFeatures,
    ) -> pb::DataResponse {
        let downstream = |status: i32, msg: String| pb::DataResponse {
            error: msg,
            status,
            error_source: "downstream".into(),
            ..Default::default()
        };
        let mut model = match QueryModel::parse(&q.json) {
            Ok(m) => m,
            Err(e) => return downstream(400, e),
        };
        // Grafana never runs the exemplar query for alerting.
        model.exemplar &= !from_alert;
        let range = q.time_range.unwrap_or_default();
        let settings = tenant.settings().await;
        let time_interval = settings
            .as_ref()
            .map(|s| s.time_interval_text().to_string())
            .unwrap_or_default();
        // The datasource's query timeout replaces the default one (a bad one failed
        // the request already, when the tenant was resolved).
        let engine = match settings
            .as_ref()
            .and_then(|s| s.query_timeout().ok().flatten())
        {
            Some(timeout) => Arc::new(Engine::new(EngineOptions {
                timeout,
                ..self.engine.options().clone()
            })),
            None => self.engine.clone(),
        };
        let timing = QueryTiming {
            from_ms: range.from_epoch_ms,
            to_ms: range.to_epoch_ms,
            interval_ms: q.interval_ms,
            max_data_points: q.max_data_points,
        };
        let plan = match plan(&model, timing, &time_interval) {
            Ok(p) => p,
            Err(e) => return downstream(400, e),
        };
        // "Both": the instant query's frames come first, as in Grafana's Prometheus
        // backend; an error of either is merged as it merges them.
        let instant_plan = (model.instant && model.range).then(|| plan.instant_at(timing.to_ms));
        let exemplar_plan = model.exemplar.then(|| plan.clone());
        let shape = features.shape;
        let instant = async {
            match instant_plan {
                Some(p) => Some(self.run_plan(tenant, &engine, q, &model, p, shape).await),
                None => None,
            }
        };
        let main = self.run_plan(tenant, &engine, q, &model, plan, shape);
        let exemplars = async {
            match &exemplar_plan {
                Some(p) => exemplar_frames(tenant, &q.ref_id, p).await,
                None => None,
            }
        };
        // With `prometheusRunQueriesInParallel` Grafana runs the parts of a query
        // at once; the frames still come in the order above.
        let (instant, main, exemplars) = if features.parallel.is_some() {
            tokio::join!(instant, main, exemplars)
        } else {
            (instant.await, main.await, exemplars.await)
        };
        let mut merged = pb::DataResponse {
            status: 200,
            ..Default::default()
        };
        for r in instant.into_iter().chain([main]) {
            if !r.error.is_empty() {
                merged.error = if merged.error.is_empty() {
                    r.error
                } else {
                    format!("{} {}", merged.error, r.error)
                };
                merged.status = r.status;
                merged.error_source = r.error_source;
            }
            merged.frames.extend(r.frames);
        }
        merged.frames.extend(exemplars);
        merged
    }

    /// Runs one query, a panic failing only that query and not the connection
    /// Grafana shares across every org's requests.
    async fn answer_query(
        &self,
        tenant: &Arc<Tenant>,
        q: &pb::DataQuery,
        from_alert: bool,
        features: GrafanaFeatures,
    ) -> pb::DataResponse {
        catch_panic(self.run_query(tenant, q, from_alert, features))
            .await
            .unwrap_or_else(|msg| {
                tracing::error!(ref_id = %q.ref_id, "internal error while running a query: {msg}");
                internal_error(&msg)
            })
    }

    /// Runs one planned query and encodes its frames.
    async fn run_plan(
        &self,
        tenant: &Arc<Tenant>,
        engine: &Arc<Engine>,
        q: &pb::DataQuery,
        model: &QueryModel,
        plan: Plan,
        shape: FrameShape,
    ) -> pb::DataResponse {
        let p = plan.clone();
        let result = tenant
            .run_query(engine, move |engine, store| {
                if p.range {
                    engine.range_query(store, &p.expr, p.start_ms, p.end_ms, p.step_ms)
                } else {
                    engine.instant_query(store, &p.expr, p.end_ms)
                }
            })
            .await;
        let result = match result {
            Ok(r) => r,
            Err(RunError::Query(e)) => {
                let (status, _) = query_error_status(&e);
                let source = if status == 500 {
                    "plugin"
                } else {
                    "downstream"
                };
                return pb::DataResponse {
                    error: e.to_string(),
                    status: status as i32,
                    error_source: source.into(),
                    ..Default::default()
                };
            }
            Err(e) => {
                return pb::DataResponse {
                    error: e.to_string(),
                    status: 500,
                    error_source: "plugin".into(),
                    ..Default::default()
                }
            }
        };
        let mut encoded = Vec::new();
        for f in frames(&q.ref_id, model, &plan, &result, shape) {
            match f.to_arrow_ipc() {
                Ok(b) => encoded.push(b),
                Err(e) => {
                    return pb::DataResponse {
                        error: format!("encoding frame: {e}"),
                        status: 500,
                        error_source: "plugin".into(),
                        ..Default::default()
                    }
                }
            }
        }
        pb::DataResponse {
            frames: encoded,
            status: 200,
            ..Default::default()
        }
    }
}

/// What Grafana's configuration (the plugin context's `grafana_config`) asks of
/// its Prometheus backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GrafanaFeatures {
    shape: FrameShape,
    /// `prometheusRunQueriesInParallel`: at most this many queries at once.
    parallel: Option<usize>,
}

impl GrafanaFeatures {
    fn from_context(ctx: Option<&pb::PluginContext>) -> GrafanaFeatures {
        let config = ctx.map(|c| &c.grafana_config);
        // Grafana lists its enabled toggles, default ones included; without a list
        // (an older Grafana, or none sent) its defaults hold.
        let toggles: Option<Vec<&str>> = config
            .and_then(|c| c.get("GF_INSTANCE_FEATURE_TOGGLES_ENABLE"))
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.split(',').map(str::trim).collect());
        let enabled = |name: &str| toggles.as_ref().is_some_and(|t| t.contains(&name));
        let shape = if toggles.is_some() && !enabled("prometheusDataplane") {
            FrameShape::BeforeDataplane
        } else {
            FrameShape::Dataplane
        };
        // Grafana's bound is `concurrent_query_count`, 10 when unset or unreadable.
        let parallel = enabled("prometheusRunQueriesInParallel").then(|| {
            config
                .and_then(|c| c.get("GF_CONCURRENT_QUERY_COUNT"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map_or(10, |n| n.max(1) as usize)
        });
        GrafanaFeatures { shape, parallel }
    }
}

fn internal_error(msg: &str) -> pb::DataResponse {
    pb::DataResponse {
        error: format!("internal error while running the query: {msg}"),
        status: 500,
        error_source: "plugin".into(),
        ..Default::default()
    }
}

/// The exemplar frame of a query over its aligned range, encoded. As in Grafana, a
/// failing exemplar query is logged and leaves the response as it is.
async fn exemplar_frames(tenant: &Arc<Tenant>, ref_id: &str, plan: &Plan) -> Option<Vec<u8>> {
    let (start, end) = plan.aligned_ms;
    let series = match tenant.query_exemplars(&plan.expr, start, end).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(ref_id, query = %plan.expr, "exemplar query failed: {e}");
            return None;
        }
    };
    let frame =
        exemplar::exemplar_frame(ref_id, plan.step_ms, &plan.executed_query_string(), &series)?;
    match frame.to_arrow_ipc() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(ref_id, "encoding the exemplar frame: {e}");
            None
        }
    }
}

#[tonic::async_trait]
impl pb::data_server::Data for Plugin {
    async fn query_data(
        &self,
        req: Request<pb::QueryDataRequest>,
    ) -> Result<Response<pb::QueryDataResponse>, Status> {
        let req = req.into_inner();
        let tenant = self.tenant(req.plugin_context.as_ref()).await?;
        let from_alert = req.headers.get("FromAlert").is_some_and(|v| v == "true");
        if req.queries.is_empty() {
            return Err(Status::invalid_argument("query contains no queries"));
        }
        let features = GrafanaFeatures::from_context(req.plugin_context.as_ref());
        let mut responses = HashMap::new();
        match features.parallel {
            Some(limit) => {
                let permits = Arc::new(Semaphore::new(limit));
                let mut running = Vec::with_capacity(req.queries.len());
                for q in req.queries {
                    let (this, tenant, permits) = (self.clone(), tenant.clone(), permits.clone());
                    let ref_id = q.ref_id.clone();
                    let task = tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        this.answer_query(&tenant, &q, from_alert, features).await
                    });
                    running.push((ref_id, task));
                }
                for (ref_id, task) in running {
                    let resp = task
                        .await
                        .unwrap_or_else(|e| internal_error(&e.to_string()));
                    responses.insert(ref_id, resp);
                }
            }
            None => {
                for q in &req.queries {
                    let resp = self.answer_query(&tenant, q, from_alert, features).await;
                    responses.insert(q.ref_id.clone(), resp);
                }
            }
        }
        Ok(Response::new(pb::QueryDataResponse { responses }))
    }

    type QueryChunkedDataStream = BoxStream<pb::QueryChunkedDataResponse>;

    async fn query_chunked_data(
        &self,
        _req: Request<pb::QueryChunkedDataRequest>,
    ) -> Result<Response<Self::QueryChunkedDataStream>, Status> {
        Err(Status::unimplemented(
            "chunked queries are not supported; use QueryData",
        ))
    }
}

#[tonic::async_trait]
impl pb::diagnostics_server::Diagnostics for Plugin {
    async fn check_health(
        &self,
        req: Request<pb::CheckHealthRequest>,
    ) -> Result<Response<pb::CheckHealthResponse>, Status> {
        use pb::check_health_response::HealthStatus;
        let req = req.into_inner();
        let tenant = match self.tenant(req.plugin_context.as_ref()).await {
            Ok(t) => t,
            Err(s) => {
                return Ok(Response::new(pb::CheckHealthResponse {
                    status: HealthStatus::Error as i32,
                    message: s.message().to_string(),
                    json_details: Vec::new(),
                }))
            }
        };
        let (status, message) = catch_panic(async { health_message(&tenant.health().await) })
            .await
            .unwrap_or_else(|msg| {
                (
                    HealthStatus::Error,
                    format!("internal error while checking health: {msg}"),
                )
            });
        Ok(Response::new(pb::CheckHealthResponse {
            status: status as i32,
            message,
            json_details: Vec::new(),
        }))
    }

    async fn collect_metrics(
        &self,
        _req: Request<pb::CollectMetricsRequest>,
    ) -> Result<Response<pb::CollectMetricsResponse>, Status> {
        let all = self.tenants.all().await;
        let named: Vec<(String, Arc<Tenant>)> = all
            .into_iter()
            .map(|(k, t)| (format!("{}/{}", k.org_id, k.uid), t))
            .collect();
        let refs: Vec<(&str, &Arc<Tenant>)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let text = crate::tenant::self_metrics_text(&refs).await;
        Ok(Response::new(pb::CollectMetricsResponse {
            metrics: Some(pb::collect_metrics_response::Payload {
                prometheus: text.into_bytes(),
            }),
        }))
    }
}

/// CheckHealth's verdict: ERROR for an invalid config, an unwritable store, or when
/// every target failed its last scrape; otherwise OK with the targets up and each
/// failing target named with its error, and each target that is up but had samples
/// refused (out of bounds) named with what was refused.
pub fn health_message(
    h: &crate::tenant::TenantHealth,
) -> (pb::check_health_response::HealthStatus, String) {
    use pb::check_health_response::HealthStatus;
    if let Some(e) = &h.config_error {
        return (HealthStatus::Error, format!("Invalid configuration: {e}"));
    }
    if let Some(e) = &h.rules_error {
        return (HealthStatus::Error, format!("Invalid rules: {e}"));
    }
    if let Some(e) = &h.store_error {
        return (HealthStatus::Error, format!("Store is not writable: {e}"));
    }
    let total = h.targets.len();
    if total == 0 {
        return (
            HealthStatus::Ok,
            "Configuration valid; no scrape targets configured (add scrape_configs to the scrape config)".into(),
        );
    }
    let up = h.targets.iter().filter(|t| t.health == Health::Up).count();
    let down: Vec<_> = h
        .targets
        .iter()
        .filter(|t| t.health == Health::Down)
        .collect();
    let waiting = total - up - down.len();
    let mut msg = format!("{up} of {total} targets up");
    if waiting > 0 {
        msg.push_str(&format!(", {waiting} not scraped yet"));
    }
    for t in &down {
        msg.push_str(&format!("; {} failed: {}", t.url, t.last_error));
    }
    for t in h
        .targets
        .iter()
        .filter(|t| t.health == Health::Up && !t.last_error.is_empty())
    {
        msg.push_str(&format!("; {} up with errors: {}", t.url, t.last_error));
    }
    let status = if down.len() == total {
        HealthStatus::Error
    } else {
        HealthStatus::Ok
    };
    (status, msg)
}

#[tonic::async_trait]
impl pb::resource_server::Resource for Plugin {
    type CallResourceStream = BoxStream<pb::CallResourceResponse>;

    async fn call_resource(
        &self,
        req: Request<pb::CallResourceRequest>,
    ) -> Result<Response<Self::CallResourceStream>, Status> {
        let req = req.into_inner();
        let tenant = self.tenant(req.plugin_context.as_ref()).await?;
        let query = req.url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let content_type = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .and_then(|(_, v)| v.values.first())
            .map(String::as_str);
        // The frontend asks for a cacheable answer with `X-Grafana-Cache: <Cache-Control>`.
        let cache = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-grafana-cache"))
            .and_then(|(_, v)| v.values.first())
            .filter(|v| !v.is_empty())
            .cloned();
        let ctx = req.plugin_context.as_ref();
        let access =
            Access::from_grafana_role(ctx.and_then(|c| c.user.as_ref()).map(|u| u.role.as_str()));
        let resp = if req.path.trim_matches('/') == "tenant"
            && req.method.eq_ignore_ascii_case("DELETE")
        {
            catch_panic(self.delete_tenant(ctx, access))
                .await
                .unwrap_or_else(|msg| {
                    ApiResponse::error(500, "internal", &format!("internal error: {msg}"))
                })
        } else {
            api::handle(
                &tenant,
                &self.engine,
                access,
                ApiRequest {
                    method: &req.method,
                    path: &req.path,
                    query,
                    body: &req.body,
                    content_type,
                },
            )
            .await
        };
        let mut headers = HashMap::new();
        headers.insert(
            "Content-Type".to_string(),
            pb::StringList {
                values: vec![resp.content_type.to_string()],
            },
        );
        // As promlib's resource calls: Grafana then lets the browser cache the answer.
        if let Some(cache_control) = cache {
            headers.insert(
                "X-Grafana-Cache".to_string(),
                pb::StringList {
                    values: vec!["y".to_string()],
                },
            );
            headers.insert(
                "Cache-Control".to_string(),
                pb::StringList {
                    values: vec![cache_control],
                },
            );
        }
        let out = pb::CallResourceResponse {
            code: resp.status as i32,
            headers,
            body: resp.body,
        };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(out)))))
    }
}

impl Plugin {
    /// `DELETE tenant`: an Admin removes the datasource's data and stops its scraping.
    async fn delete_tenant(&self, ctx: Option<&pb::PluginContext>, access: Access) -> ApiResponse {
        if access < Access::Admin {
            return ApiResponse::error(
                403,
                "forbidden",
                "deleting a datasource's data requires an Admin of the organization",
            );
        }
        let key = ctx
            .and_then(|c| {
                c.data_source_instance_settings
                    .as_ref()
                    .map(|ds| (c.org_id, ds.uid.clone()))
            })
            .ok_or_else(|| "request is not addressed to a datasource".to_string())
            .and_then(|(org, uid)| TenantKey::new(org, &uid));
        let result = match key {
            Ok(k) => self.tenants.delete(&k).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => ApiResponse::json_value(
                200,
                serde_json::json!({"status": "success", "data": {"deleted": true}}),
            ),
            Err(e) => ApiResponse::error(500, "internal", &e),
        }
    }
}

#[tonic::async_trait]
impl goplugin::grpc_controller_server::GrpcController for Plugin {
    async fn shutdown(
        &self,
        _req: Request<goplugin::Empty>,
    ) -> Result<Response<goplugin::Empty>, Status> {
        tracing::info!("Grafana asked the plugin to shut down");
        let _ = self.shutdown.send(true);
        Ok(Response::new(goplugin::Empty {}))
    }
}

/// go-plugin's broker: the plugin never dials back, so the stream just stays open.
#[tonic::async_trait]
impl goplugin::grpc_broker_server::GrpcBroker for Plugin {
    type StartStreamStream = BoxStream<goplugin::ConnInfo>;

    async fn start_stream(
        &self,
        _req: Request<Streaming<goplugin::ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        Ok(Response::new(until_shutdown(self.shutdown.subscribe())))
    }
}

/// go-plugin's stdio forwarding: logs go to stderr directly, so nothing is sent.
#[tonic::async_trait]
impl goplugin::grpc_stdio_server::GrpcStdio for Plugin {
    type StreamStdioStream = BoxStream<goplugin::StdioData>;

    async fn stream_stdio(
        &self,
        _req: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(until_shutdown(self.shutdown.subscribe())))
    }
}

/// A stream that yields nothing and ends when the plugin shuts down.
fn until_shutdown<T: Send + 'static>(rx: watch::Receiver<bool>) -> BoxStream<T> {
    use tokio_stream::StreamExt;
    Box::pin(
        tokio_stream::wrappers::WatchStream::new(rx)
            .take_while(|stopping| !*stopping)
            .filter_map(|_| None),
    )
}

/// The standard gRPC health service; go-plugin checks the service name `plugin`.
#[tonic::async_trait]
impl grpc_health::health_server::Health for Plugin {
    async fn check(
        &self,
        req: Request<grpc_health::HealthCheckRequest>,
    ) -> Result<Response<grpc_health::HealthCheckResponse>, Status> {
        use grpc_health::health_check_response::ServingStatus;
        let service = req.into_inner().service;
        if !service.is_empty() && service != "plugin" {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        Ok(Response::new(grpc_health::HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _req: Request<grpc_health::HealthListRequest>,
    ) -> Result<Response<grpc_health::HealthListResponse>, Status> {
        use grpc_health::health_check_response::ServingStatus;
        let mut statuses = HashMap::new();
        statuses.insert(
            "plugin".to_string(),
            grpc_health::HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            },
        );
        Ok(Response::new(grpc_health::HealthListResponse { statuses }))
    }

    type WatchStream = BoxStream<grpc_health::HealthCheckResponse>;

    async fn watch(
        &self,
        _req: Request<grpc_health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "health watch is not supported; use Check",
        ))
    }
}
