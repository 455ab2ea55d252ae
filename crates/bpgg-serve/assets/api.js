// The studio's only way to the service: its public /v1 API (whatever the studio does, curl can
// do). Errors carry the service's own message ({"error": "..."}).

const TOKEN_KEY = 'bpgg-token';

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

let tokenPrompt = null;
// One question at a time: concurrent 401s wait for the same answer.
let pendingPrompt = null;

/** Installs the function asked for a token when the service answers 401 (returns a promise). */
export function onTokenNeeded(prompt) {
  tokenPrompt = prompt;
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = { ...extra };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === 'string') message = body.error;
  } catch {
    // Not JSON: keep the status line.
  }
  const retry = Number(response.headers.get('Retry-After'));
  return new ApiError(response.status, message, Number.isFinite(retry) && retry > 0 ? retry : null);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One request. `json` is sent as JSON, `body` as is (a File or Blob); the answer is read as
 * `as` ('json', 'blob', 'arrayBuffer', 'response' or 'none'). A 401 asks for a token and tries
 * again; a 503 with Retry-After (queue full) waits and tries again, up to 5 times.
 */
export async function request(method, path, { json, body, as = 'json', query } = {}) {
  let url = path;
  if (query) url += `?${new URLSearchParams(query)}`;
  for (let attempt = 0; ; attempt++) {
    const init = { method, headers: headers() };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.headers['Content-Type'] = body.type || 'application/octet-stream';
      init.body = body;
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, `the service did not answer (${e.message}): is bpgg serve still running?`);
    }
    if (response.ok) {
      if (as === 'none' || response.status === 204) {
        // Read to the end all the same: an unread answer stays open in the browser until the
        // page goes away, and is then cancelled.
        await response.arrayBuffer();
        return null;
      }
      if (as === 'response') return response;
      return response[as]();
    }
    const error = await errorOf(response);
    if (error.status === 401 && tokenPrompt && attempt < 3) {
      pendingPrompt ??= tokenPrompt(attempt > 0 ? error.message : '').finally(() => {
        pendingPrompt = null;
      });
      await pendingPrompt;
      continue;
    }
    if (error.status === 503 && error.retryAfter && attempt < 5) {
      await sleep(error.retryAfter * 1000);
      continue;
    }
    throw error;
  }
}

const enc = encodeURIComponent;

export const api = {
  info: () => request('GET', '/v1/info'),
  projects: () => request('GET', '/v1/projects'),
  project: (id) => request('GET', `/v1/projects/${enc(id)}`),
  createProject: (name) => request('POST', '/v1/projects', { json: { name } }),
  renameProject: (id, name) => request('PATCH', `/v1/projects/${enc(id)}`, { json: { name } }),
  deleteProject: (id) => request('DELETE', `/v1/projects/${enc(id)}`, { as: 'none' }),
  images: (id) => request('GET', `/v1/projects/${enc(id)}/images`),
  upload: (id, role, file) =>
    request('POST', `/v1/projects/${enc(id)}/images`, { query: { role }, body: file }),
  imageBlob: (id, image) => request('GET', `/v1/projects/${enc(id)}/images/${enc(image)}`, { as: 'blob' }),
  setRole: (id, image, role) =>
    request('PATCH', `/v1/projects/${enc(id)}/images/${enc(image)}`, { json: { role } }),
  deleteImage: (id, image) =>
    request('DELETE', `/v1/projects/${enc(id)}/images/${enc(image)}`, { as: 'none' }),
  maskBlob: (id, image) =>
    request('GET', `/v1/projects/${enc(id)}/images/${enc(image)}/mask`, { as: 'blob' }),
  putMask: (id, image, png) =>
    request('PUT', `/v1/projects/${enc(id)}/images/${enc(image)}/mask`, { body: png }),
  fit: (id, options) => request('POST', `/v1/projects/${enc(id)}/fit`, { json: options }),
  modelBlob: (id) => request('GET', `/v1/projects/${enc(id)}/model`, { as: 'blob' }),
  /** The float map of one image (raw float32) and the numbers from the headers. */
  async predictMap(id, file) {
    const response = await request('POST', `/v1/projects/${enc(id)}/predict`, {
      query: { output: 'map', format: 'f32' },
      body: file,
      as: 'response',
    });
    const h = (name) => response.headers.get(name);
    const width = Number(h('X-Map-Width'));
    const height = Number(h('X-Map-Height'));
    const data = new Float32Array(await response.arrayBuffer());
    if (!(width > 0 && height > 0) || data.length !== width * height) {
      throw new ApiError(0, `the map of ${file.name} has ${data.length} values, not ${width}×${height}`);
    }
    return {
      width,
      height,
      data,
      score: Number(h('X-Image-Score')),
      threshold: Number(h('X-Threshold')),
      // The image score's threshold (what X-Defective is judged at); absent from older services.
      imageThreshold: h('X-Image-Threshold') === null ? null : Number(h('X-Image-Threshold')),
      model: h('X-Model-Sha256'),
    };
  },
};
