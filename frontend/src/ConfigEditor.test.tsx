import React, { useState } from 'react';
import { DataSourceSettings } from '@grafana/data';
import { BackendSrv, setBackendSrv } from '@grafana/runtime';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import { ConfigEditor } from './ConfigEditor';
import { Options, SecureOptions } from './types';

type Settings = DataSourceSettings<Options, SecureOptions>;

function settings(overrides: Partial<Settings> = {}): Settings {
  return {
    id: 1,
    uid: 'arrowmon',
    orgId: 1,
    name: 'arrowmon',
    type: 'arrowmon-metrics-datasource',
    typeName: 'arrowmon',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    withCredentials: false,
    readOnly: false,
    version: 1,
    jsonData: {
      scrapeConfig: 'scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [localhost:9100]\n',
      timeInterval: '15s',
    },
    secureJsonFields: {},
    ...overrides,
  };
}

const RESOURCES = '/api/datasources/uid/arrowmon/resources/';

/**
 * A getBackendSrv() stand-in: `get`/`post` answer per resource path; a function
 * answer is called, a thrown value is what getBackendSrv rejects with (FetchError-like).
 */
function fakeBackend(routes: Record<string, unknown>) {
  const answer = async (url: string, arg: unknown) => {
    const path = url.startsWith(RESOURCES) ? url.slice(RESOURCES.length) : url;
    const route = routes[path];
    if (route === undefined) {
      throw { status: 404, data: { status: 'error', errorType: 'not_found', error: `unknown API path /${path}` } };
    }
    return typeof route === 'function' ? route(arg) : route;
  };
  const backend = {
    get: vi.fn((url: string, params?: unknown) => answer(url, params)),
    post: vi.fn((url: string, data?: unknown) => answer(url, data)),
  };
  setBackendSrv(backend as unknown as BackendSrv);
  return backend;
}

const NO_TARGETS = { status: 'success', data: { activeTargets: [], droppedTargets: [] } };

beforeEach(() => {
  fakeBackend({ 'api/v1/targets': NO_TARGETS, validate: { valid: true, targets: 0 } });
});

/** Renders the editor the way Grafana does: options come back in through props. */
function setup(initial: Settings) {
  const changes: Settings[] = [];
  const onChange = vi.fn((o: Settings) => changes.push(o));
  function Host() {
    const [options, setOptions] = useState(initial);
    return (
      <ConfigEditor
        options={options}
        onOptionsChange={(o) => {
          onChange(o);
          setOptions(o);
        }}
      />
    );
  }
  render(<Host />);
  return { onChange, changes, last: () => changes[changes.length - 1] };
}

