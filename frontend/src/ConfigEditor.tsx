import React, { ChangeEvent, useMemo, useState } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Alert, Button, InlineField, InlineFieldRow, Input, SecretInput } from '@grafana/ui';

import { resourceClientForUid } from './backendClient';
import { parseDurationMs } from './duration';
import { ResourceClient, validateRules, validateScrapeConfig } from './resources';
import { globalScrapeInterval, SECRET_NAME_PATTERN, secureReferences } from './scrapeConfig';
import { TargetsTable } from './TargetsTable';
import { Options, SecureOptions } from './types';
import { YamlCheck, YamlConfigField } from './YamlConfigField';

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

const RULES_PLACEHOLDER = `groups:
  - name: node
    rules:
      - record: instance:node_cpu_utilisation:rate5m
        expr: 1 - avg without (cpu) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
      - alert: HostDown
        expr: up{job="node"} == 0
        for: 5m
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.instance }} is down'`;

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

async function checkScrapeConfig(client: ResourceClient, text: string): Promise<YamlCheck> {
  const r = await validateScrapeConfig(client, text);
  return r.valid ? { valid: true, summary: plural(r.targets, 'target') } : r;
}

async function checkRules(client: ResourceClient, text: string): Promise<YamlCheck> {
  const r = await validateRules(client, text);
  return r.valid ? { valid: true, summary: `${plural(r.groups, 'group')}, ${plural(r.rules, 'rule')}` } : r;
}

/** Prometheus byte sizes (`--storage.tsdb.retention.size`): 512MB, 10GB, 1.5TB. */
export const SIZE_PATTERN = /^\d+(\.\d+)?(B|KB|MB|GB|TB|PB|EB)$/;
/** A whole number of bytes with an optional unit, as the backend reads `maxQueryMemory`. */
export const WHOLE_SIZE_PATTERN = /^\d+(B|KB|MB|GB|TB)?$/;
/** The most `maxConcurrentQueries` the backend accepts. */
export const MAX_CONCURRENT_QUERIES = 10000;

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
      <YamlConfigField
        id="arrowmon-scrape-config"
        label="Scrape config"
        description={
          <span>
            Prometheus <code>scrape_configs</code> YAML (a <code>global:</code> section is allowed). Refer to a
            secret below as <code>{'${secure.NAME}'}</code>.
          </span>
        }
        placeholder={SCRAPE_CONFIG_PLACEHOLDER}
        rows={16}
        value={jsonData.scrapeConfig ?? ''}
        onChange={(v) => setJsonData('scrapeConfig', v)}
        client={client}
        validate={checkScrapeConfig}
        testIdPrefix="arrowmon"
      />

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

      <h3>Rules</h3>
      <YamlConfigField
        id="arrowmon-rule-config"
        label="Rules"
        description={
          <span>
            Recording and alerting rules in Prometheus&apos;s rule file format (<code>groups:</code>), evaluated by this
            datasource. Alerts show in Grafana&apos;s alert list; recorded series are queried like any other.
          </span>
        }
        placeholder={RULES_PLACEHOLDER}
        rows={12}
        value={jsonData.ruleConfig ?? ''}
        onChange={(v) => setJsonData('ruleConfig', v)}
        client={client}
        validate={checkRules}
        testIdPrefix="arrowmon-rules"
      />

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
