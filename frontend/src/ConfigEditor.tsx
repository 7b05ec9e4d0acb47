import React, { ChangeEvent, useMemo, useRef, useState } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Alert, Button, Field, InlineField, InlineFieldRow, Input, SecretInput, TextArea, useTheme2 } from '@grafana/ui';

import { resourceClientForUid } from './backendClient';
import { parseDurationMs } from './duration';
import { ResourceClient, validateScrapeConfig } from './resources';
import { globalScrapeInterval, SECRET_NAME_PATTERN, secureReferences } from './scrapeConfig';
import { TargetsTable } from './TargetsTable';
import { Options, SecureOptions } from './types';

type Props = DataSourcePluginOptionsEditorProps<Options, SecureOptions>;

const SCRAPE_CONFIG_PLACEHOLDER = `global:
  scrape_interval: 15s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['localhost:9100']
  - job_name: mysql
    basic_auth:
      username: monitor
      password: \${secure.mysqlPassword}
    static_configs:
      - targets: ['db1:9104', 'db2:9104']`;

/** Prometheus byte sizes (`--storage.tsdb.retention.size`): 512MB, 10GB, 1.5TB. */
export const SIZE_PATTERN = /^\d+(\.\d+)?(B|KB|MB|GB|TB|PB|EB)$/;
/** A whole number of bytes with an optional unit, as the backend reads `maxQueryMemory`. */
export const WHOLE_SIZE_PATTERN = /^\d+(B|KB|MB|GB|TB)?$/;
/** The most `maxConcurrentQueries` the backend accepts. */
export const MAX_CONCURRENT_QUERIES = 10000;

type Validation =
  | { state: 'idle' }
  | { state: 'checking' }
  | { state: 'valid'; targets: number }
  | { state: 'invalid'; error: string; line: number | null; column: number | null; text: string }
  | { state: 'failed'; message: string; forbidden: boolean };

/** `line N: message` (and the column when known), as shown under the scrape config. */
export function formatValidationError(error: string, line: number | null, column: number | null): string {
  if (!line) {
    return error;
  }
  return column ? `line ${line}, column ${column}: ${error}` : `line ${line}: ${error}`;
}

/** Offsets of line `line` (1-based) in `text`, or undefined past the end. */
function lineRange(text: string, line: number): [number, number] | undefined {
  const lines = text.split('\n');
  if (line < 1 || line > lines.length) {
    return undefined;
  }
  let start = 0;
  for (let i = 0; i < line - 1; i++) {
    start += lines[i].length + 1;
  }
  return [start, start + lines[line - 1].length];
}

/** The lines around an error, the error line marked and a caret under its column. */
function ErrorExcerpt({ text, line, column }: { text: string; line: number; column: number | null }) {
  const theme = useTheme2();
  const lines = text.split(/\r?\n/);
  if (line > lines.length) {
    return null;
  }
  const first = Math.max(1, line - 2);
  const last = Math.min(lines.length, line + 1);
  const width = String(last).length;
  const rows: React.ReactNode[] = [];
  for (let n = first; n <= last; n++) {
    const isError = n === line;
    rows.push(
      <div
        key={n}
        data-testid={isError ? 'arrowmon-error-line' : undefined}
        style={isError ? { background: theme.colors.error.transparent } : undefined}
      >
        {isError ? '>' : ' '} {String(n).padStart(width)} | {lines[n - 1]}
      </div>
    );
    if (isError && column) {
      rows.push(
        <div key={`${n}-caret`} aria-hidden style={{ color: theme.colors.error.text }}>
          {' '.repeat(width + 5 + column - 1)}^
        </div>
      );
    }
  }
  return (
    <pre data-testid="arrowmon-error-excerpt" style={{ margin: theme.spacing(1, 0), whiteSpace: 'pre' }}>
      {rows}
    </pre>
  );
}