describe('ConfigEditor secrets', () => {
  it('writes an added secret to secureJsonData only, never to jsonData', () => {
    const initial = settings();
    const { changes, last } = setup(initial);
    fireEvent.change(screen.getByLabelText(/^New secret/), { target: { value: 'bearerToken' } });
    fireEvent.change(screen.getByLabelText(/^Value/), { target: { value: 's3cr3t-token' } });
    fireEvent.click(screen.getByRole('button', { name: /Add secret/ }));

    expect(last().secureJsonData).toEqual({ bearerToken: 's3cr3t-token' });
    expect(last().jsonData).toEqual(initial.jsonData);
    for (const change of changes) {
      expect(JSON.stringify(change.jsonData)).not.toContain('s3cr3t-token');
      expect(JSON.stringify(change.jsonData)).not.toContain('bearerToken');
    }
    // The new secret now has its own row, and the add form is cleared.
    expect((screen.getByLabelText(/^bearerToken/) as HTMLInputElement).value).toBe('s3cr3t-token');
    expect((screen.getByLabelText(/^New secret/) as HTMLInputElement).value).toBe('');
  });

  it('edits the value of a secret referenced by the scrape config in secureJsonData', () => {
    const initial = settings({
      jsonData: { scrapeConfig: 'scrape_configs:\n  - job_name: x\n    bearer_token: ${secure.bearerToken}\n' },
    });
    const { last } = setup(initial);
    // Referenced but not set: shown with an error.
    expect(screen.getByText(/uses \$\{secure\.bearerToken\} but it has no value/)).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/^bearerToken/), { target: { value: 'abc' } });
    expect(last().secureJsonData).toEqual({ bearerToken: 'abc' });
    expect(last().jsonData).toEqual(initial.jsonData);
    expect(screen.queryByText(/but it has no value/)).toBeNull();
  });

  it('shows a saved secret as configured and resets it like SecretInput', () => {
    const { last } = setup(settings({ secureJsonFields: { basicAuthPassword: true } }));
    const input = screen.getByLabelText(/^basicAuthPassword/) as HTMLInputElement;
    expect(input.value).toBe('configured');
    expect(input.disabled).toBe(true);

    fireEvent.click(screen.getByRole('button', { name: 'Reset' }));
    expect(last().secureJsonFields).toEqual({ basicAuthPassword: false });
    expect(last().secureJsonData).toEqual({ basicAuthPassword: '' });
    expect(last().jsonData).toEqual(settings().jsonData);

    // After the reset the field takes a new value.
    const fresh = screen.getByLabelText(/^basicAuthPassword/) as HTMLInputElement;
    expect(fresh.disabled).toBe(false);
    fireEvent.change(fresh, { target: { value: 'new-pass' } });
    expect(last().secureJsonData).toEqual({ basicAuthPassword: 'new-pass' });
  });

  it('rejects invalid and duplicate secret names', () => {
    const { onChange } = setup(settings({ secureJsonFields: { bearerToken: true } }));
    const add = screen.getByRole('button', { name: /Add secret/ }) as HTMLButtonElement;
    fireEvent.change(screen.getByLabelText(/^Value/), { target: { value: 'x' } });

    fireEvent.change(screen.getByLabelText(/^New secret/), { target: { value: 'bad name' } });
    expect(screen.getByText(/Use letters, digits and _/)).toBeTruthy();
    expect(add.disabled).toBe(true);

    fireEvent.change(screen.getByLabelText(/^New secret/), { target: { value: 'bearerToken' } });
    expect(screen.getByText(/already exists/)).toBeTruthy();
    fireEvent.click(add);
    expect(onChange).not.toHaveBeenCalled();
  });

  it('removes an unsaved secret', () => {
    const { last } = setup(settings({ secureJsonData: { tmp: 'v' } }));
    fireEvent.click(screen.getByRole('button', { name: 'Remove secret tmp' }));
    expect(last().secureJsonData).toEqual({});
    expect(screen.queryByLabelText(/^tmp/)).toBeNull();
  });
});

describe('ConfigEditor scrape interval', () => {
  const yaml = 'global:\n  scrape_interval: 30s # every target\nscrape_configs: []\n';

  it('suggests global.scrape_interval when the scrape interval is empty', () => {
    setup(settings({ jsonData: { scrapeConfig: yaml, timeInterval: '' } }));
    const input = screen.getByLabelText(/^Scrape interval/) as HTMLInputElement;
    expect(input.placeholder).toBe('30s');
    expect(screen.getByTestId('arrowmon-interval-suggestion').textContent).toContain('30s');
    expect(screen.queryByText(/differs from the scrape config/)).toBeNull();
  });

  it('warns when the scrape interval differs from global.scrape_interval', () => {
    setup(settings({ jsonData: { scrapeConfig: yaml, timeInterval: '15s' } }));
    expect(screen.getByText(/differs from the scrape config/)).toBeTruthy();
    expect(screen.queryByTestId('arrowmon-interval-suggestion')).toBeNull();
  });

  it('does not warn when both are the same duration', () => {
    setup(settings({ jsonData: { scrapeConfig: 'global:\n  scrape_interval: 1m\n', timeInterval: '60s' } }));
    expect(screen.queryByText(/differs from the scrape config/)).toBeNull();
  });

  it('warning follows edits of the scrape interval', () => {
    const { last } = setup(settings({ jsonData: { scrapeConfig: yaml, timeInterval: '' } }));
    const input = screen.getByLabelText(/^Scrape interval/);
    fireEvent.change(input, { target: { value: '10s' } });
    expect(last().jsonData.timeInterval).toBe('10s');
    expect(screen.getByText(/differs from the scrape config/)).toBeTruthy();
    fireEvent.change(input, { target: { value: '30s' } });
    expect(screen.queryByText(/differs from the scrape config/)).toBeNull();
  });

  it('falls back to a 15s placeholder without a global section', () => {
    setup(settings({ jsonData: { scrapeConfig: 'scrape_configs: []\n', timeInterval: '' } }));
    expect((screen.getByLabelText(/^Scrape interval/) as HTMLInputElement).placeholder).toBe('15s');
    expect(screen.queryByTestId('arrowmon-interval-suggestion')).toBeNull();
  });
});

