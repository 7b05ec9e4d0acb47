# `make dist` builds the plugin folder Grafana loads; `make test` runs everything.
.PHONY: dist test frontend

dist:
	bash scripts/dist.sh

frontend:
	cd frontend && npm ci && npm run build

test:
	bash scripts/test.sh
