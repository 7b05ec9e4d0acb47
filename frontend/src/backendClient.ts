import { getBackendSrv } from '@grafana/runtime';

import { ResourceClient } from './resources';

/**
 * A ResourceClient for a datasource known only by uid (the config editor gets
 * settings, not a DataSource instance). Same URLs as DataSourceWithBackend uses.
 */
export function resourceClientForUid(uid: string): ResourceClient {
  const base = `/api/datasources/uid/${encodeURIComponent(uid)}/resources/`;
  return {
    getResource: (path, params, options) => getBackendSrv().get(base + path, params, undefined, options),
    postResource: (path, data, options) => getBackendSrv().post(base + path, data, options),
  };
}