describe('ConfigEditor scrape config validation', () => {
  const yaml = [
    'global:',
    '  scrape_interval: 15s',
    'scrape_configs:',
    '  - job_name: node',
    '    static_configs:',
    '      - targets: [localhost:9100',
    '  - job_name: mysql',
  ].join('\n');

  it('validates on blur and shows the error at its line', async () => {
    const backend = fakeBackend({
      'api/v1/targets': NO_TARGETS,
      validate: {
        valid: false,
        error: 'did not find expected \',\' or \']\'',
        line: 6,
        column: 18,
      },
    });
    setup(settings({ jsonData: { scrapeConfig: yaml } }));
    fireEvent.blur(screen.getByLabelText(/^Scrape config/));

    const message = await screen.findByTestId('arrowmon-validation-error');
    expect(message.textContent).toBe("line 6, column 18: did not find expected ',' or ']'");
    expect(backend.post).toHaveBeenCalledWith(`${RESOURCES}validate`, { scrapeConfig: yaml }, { showErrorAlert: false });
    // The excerpt marks line 6, with the lines around it.
    expect(screen.getByTestId('arrowmon-error-line').textContent).toBe('> 6 |       - targets: [localhost:9100');
    const excerpt = screen.getByTestId('arrowmon-error-excerpt').textContent ?? '';
    expect(excerpt).toContain('4 |   - job_name: node');
    expect(excerpt).toContain('7 |   - job_name: mysql');
    expect(screen.getByText('Scrape config is invalid')).toBeTruthy();
  });

  it('shows "line N: message" without a column, and selects the line on request', async () => {
    fakeBackend({
      'api/v1/targets': NO_TARGETS,
      validate: { valid: false, error: 'scrape_configs[1]: job_name "node" is used twice', line: 4, column: null },
    });
    setup(settings({ jsonData: { scrapeConfig: yaml } }));
    fireEvent.click(screen.getByRole('button', { name: /Validate scrape config/ }));
    expect((await screen.findByTestId('arrowmon-validation-error')).textContent).toBe(
      'line 4: scrape_configs[1]: job_name "node" is used twice'
    );
    fireEvent.click(screen.getByRole('button', { name: 'Show line 4' }));
    const textarea = screen.getByLabelText(/^Scrape config/, { selector: 'textarea' }) as HTMLTextAreaElement;
    expect(textarea.value.slice(textarea.selectionStart, textarea.selectionEnd)).toBe('  - job_name: node');
  });

  it('shows an error without a position as it is', async () => {
    fakeBackend({
      'api/v1/targets': NO_TARGETS,
      validate: { valid: false, error: 'secret ${secure.token} is not set', line: null, column: null },
    });
    setup(settings());
    fireEvent.click(screen.getByRole('button', { name: /Validate scrape config/ }));
    expect((await screen.findByTestId('arrowmon-validation-error')).textContent).toBe(
      'secret ${secure.token} is not set'
    );
    expect(screen.queryByTestId('arrowmon-error-excerpt')).toBeNull();
  });

  it('reports a valid config with its target count and clears an old error', async () => {
    let answer: unknown = { valid: false, error: 'bad', line: 1, column: 1 };
    fakeBackend({ 'api/v1/targets': NO_TARGETS, validate: () => answer });
    setup(settings());
    const textarea = screen.getByLabelText(/^Scrape config/, { selector: 'textarea' });
    fireEvent.blur(textarea);
    await screen.findByTestId('arrowmon-validation-error');
    answer = { valid: true, targets: 2 };
    fireEvent.blur(textarea);
    expect((await screen.findByTestId('arrowmon-validation-ok')).textContent).toBe('Scrape config is valid: 2 targets.');
    expect(screen.queryByTestId('arrowmon-validation-error')).toBeNull();
  });

  it('tells a Viewer that only Editors and Admins can validate', async () => {
    fakeBackend({
      'api/v1/targets': NO_TARGETS,
      validate: () => {
        throw {
          status: 403,
          data: { status: 'error', errorType: 'forbidden', error: 'this resource requires an Editor or Admin of the organization' },
        };
      },
    });
    setup(settings());
    fireEvent.click(screen.getByRole('button', { name: /Validate scrape config/ }));
    expect(await screen.findByText(/Only Editors and Admins of this organization can validate/)).toBeTruthy();
  });
});

