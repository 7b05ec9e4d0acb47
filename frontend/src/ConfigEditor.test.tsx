import React, { useState } from 'react';
import { DataSourceSettings } from '@grafana/data';
import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';

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
