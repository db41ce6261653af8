import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelsFile, ModelsFileError, parseModelsFile } from '../../../adapters/inference/models-file';

const yamlFile = `
models:
  - id: llama-3.1-8b
    maxOutputTokens: 4096
    operations: [chat, completion]
    upstreams:
      - baseUrl: http://10.0.0.5:8000/v1/
        capacity: 32
        apiKey: sk-upstream
        upstreamModel: meta-llama/Llama-3.1-8B-Instruct
      - baseUrl: http://10.0.0.6:8000/v1
        capacity: 16
  - id: bge-m3
    maxOutputTokens: 1
    operations: [embedding]
    upstreams: [{ baseUrl: "https://embed.internal/v1", capacity: 64 }]
`;

function expectError(text: string, format: 'json' | 'yaml', ...fragments: string[]) {
  try {
    parseModelsFile(text, format, 'models.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(ModelsFileError);
    for (const fragment of fragments) expect((error as Error).message).toContain(fragment);
    return;
  }
  throw new Error('expected the models file to be refused');
}

test('a YAML models file is parsed, and trailing slashes are dropped from base URLs', () => {
  const file = parseModelsFile(yamlFile, 'yaml');
  expect(file.models.map((m) => m.id)).toEqual(['llama-3.1-8b', 'bge-m3']);
  expect(file.models[0]!.upstreams[0]).toEqual({
    baseUrl: 'http://10.0.0.5:8000/v1',
    capacity: 32,
    apiKey: 'sk-upstream',
    upstreamModel: 'meta-llama/Llama-3.1-8B-Instruct',
  });
});

test('JSON and YAML files are read from disk by extension', () => {
  const dir = mkdtempSync(join(tmpdir(), 'models-'));
  const asJson = join(dir, 'models.json');
  const asYaml = join(dir, 'models.yml');
  const parsed = parseModelsFile(yamlFile, 'yaml');
  writeFileSync(asJson, JSON.stringify(parsed));
  writeFileSync(asYaml, yamlFile);
  expect(loadModelsFile(asJson)).toEqual(parsed);
  expect(loadModelsFile(asYaml)).toEqual(parsed);
  expect(() => loadModelsFile(join(dir, 'missing.yaml'))).toThrow(/cannot read the models file \(ENOENT\)/);
});

test('errors name the field that is wrong', () => {
  expectError(yamlFile.replace('capacity: 32', 'capacity: 0'), 'yaml', 'models.yaml is invalid', 'models[0].upstreams[0].capacity');
  expectError(yamlFile.replace('http://10.0.0.6:8000/v1', 'ftp://x/v1'), 'yaml', 'models[0].upstreams[1].baseUrl', 'http');
  expectError(yamlFile.replace('[chat, completion]', '[chat, images]'), 'yaml', 'models[0].operations[1]');
  expectError(yamlFile.replace('maxOutputTokens: 4096', 'maxOutputTokens: "lots"'), 'yaml', 'models[0].maxOutputTokens');
  expectError(
    yamlFile.replace('upstreams: [{ baseUrl: "https://embed.internal/v1", capacity: 64 }]', 'upstreams: []'),
    'yaml',
    'models[1].upstreams',
    'at least one upstream',
  );
  expectError('{"models": []}', 'json', 'models: at least one model');
  expectError(yamlFile.replace('http://10.0.0.6:8000/v1', 'not a url'), 'yaml', 'models[0].upstreams[1].baseUrl: an http(s) URL');
  expectError(yamlFile.replace('http://10.0.0.6:8000/v1', 'http://u:pw@10.0.0.6/v1'), 'yaml', 'models[0].upstreams[1].baseUrl', 'use apiKey');
});

test('an unknown key is refused rather than ignored (a typo must not silently drop a setting)', () => {
  expectError(yamlFile.replace('capacity: 16', 'capacity: 16\n        apikey: typo'), 'yaml', 'models[0].upstreams[1]', 'apikey');
});

test('a model id may appear only once', () => {
  expectError(yamlFile.replace('id: bge-m3', 'id: llama-3.1-8b'), 'yaml', 'models[1].id', 'duplicate model id');
});

test('text that is not JSON or YAML is refused with the format named', () => {
  expectError('{"models": [', 'json', 'not valid JSON');
  expectError('models: [\n  - : :', 'yaml', 'not valid YAML');
});

test('an API key never appears in a validation error', () => {
  expectError(yamlFile.replace('capacity: 32', 'capacity: -1'), 'yaml', 'capacity');
  try {
    parseModelsFile(yamlFile.replace('capacity: 32', 'capacity: -1'), 'yaml');
  } catch (error) {
    expect((error as Error).message).not.toContain('sk-upstream');
  }
});