describe('ConfigEditor settings', () => {
  it('writes the query limits to jsonData, and checks them', () => {
    const { last } = setup(settings());
    fireEvent.change(screen.getByLabelText(/^Max concurrent queries/), { target: { value: '8' } });
    expect(last().jsonData.maxConcurrentQueries).toBe(8);
    fireEvent.change(screen.getByLabelText(/^Max query memory/), { target: { value: '2GB' } });
    expect(last().jsonData.maxQueryMemory).toBe('2GB');
    expect(screen.queryByText(/Use a/)).toBeNull();

    fireEvent.change(screen.getByLabelText(/^Max concurrent queries/), { target: { value: '0' } });
    expect(screen.getByText('Use a number from 1 to 10000.')).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/^Max concurrent queries/), { target: { value: 'many' } });
    expect(last().jsonData.maxConcurrentQueries).toBe('many');
    expect(screen.getByText('Use a number from 1 to 10000.')).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/^Max query memory/), { target: { value: '1.5GB' } });
    expect(screen.getByText('Use a size such as 512MB or 2GB.')).toBeTruthy();
  });

  it('writes the query timeout and retention to jsonData, and checks their syntax', () => {
    const { last } = setup(settings());
    fireEvent.change(screen.getByLabelText(/^Query timeout/), { target: { value: '2m' } });
    expect(last().jsonData.queryTimeout).toBe('2m');
    fireEvent.change(screen.getByLabelText(/^Retention time/), { target: { value: '30d' } });
    expect(last().jsonData.retentionTime).toBe('30d');
    fireEvent.change(screen.getByLabelText(/^Retention size/), { target: { value: '10GB' } });
    expect(last().jsonData.retentionSize).toBe('10GB');
    expect(screen.queryByText(/Use a/)).toBeNull();

    fireEvent.change(screen.getByLabelText(/^Retention size/), { target: { value: '10 gigs' } });
    expect(screen.getByText('Use a size such as 512MB, 10GB or 1TB.')).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/^Retention time/), { target: { value: 'forever' } });
    expect(screen.getByText('Use a duration such as 15d, 4w or 1y.')).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/^Query timeout/), { target: { value: '60' } });
    expect(screen.getByText('Use a duration such as 30s or 2m.')).toBeTruthy();
  });

  it('shows a legacy `retention` as the retention time and replaces it on edit', () => {
    const { last } = setup(settings({ jsonData: { retention: '7d' } }));
    const input = screen.getByLabelText(/^Retention time/) as HTMLInputElement;
    expect(input.value).toBe('7d');
    fireEvent.change(input, { target: { value: '8d' } });
    expect(last().jsonData).toEqual({ retentionTime: '8d' });
  });

  it('fills the scrape interval from global.scrape_interval on request', () => {
    const { last } = setup(settings({ jsonData: { scrapeConfig: 'global:\n  scrape_interval: 30s\n', timeInterval: '' } }));
    fireEvent.click(screen.getByRole('button', { name: 'Use 30s' }));
    expect(last().jsonData.timeInterval).toBe('30s');
    expect(screen.queryByTestId('arrowmon-interval-suggestion')).toBeNull();
  });
});