/** Same duration, or (when either is not a plain duration) the same text. */
function sameInterval(a: string, b: string): boolean {
  const ma = parseDurationMs(a);
  const mb = parseDurationMs(b);
  return ma !== undefined && mb !== undefined ? ma === mb : a.trim() === b.trim();
}

export function ConfigEditor({ options, onOptionsChange }: Props) {
  const jsonData = options.jsonData ?? {};
  const uid = options.uid;
  const client: ResourceClient | undefined = useMemo(() => (uid ? resourceClientForUid(uid) : undefined), [uid]);
  const secureJsonData: SecureOptions = options.secureJsonData ?? {};
  const secureJsonFields = options.secureJsonFields ?? {};

  const setJsonData = (key: keyof Options, value: string) => {
    onOptionsChange({ ...options, jsonData: { ...jsonData, [key]: value } });
  };

  // Scrape config validation by the backend (on blur and with the button).
  const scrapeConfigRef = useRef<HTMLTextAreaElement>(null);
  const [validation, setValidation] = useState<Validation>({ state: 'idle' });
  const validationSeq = useRef(0);
  const validate = (text: string) => {
    if (!client) {
      return;
    }
    const seq = ++validationSeq.current;
    setValidation({ state: 'checking' });
    validateScrapeConfig(client, text)
      .then((r) => {
        if (seq !== validationSeq.current) {
          return;
        }
        setValidation(
          r.valid
            ? { state: 'valid', targets: r.targets }
            : { state: 'invalid', error: r.error, line: r.line ?? null, column: r.column ?? null, text }
        );
      })
      .catch((err) => {
        if (seq === validationSeq.current) {
          setValidation({ state: 'failed', message: err.message, forbidden: err.status === 403 });
        }
      });
  };
  const showLine = (line: number) => {
    const el = scrapeConfigRef.current;
    const range = el ? lineRange(el.value, line) : undefined;
    if (el && range) {
      el.focus();
      el.setSelectionRange(range[0], range[1]);
      // Scroll so the line is visible (about one line-height per line).
      const lineHeight = parseFloat(getComputedStyle(el).lineHeight) || 18;
      el.scrollTop = Math.max(0, (line - 3) * lineHeight);
    }
  };

  const setSecret = (name: string, value: string) => {
    onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, [name]: value } });
  };

  // Same as Grafana's onUpdateDatasourceResetOption / SecretInput reset.
  const resetSecret = (name: string) => {
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, [name]: false },
      secureJsonData: { ...secureJsonData, [name]: '' },
    });
  };

  // Only for secrets that were never saved: they exist solely in this edit session.
  const removeSecret = (name: string) => {
    const { [name]: _removed, ...rest } = secureJsonData;
    onOptionsChange({ ...options, secureJsonData: rest });
  };

  // Scrape interval hints from the scrape config's global section.
  const yamlInterval = globalScrapeInterval(jsonData.scrapeConfig);
  const timeInterval = jsonData.timeInterval ?? '';
  const intervalInvalid = timeInterval.trim() !== '' && parseDurationMs(timeInterval) === undefined;
  const durationInvalid = (v: string | undefined) => !!v?.trim() && parseDurationMs(v) === undefined;
  const queryTimeoutInvalid = durationInvalid(jsonData.queryTimeout);
  const retentionTime = jsonData.retentionTime ?? jsonData.retention ?? '';
  const retentionTimeInvalid = durationInvalid(retentionTime);
  const retentionSizeInvalid = !!jsonData.retentionSize?.trim() && !SIZE_PATTERN.test(jsonData.retentionSize.trim());
  const maxConcurrent = String(jsonData.maxConcurrentQueries ?? '').trim();
  const maxConcurrentInvalid =
    maxConcurrent !== '' &&
    !(/^\d+$/.test(maxConcurrent) && Number(maxConcurrent) >= 1 && Number(maxConcurrent) <= MAX_CONCURRENT_QUERIES);
  const maxMemoryInvalid = !!jsonData.maxQueryMemory?.trim() && !WHOLE_SIZE_PATTERN.test(jsonData.maxQueryMemory.trim());
  const intervalMismatch =
    !!yamlInterval && timeInterval.trim() !== '' && !intervalInvalid && !sameInterval(timeInterval, yamlInterval);

  // Secrets: saved ones, ones added in this session, and ones the scrape config refers to.
  const referenced = secureReferences(jsonData.scrapeConfig);
  const names: string[] = [];
  for (const name of [...Object.keys(secureJsonFields), ...Object.keys(secureJsonData), ...referenced]) {
    if (!names.includes(name)) {
      names.push(name);
    }
  }
  const isSet = (name: string) => !!secureJsonFields[name] || !!secureJsonData[name];

  const [newName, setNewName] = useState('');
  const [newValue, setNewValue] = useState('');
  const trimmedName = newName.trim();
  let newNameError: string | undefined;
  if (trimmedName !== '' && !SECRET_NAME_PATTERN.test(trimmedName)) {
    newNameError = 'Use letters, digits and _ (not starting with a digit).';
  } else if (trimmedName !== '' && names.includes(trimmedName) && isSet(trimmedName)) {
    newNameError = `A secret named ${trimmedName} already exists; reset it to replace the value.`;
  }
  const canAdd = trimmedName !== '' && newValue !== '' && !newNameError;
  const addSecret = () => {
    if (!canAdd) {
      return;
    }
    setSecret(trimmedName, newValue);
    setNewName('');
    setNewValue('');
  };

  return (
    <div>
      <h3>Scraping</h3>
      <Field
        label="Scrape config"
        description={
          <span>
            Prometheus <code>scrape_configs</code> YAML (a <code>global:</code> section is allowed). Refer to a
            secret below as <code>{'${secure.NAME}'}</code>.
          </span>
        }
      >
        <TextArea
          ref={scrapeConfigRef}
          id="arrowmon-scrape-config"
          rows={16}
          spellCheck={false}
          style={{ fontFamily: 'monospace' }}
          invalid={validation.state === 'invalid'}
          value={jsonData.scrapeConfig ?? ''}
          placeholder={SCRAPE_CONFIG_PLACEHOLDER}
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) => {
            if (validation.state === 'valid') {
              setValidation({ state: 'idle' });
            }
            setJsonData('scrapeConfig', e.currentTarget.value);
          }}
          onBlur={(e: React.FocusEvent<HTMLTextAreaElement>) => validate(e.currentTarget.value)}
        />
      </Field>
      {client && (
        <div style={{ marginBottom: 16 }}>
          <Button
            variant="secondary"
            icon={validation.state === 'checking' ? 'spinner' : 'check'}
            disabled={validation.state === 'checking'}
            onClick={() => validate(scrapeConfigRef.current?.value ?? jsonData.scrapeConfig ?? '')}
          >
            Validate scrape config
          </Button>{' '}
          {validation.state === 'valid' && (
            <span data-testid="arrowmon-validation-ok">
              Scrape config is valid: {validation.targets} target{validation.targets === 1 ? '' : 's'}.
            </span>
          )}
        </div>
      )}
      {validation.state === 'invalid' && (
        <Alert severity="error" title="Scrape config is invalid">
          <div data-testid="arrowmon-validation-error">
            {formatValidationError(validation.error, validation.line, validation.column)}
          </div>
          {validation.line !== null && validation.line > 0 && (
            <>
              <ErrorExcerpt text={validation.text} line={validation.line} column={validation.column} />
              <Button size="sm" variant="secondary" fill="outline" onClick={() => showLine(validation.line!)}>
                Show line {validation.line}
              </Button>
            </>
          )}
        </Alert>
      )}
      {validation.state === 'failed' && (
        <Alert severity={validation.forbidden ? 'info' : 'warning'} title="Scrape config not validated">
          {validation.forbidden
            ? 'Only Editors and Admins of this organization can validate the scrape config.'
            : validation.message}
        </Alert>
      )}

      <InlineFieldRow>
        <InlineField
          label="Scrape interval"
          htmlFor="arrowmon-time-interval"
          labelWidth={20}
          tooltip="Default scrape interval; also the lower bound of $__interval and the basis of $__rate_interval."
          invalid={intervalInvalid}
          error={intervalInvalid ? 'Use a duration such as 15s, 1m or 1m30s.' : undefined}
        >
          <Input
            id="arrowmon-time-interval"
            width={16}
            value={timeInterval}
            placeholder={yamlInterval ?? '15s'}
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData('timeInterval', e.currentTarget.value)}
          />
        </InlineField>
        <InlineField
          label="Query timeout"
          htmlFor="arrowmon-query-timeout"
          labelWidth={16}
          tooltip="Longest time a query may run before it fails with a timeout."
          invalid={queryTimeoutInvalid}
          error={queryTimeoutInvalid ? 'Use a duration such as 30s or 2m.' : undefined}
        >
          <Input
            id="arrowmon-query-timeout"
            width={12}
            value={jsonData.queryTimeout ?? ''}
            placeholder="60s"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData('queryTimeout', e.currentTarget.value)}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField
          label="Retention time"
          htmlFor="arrowmon-retention-time"
          labelWidth={20}
          tooltip="How long samples are kept, e.g. 15d (as Prometheus's --storage.tsdb.retention.time)."
          invalid={retentionTimeInvalid}
          error={retentionTimeInvalid ? 'Use a duration such as 15d, 4w or 1y.' : undefined}
        >
          <Input
            id="arrowmon-retention-time"
            width={16}
            value={retentionTime}
            placeholder="15d"
            onChange={(e: ChangeEvent<HTMLInputElement>) => {
              const { retention: _legacy, ...rest } = jsonData;
              onOptionsChange({ ...options, jsonData: { ...rest, retentionTime: e.currentTarget.value } });
            }}
          />
        </InlineField>
        <InlineField
          label="Retention size"
          htmlFor="arrowmon-retention-size"
          labelWidth={16}
          tooltip="Most bytes of sealed blocks kept on disk, e.g. 10GB (as Prometheus's --storage.tsdb.retention.size). Empty: no limit."
          invalid={retentionSizeInvalid}
          error={retentionSizeInvalid ? 'Use a size such as 512MB, 10GB or 1TB.' : undefined}
        >
          <Input
            id="arrowmon-retention-size"
            width={12}
            value={jsonData.retentionSize ?? ''}
            placeholder="no limit"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData('retentionSize', e.currentTarget.value)}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField
          label="Max concurrent queries"
          htmlFor="arrowmon-max-concurrent-queries"
          labelWidth={24}
          tooltip="Most queries evaluated at once (as Prometheus's --query.max-concurrency); more wait in a queue until their timeout. Empty: 20."
          invalid={maxConcurrentInvalid}
          error={maxConcurrentInvalid ? `Use a number from 1 to ${MAX_CONCURRENT_QUERIES}.` : undefined}
        >
          <Input
            id="arrowmon-max-concurrent-queries"
            width={12}
            value={maxConcurrent}
            placeholder="20"
            onChange={(e: ChangeEvent<HTMLInputElement>) => {
              const text = e.currentTarget.value;
              const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : text;
              onOptionsChange({ ...options, jsonData: { ...jsonData, maxConcurrentQueries: value } });
            }}
          />
        </InlineField>
        <InlineField
          label="Max query memory"
          htmlFor="arrowmon-max-query-memory"
          labelWidth={20}
          tooltip="Memory the queries in flight may hold together, e.g. 2GB; one query may hold half of it, and a query that would pass it fails with an error. 0: no limit. Empty: a quarter of the machine's memory."
          invalid={maxMemoryInvalid}
          error={maxMemoryInvalid ? 'Use a size such as 512MB or 2GB.' : undefined}
        >
          <Input
            id="arrowmon-max-query-memory"
            width={12}
            value={jsonData.maxQueryMemory ?? ''}
            placeholder="¼ of memory"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData('maxQueryMemory', e.currentTarget.value)}
          />
        </InlineField>
      </InlineFieldRow>
      {yamlInterval && timeInterval.trim() === '' && (
        <p data-testid="arrowmon-interval-suggestion">
          Scrape interval from the scrape config: <code>{yamlInterval}</code> (<code>global.scrape_interval</code>).{' '}
          <Button size="sm" variant="secondary" fill="outline" onClick={() => setJsonData('timeInterval', yamlInterval)}>
            Use {yamlInterval}
          </Button>
        </p>
      )}
      {intervalMismatch && (
        <Alert severity="warning" title="Scrape interval differs from the scrape config">
          Scrape interval is {timeInterval} but the scrape config&apos;s <code>global.scrape_interval</code> is{' '}
          {yamlInterval}. Targets are scraped every {yamlInterval} unless a job sets its own interval, while{' '}
          <code>$__interval</code> and <code>$__rate_interval</code> are based on {timeInterval}.
        </Alert>
      )}

      <h3>Secrets</h3>
      <p>
        Stored encrypted by Grafana and never sent back to the browser. The scrape config refers to a secret as{' '}
        <code>{'${secure.NAME}'}</code>.
      </p>
      {names.map((name) => {
        const configured = !!secureJsonFields[name];
        const missing = referenced.includes(name) && !isSet(name);
        const unused = !referenced.includes(name);
        return (
          <InlineFieldRow key={name}>
            <InlineField
              label={name}
              htmlFor={`arrowmon-secret-${name}`}
              labelWidth={24}
              invalid={missing}
              error={missing ? `The scrape config uses \${secure.${name}} but it has no value.` : undefined}
              tooltip={unused ? `Not referenced in the scrape config as \${secure.${name}}.` : undefined}
            >
              <SecretInput
                id={`arrowmon-secret-${name}`}
                width={40}
                isConfigured={configured}
                value={secureJsonData[name] ?? ''}
                placeholder="value"
                onChange={(e: ChangeEvent<HTMLInputElement>) => setSecret(name, e.currentTarget.value)}
                onReset={() => resetSecret(name)}
              />
            </InlineField>
            {!(name in secureJsonFields) && name in secureJsonData && !referenced.includes(name) && (
              <Button variant="secondary" fill="text" icon="trash-alt" aria-label={`Remove secret ${name}`}
                onClick={() => removeSecret(name)} />
            )}
          </InlineFieldRow>
        );
      })}
      <InlineFieldRow>
        <InlineField label="New secret" htmlFor="arrowmon-new-secret-name" labelWidth={24}
          invalid={!!newNameError} error={newNameError}>
          <Input
            id="arrowmon-new-secret-name"
            width={24}
            value={newName}
            placeholder="name, e.g. bearerToken"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setNewName(e.currentTarget.value)}
          />
        </InlineField>
        <InlineField label="Value" htmlFor="arrowmon-new-secret-value" labelWidth={8}>
          <Input
            id="arrowmon-new-secret-value"
            type="password"
            autoComplete="new-password"
            width={24}
            value={newValue}
            onChange={(e: ChangeEvent<HTMLInputElement>) => setNewValue(e.currentTarget.value)}
            onKeyDown={(e: React.KeyboardEvent<HTMLInputElement>) => {
              if (e.key === 'Enter') {
                e.preventDefault();
                addSecret();
              }
            }}
          />
        </InlineField>
        <Button variant="secondary" icon="plus" disabled={!canAdd} onClick={addSecret}>
          Add secret
        </Button>
      </InlineFieldRow>

      {client && (
        <>
          <h3>Targets</h3>
          <TargetsTable client={client} reloadKey={options.version} />
        </>
      )}
    </div>
  );
}
