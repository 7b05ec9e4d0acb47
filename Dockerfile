# Builds the arrowmon plugin (backend and frontend) and a Grafana image that loads it.
# The build commands are the ones scripts/test.sh and scripts/dist.sh run.

FROM rust:1.95-bookworm AS backend
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY crates crates
COPY benches benches
RUN cargo build --release --bin gpx_arrowmon

FROM node:20-bookworm AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend ./
RUN npm run build

FROM node:20-bookworm AS dist
WORKDIR /src
COPY plugin.json README.md LICENSE ./
COPY scripts/dist.sh scripts/dist.sh
COPY provisioning provisioning
COPY --from=frontend /src/frontend/dist frontend/dist
COPY --from=backend /src/target/release/gpx_arrowmon target/release/gpx_arrowmon
RUN bash scripts/dist.sh --layout-only /dist

# The Ubuntu variant of Grafana's official image: the plugin binary links glibc.
# The plugin goes outside /var/lib/grafana, which the demo keeps in a named volume:
# a plugin copied there would be shadowed by the volume's copy from the first
# `docker compose up`, and `up --build` would silently run the old one.
FROM grafana/grafana:13.2.0-ubuntu
ENV GF_PATHS_PLUGINS=/usr/share/arrowmon/plugins
COPY --from=dist /dist /usr/share/arrowmon/plugins/arrowmon-metrics-datasource