describe('ConfigEditor target health', () => {
  const NOW = Date.parse('2025-06-01T12:00:10Z');
  beforeEach(() => {
    vi.spyOn(Date, 'now').mockReturnValue(NOW);
    return () => vi.restoreAllMocks();
  });

  const targets = {
    status: 'success',
    data: {
      activeTargets: [
        {
          labels: { instance: 'localhost:9100', job: 'node', env: 'prod' },
          scrapePool: 'node',
          scrapeUrl: 'http://localhost:9100/metrics',
          health: 'up',
          lastError: '',
          lastScrape: '2025-06-01T12:00:05Z',
          lastScrapeDuration: 0.0123,
        },
        {
          labels: { instance: 'db1:9104', job: 'mysql' },
          scrapePool: 'mysql',
          scrapeUrl: 'http://db1:9104/metrics',
          health: 'down',
          lastError: 'Get "http://db1:9104/metrics": dial tcp: connection refused',
          lastScrape: '2025-06-01T12:00:07.250Z',
          lastScrapeDuration: 1.5,
        },
        {
          labels: { instance: 'db2:9104', job: 'mysql' },
          scrapePool: 'mysql',
          scrapeUrl: 'http://db2:9104/metrics',
          health: 'unknown',
          lastError: '',
          lastScrape: '0001-01-01T00:00:00Z',
          lastScrapeDuration: 0,
        },
      ],
      droppedTargets: [],
    },
  };

  it('lists each target with its health, labels, last scrape and error', async () => {
    const backend = fakeBackend({ 'api/v1/targets': targets });
    setup(settings());
    const table = await screen.findByRole('table', { name: 'Scrape targets' });
    expect(backend.get).toHaveBeenCalledWith(`${RESOURCES}api/v1/targets`, {}, undefined, { showErrorAlert: false });
    expect(screen.getByTestId('arrowmon-targets-summary').textContent).toBe('1 of 3 targets up');
    const rows = within(table)
      .getAllByRole('row')
      .slice(1)
      .map((r) => within(r).getAllByRole('cell').map((c) => c.textContent));
    expect(rows).toEqual([
      ['node', 'http://localhost:9100/metrics', 'up', 'env="prod"', '5s ago', '12.3 ms', ''],
      [
        'mysql',
        'http://db1:9104/metrics',
        'down',
        '',
        '3s ago',
        '1.50 s',
        'Get "http://db1:9104/metrics": dial tcp: connection refused',
      ],
      ['mysql', 'http://db2:9104/metrics', 'unknown', '', 'never', '–', ''],
    ]);
  });

  it('explains a 403 instead of failing', async () => {
    fakeBackend({
      'api/v1/targets': () => {
        throw {
          status: 403,
          statusText: 'Forbidden',
          data: { status: 'error', errorType: 'forbidden', error: 'this resource requires an Editor or Admin of the organization' },
        };
      },
    });
    setup(settings());
    expect(await screen.findByText('Target health is visible to Editors and Admins')).toBeTruthy();
    expect(screen.queryByRole('table')).toBeNull();
  });

  it('shows other errors and reloads on Refresh', async () => {
    let fail = true;
    const backend = fakeBackend({
      'api/v1/targets': () => {
        if (fail) {
          throw { status: 500, data: { status: 'error', errorType: 'internal', error: 'store is closed' } };
        }
        return targets;
      },
    });
    setup(settings());
    expect(await screen.findByText('store is closed')).toBeTruthy();
    fail = false;
    fireEvent.click(screen.getByRole('button', { name: /Refresh/ }));
    expect(await screen.findByRole('table', { name: 'Scrape targets' })).toBeTruthy();
    expect(backend.get).toHaveBeenCalledTimes(2);
  });

  it('reloads when the datasource is saved (new version)', async () => {
    const backend = fakeBackend({ 'api/v1/targets': NO_TARGETS });
    const { rerender } = render(<ConfigEditor options={settings({ version: 1 })} onOptionsChange={() => {}} />);
    await screen.findByText(/No targets/);
    rerender(<ConfigEditor options={settings({ version: 2 })} onOptionsChange={() => {}} />);
    await waitFor(() => expect(backend.get).toHaveBeenCalledTimes(2));
  });

  it('is not shown for a datasource without a uid', () => {
    const backend = fakeBackend({});
    setup(settings({ uid: '' }));
    expect(screen.queryByText('Targets')).toBeNull();
    expect(screen.queryByRole('button', { name: /Validate scrape config/ })).toBeNull();
    expect(backend.get).not.toHaveBeenCalled();
  });
});

describe('ConfigEditor rules', () => {
  const rules = ['groups:', '  - name: g', '    rules:', '      - record: r', '        expr: sum('].join('\n');

  it('writes the rules to jsonData.ruleConfig', () => {
    const { last } = setup(settings());
    fireEvent.change(screen.getByLabelText(/^Rules/, { selector: 'textarea' }), { target: { value: rules } });
    expect(last().jsonData.ruleConfig).toBe(rules);
    expect(last().jsonData.scrapeConfig).toContain('job_name: node');
  });

  it('validates the rules and shows a problem at its line', async () => {
    const backend = fakeBackend({
      'api/v1/targets': NO_TARGETS,
      validate: (body: { ruleConfig?: string }) =>
        body.ruleConfig === rules
          ? { valid: false, error: 'ruleConfig: 5:15: group "g", rule 1, "r": could not parse expression', line: 5, column: 15 }
          : { valid: true, groups: 1, rules: 2 },
    });
    setup(settings({ jsonData: { ruleConfig: rules } }));
    fireEvent.click(screen.getByRole('button', { name: /Validate rules/ }));
    const message = await screen.findByTestId('arrowmon-rules-validation-error');
    expect(message.textContent).toBe('line 5, column 15: ruleConfig: 5:15: group "g", rule 1, "r": could not parse expression');
    expect(backend.post).toHaveBeenCalledWith(`${RESOURCES}validate`, { ruleConfig: rules }, { showErrorAlert: false });
    expect(screen.getByTestId('arrowmon-rules-error-line').textContent).toBe('> 5 |         expr: sum(');
    expect(screen.getByText('Rules are invalid')).toBeTruthy();
    // The scrape config's own validation is not affected.
    expect(screen.queryByTestId('arrowmon-validation-error')).toBeNull();

    fireEvent.change(screen.getByLabelText(/^Rules/, { selector: 'textarea' }), { target: { value: 'groups: []' } });
    fireEvent.blur(screen.getByLabelText(/^Rules/, { selector: 'textarea' }));
    expect((await screen.findByTestId('arrowmon-rules-validation-ok')).textContent).toBe('Rules are valid: 1 group, 2 rules.');
  });
});
