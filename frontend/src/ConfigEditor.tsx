import React, { ChangeEvent, useState } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Alert, Button, Field, InlineField, InlineFieldRow, Input, SecretInput, TextArea } from '@grafana/ui';

import { parseDurationMs } from './duration';
import { globalScrapeInterval, SECRET_NAME_PATTERN, secureReferences } from './scrapeConfig';
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

/** Same duration, or (when either is not a plain duration) the same text. */
function sameInterval(a: string, b: string): boolean {
  const ma = parseDurationMs(a);
  const mb = parseDurationMs(b);
  return ma !== undefined && mb !== undefined ? ma === mb : a.trim() === b.trim();
}

export function ConfigEditor({ options, onOptionsChange }: Props) {
  const jsonData = options.jsonData ?? {};
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
          id="arrowmon-scrape-config"
          rows={16}
          spellCheck={false}
          style={{ fontFamily: 'monospace' }}
          value={jsonData.scrapeConfig ?? ''}
          placeholder={SCRAPE_CONFIG_PLACEHOLDER}
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) => setJsonData('scrapeConfig', e.currentTarget.value)}
        />
      </Field>

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
        <InlineField label="Query timeout" htmlFor="arrowmon-query-timeout" labelWidth={16}>
          <Input
            id="arrowmon-query-timeout"
            width={12}
            value={jsonData.queryTimeout ?? ''}
            placeholder="60s"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData('queryTimeout', e.currentTarget.value)}
          />
        </InlineField>
        <InlineField label="Retention" htmlFor="arrowmon-retention" labelWidth={12}>
          <Input
            id="arrowmon-retention"
            width={12}
            value={jsonData.retention ?? ''}
            placeholder="15d"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData('retention', e.currentTarget.value)}
          />
        </InlineField>
      </InlineFieldRow>
      {yamlInterval && timeInterval.trim() === '' && (
        <p data-testid="arrowmon-interval-suggestion">
          Scrape interval from the scrape config: <code>{yamlInterval}</code> (<code>global.scrape_interval</code>).
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
    </div>
  );
}
