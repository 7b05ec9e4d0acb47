/**
 * Typed access to the backend's resources, which answer in the Prometheus HTTP
 * API's JSON shapes. Everything goes through a `ResourceClient` (the DataSource,
 * or a fake in tests), so no module here talks to getBackendSrv directly.
 */

/** What DataSourceWithBackend offers (getResource / postResource). */
export interface ResourceClient {
  getResource<T = unknown>(path: string, params?: Record<string, unknown>, options?: Record<string, unknown>): Promise<T>;
  postResource<T = unknown>(path: string, data?: unknown, options?: Record<string, unknown>): Promise<T>;
}

/** No Grafana error toast: callers show errors where they belong. */
const QUIET = { showErrorAlert: false };

interface PromEnvelope<T> {
  status: 'success' | 'error';
  data?: T;
  errorType?: string;
  error?: string;
  warnings?: string[];
}

export interface SeriesRange {
  /** Unix seconds. */
  start?: number;
  end?: number;
}

export interface MetricMetadata {
  type: string;
  help: string;
  unit?: string;
}

export type TargetHealth = 'up' | 'down' | 'unknown';

export interface ActiveTarget {
  labels: Record<string, string>;
  scrapePool: string;
  scrapeUrl: string;
  health: TargetHealth;
  lastError: string;
  /** RFC 3339; `0001-01-01T00:00:00Z` when never scraped. */
  lastScrape: string;
  /** Seconds. */
  lastScrapeDuration: number;
  scrapeInterval?: string;
  scrapeTimeout?: string;
}

export type InstantResult =
  | { resultType: 'vector'; result: Array<{ metric: Record<string, string>; value: [number, string] }> }
  | { resultType: 'scalar' | 'string'; result: [number, string] }
  | { resultType: 'matrix'; result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> };

export type ValidateRulesResult =
  | { valid: true; groups: number; rules: number }
  | { valid: false; error: string; line: number | null; column: number | null };

export type ValidateResult =
  | { valid: true; targets: number }
  | { valid: false; error: string; line: number | null; column: number | null };

/** An error from a resource, with the HTTP status when there was one. */
export class ResourceError extends Error {
  constructor(
    message: string,
    readonly status?: number
  ) {
    super(message);
    this.name = 'ResourceError';
  }
}

/**
 * Turns what getBackendSrv rejects with (a FetchError: `{status, data, statusText}`)
 * or a Prometheus error envelope into a ResourceError with a readable message.
 */
export function toResourceError(err: unknown): ResourceError {
  if (err instanceof ResourceError) {
    return err;
  }
  const e = (err ?? {}) as { status?: number; statusText?: string; data?: unknown; message?: string };
  const data = e.data as PromEnvelope<unknown> | { message?: string } | string | undefined;
  let message: string | undefined;
  if (typeof data === 'string' && data.trim() !== '') {
    message = data.trim();
  } else if (data && typeof data === 'object') {
    message = ('error' in data && data.error) || ('message' in data && data.message) || undefined;
  }
  message ??= e.message || e.statusText || (typeof err === 'string' ? err : undefined) || 'request failed';
  return new ResourceError(message, typeof e.status === 'number' ? e.status : undefined);
}

function unwrap<T>(body: PromEnvelope<T> | undefined): T {
  if (!body || typeof body !== 'object') {
    throw new ResourceError('empty response from the datasource');
  }
  if (body.status === 'error') {
    throw new ResourceError(body.error || body.errorType || 'request failed');
  }
  return body.data as T;
}

async function get<T>(client: ResourceClient, path: string, params: Record<string, unknown>): Promise<T> {
  let body: PromEnvelope<T>;
  try {
    body = await client.getResource<PromEnvelope<T>>(path, params, QUIET);
  } catch (err) {
    throw toResourceError(err);
  }
  return unwrap(body);
}

function rangeParams(range: SeriesRange | undefined, match?: string): Record<string, string> {
  const params: Record<string, string> = {};
  if (match !== undefined && match !== '') {
    params['match[]'] = match;
  }
  if (range?.start !== undefined) {
    params.start = String(range.start);
  }
  if (range?.end !== undefined) {
    params.end = String(range.end);
  }
  return params;
}

export function fetchLabelNames(client: ResourceClient, range?: SeriesRange, match?: string): Promise<string[]> {
  return get<string[]>(client, 'api/v1/labels', rangeParams(range, match)).then((d) => d ?? []);
}

export function fetchLabelValues(
  client: ResourceClient,
  label: string,
  range?: SeriesRange,
  match?: string
): Promise<string[]> {
  return get<string[]>(client, `api/v1/label/${encodeURIComponent(label)}/values`, rangeParams(range, match)).then(
    (d) => d ?? []
  );
}

export function fetchSeries(
  client: ResourceClient,
  match: string,
  range?: SeriesRange
): Promise<Array<Record<string, string>>> {
  return get<Array<Record<string, string>>>(client, 'api/v1/series', rangeParams(range, match)).then((d) => d ?? []);
}

export function fetchInstantQuery(client: ResourceClient, query: string, time: number): Promise<InstantResult> {
  return get<InstantResult>(client, 'api/v1/query', { query, time: String(time) });
}

export function fetchMetadata(client: ResourceClient, metric?: string): Promise<Record<string, MetricMetadata[]>> {
  return get<Record<string, MetricMetadata[]>>(client, 'api/v1/metadata', metric ? { metric } : {}).then(
    (d) => d ?? {}
  );
}

export function fetchTargets(client: ResourceClient): Promise<ActiveTarget[]> {
  return get<{ activeTargets?: ActiveTarget[] }>(client, 'api/v1/targets', {}).then((d) => d?.activeTargets ?? []);
}

async function postValidate<T>(client: ResourceClient, body: Record<string, string>): Promise<T> {
  try {
    return await client.postResource<T>('validate', body, QUIET);
  } catch (err) {
    throw toResourceError(err);
  }
}

export function validateScrapeConfig(client: ResourceClient, scrapeConfig: string): Promise<ValidateResult> {
  return postValidate<ValidateResult>(client, { scrapeConfig });
}

export function validateRules(client: ResourceClient, ruleConfig: string): Promise<ValidateRulesResult> {
  return postValidate<ValidateRulesResult>(client, { ruleConfig });
}
