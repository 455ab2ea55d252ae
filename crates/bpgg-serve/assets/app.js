// bpgg studio: projects → examples (defect images with painted masks, good images) → Fit →
// results of new images with a live threshold → correct a result → Fit again. Every call goes
// to the service's public /v1 API (see api.js).

import { api, ApiError, onTokenNeeded, setToken } from './api.js';
import { paintMask } from './painter.js';
import { drawMask, heatLayer, maskImage, range, RAMP_CSS } from './heat.js';
import { decodeImage, download, dropZone, el, formatMs, formatScore, toast } from './ui.js';

const view = document.getElementById('view');
const crumbs = document.getElementById('crumbs');
const PREDICT_CONCURRENCY = 3;

// ---------------------------------------------------------------- token

onTokenNeeded((message) => new Promise((resolve) => {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-error').textContent = message ? `Refused: ${message}` : '';
  input.value = '';
  dialog.onclose = () => {
    setToken(input.value.trim());
    resolve();
  };
  dialog.showModal();
}));

document.getElementById('shortcuts-button').addEventListener('click', () => document.getElementById('shortcuts-dialog').showModal());
window.addEventListener('keydown', (e) => {
  if (e.key === '?' && !(e.target instanceof HTMLInputElement) && !document.querySelector('.modal')) {
    document.getElementById('shortcuts-dialog').showModal();
  }
});

// ---------------------------------------------------------------- file names
// The service stores images by id; the names of the files this browser uploaded are kept here
// so the examples keep a recognisable label.

const NAMES_KEY = 'bpgg-image-names';
const names = (() => {
  try {
    return JSON.parse(localStorage.getItem(NAMES_KEY)) || {};
  } catch {
    return {};
  }
})();
function rememberName(imageId, name) {
  names[imageId] = name;
  try {
    localStorage.setItem(NAMES_KEY, JSON.stringify(names));
  } catch {
    // Storage full or off: the id is shown instead.
  }
}
const labelOf = (image) => names[image.id] || `image ${image.id.slice(0, 8)}`;

// ---------------------------------------------------------------- routing

window.addEventListener('hashchange', route);

function route() {
  const m = location.hash.match(/^#\/p\/([^/]+)$/);
  if (m) showProject(decodeURIComponent(m[1]));
  else showProjects();
}

function fail(where, err) {
  console.warn(where, err);
  toast(`${where}: ${err.message}`, 'error');
}

// ---------------------------------------------------------------- projects

async function showProjects() {
  current = null;
  crumbs.replaceChildren();
  document.title = 'bpgg studio';
  const list = el('div', { class: 'project-list', 'data-testid': 'project-list' }, el('p', { class: 'muted' }, 'Loading…'));
  const name = el('input', { type: 'text', placeholder: 'e.g. Brake disc, line 3', required: true, maxlength: 200, 'aria-label': 'New project name', 'data-testid': 'new-project-name' });
  const form = el('form', { class: 'create', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const p = await api.createProject(name.value.trim());
      location.hash = `#/p/${encodeURIComponent(p.id)}`;
    } catch (err) {
      fail('Could not create the project', err);
    }
  } }, [name, el('button', { type: 'submit', class: 'primary' }, 'Create project')]);
  view.replaceChildren(el('section', { class: 'projects' }, [
    el('h1', {}, 'Projects'),
    el('p', { class: 'lead' }, 'A project is one inspection: a few images of defective parts with the defect painted, a few good parts, and the model fitted on them.'),
    form,
    list,
  ]));
  let projects;
  try {
    projects = await api.projects();
  } catch (err) {
    list.replaceChildren(el('p', { class: 'error' }, `Could not list the projects: ${err.message}`));
    return;
  }
  if (!projects.length) {
    list.replaceChildren(el('p', { class: 'empty' }, 'No projects yet: name your first inspection above.'));
    name.focus();
    return;
  }
  list.replaceChildren(...projects.map(projectCard));
}

function projectCard(p) {
  const fitted = p.model
    ? `fitted ${new Date(p.model.fitted_at * 1000).toLocaleString()} · ${p.model.scoring} · threshold ${formatScore(p.model.threshold)}`
    : 'not fitted yet';
  const unmasked = p.defects - p.masked_defects;
  return el('article', { class: 'card project', 'data-testid': 'project-card' }, [
    el('h2', {}, el('a', { href: `#/p/${encodeURIComponent(p.id)}` }, p.name)),
    el('p', {}, [
      `${p.defects} defect image${p.defects === 1 ? '' : 's'}`,
      unmasked ? el('span', { class: 'flag' }, ` (${unmasked} without mask)`) : '',
      ` · ${p.normals} good image${p.normals === 1 ? '' : 's'}`,
    ]),
    el('p', { class: 'muted' }, fitted),
    el('div', { class: 'row' }, [
      el('a', { class: 'button primary', href: `#/p/${encodeURIComponent(p.id)}` }, 'Open'),
      el('button', { type: 'button', onclick: async () => {
        const n = window.prompt('New name of the project', p.name);
        if (n === null || !n.trim()) return;
        try {
          await api.renameProject(p.id, n.trim());
          showProjects();
        } catch (err) {
          fail('Could not rename the project', err);
        }
      } }, 'Rename'),
      el('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!window.confirm(`Delete the project “${p.name}” with its images, masks and model? This cannot be undone.`)) return;
        try {
          await api.deleteProject(p.id);
          results.delete(p.id);
          showProjects();
        } catch (err) {
          fail('Could not delete the project', err);
        }
      } }, 'Delete'),
    ]),
  ]);
}

// ---------------------------------------------------------------- one project

/** Results (query images) of each project, kept for the session of this page. */
const results = new Map();
let current = null;
let info = null;

async function showProject(id) {
  current = { id, project: null, images: [], thumbs: new Map(), threshold: null, imageThreshold: null, sort: 'score-desc', showHeat: true, pendingExamples: 0 };
  if (!results.has(id)) results.set(id, []);
  view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  try {
    info ??= await api.info();
    await reloadProject();
  } catch (err) {
    view.replaceChildren(el('p', { class: 'error' }, err.status === 404 ? 'This project does not exist (any more).' : `Could not open the project: ${err.message}`), el('p', {}, el('a', { href: '#/' }, 'All projects')));
    return;
  }
  const model = current.project.model;
  ({ pixel: current.threshold, image: current.imageThreshold } = modelThresholds(model));
  buildProject();
  renderExamples();
  renderFitStatus();
  renderResults(true);
}

async function reloadProject() {
  const { id } = current;
  const [project, images] = await Promise.all([api.project(id), api.images(id)]);
  current.project = project;
  current.images = images;
  crumbs.replaceChildren(el('a', { href: '#/' }, 'Projects'), ' / ', el('span', {}, project.name));
  document.title = `${project.name} · bpgg studio`;
}

const $ = (sel) => view.querySelector(sel);

/**
 * A model's two thresholds: `pixel` on the map (the masks) and `image` on the image score (the
 * verdict). A model that has no image threshold of its own judges images at the pixel one.
 */
function modelThresholds(summary) {
  if (!summary) return { pixel: null, image: null };
  const image = summary.image_threshold ?? current?.servedImageThreshold?.[summary.model_sha256];
  return { pixel: summary.threshold, image: image ?? summary.threshold };
}

function buildProject() {
  const id = current.id;
  const defaults = info.model_defaults;
  const scoring = el('select', { id: 'opt-scoring', 'data-testid': 'opt-scoring' }, [
    el('option', { value: 'auto' }, 'auto (from the examples)'),
    el('option', { value: 'hybrid' }, 'hybrid (defect + good)'),
    el('option', { value: 'bpgg' }, 'bpgg (defects only)'),
    el('option', { value: 'knn' }, 'knn (good only)'),
  ]);
  scoring.value = current.project.model?.config?.scoring ?? defaults.scoring ?? 'auto';
  const size = el('input', { id: 'opt-size', type: 'number', min: 32, max: 2048, step: 32, value: sideOf(current.project.model?.config?.size ?? defaults.size), 'data-testid': 'opt-size' });
  const checkpoint = el('select', { id: 'opt-checkpoint' }, [
    el('option', { value: '' }, 'none (embedded backbone)'),
    ...info.checkpoints.map((c) => el('option', { value: c }, c)),
  ]);
  checkpoint.value = current.project.model?.checkpoint ?? '';

  view.replaceChildren(el('div', { class: 'workspace' }, [
    el('aside', { class: 'side' }, [
      el('section', { class: 'step', id: 'examples' }, [
        el('h2', {}, [el('span', { class: 'step-n' }, '1'), 'Examples']),
        el('h3', {}, ['Defective parts ', el('span', { class: 'count', id: 'defect-count' })]),
        dropZone({ label: 'Drop images of defective parts', hint: 'then paint each defect', testid: 'drop-defect', onFiles: (f) => uploadExamples('defect', f) }),
        el('div', { class: 'thumbs', id: 'defect-thumbs', 'data-testid': 'defect-thumbs' }),
        el('p', { class: 'muted status', id: 'uploading' }),
        el('h3', {}, ['Good parts ', el('span', { class: 'count', id: 'normal-count' })]),
        dropZone({ label: 'Drop images of good parts', hint: 'a few typical ones', testid: 'drop-normal', onFiles: (f) => uploadExamples('normal', f) }),
        el('div', { class: 'thumbs', id: 'normal-thumbs', 'data-testid': 'normal-thumbs' }),
      ]),
      el('section', { class: 'step', id: 'fit' }, [
        el('h2', {}, [el('span', { class: 'step-n' }, '2'), 'Fit']),
        el('div', { class: 'options' }, [
          el('label', {}, ['Scoring', scoring]),
          el('label', {}, ['Image size (px)', size]),
          el('label', {}, ['Checkpoint', checkpoint]),
        ]),
        el('p', { class: 'flag', id: 'fit-warning', role: 'alert' }),
        el('button', { type: 'button', class: 'primary big', id: 'fit-button', 'data-testid': 'fit-button', onclick: () => doFit() }, 'Fit'),
        el('p', { id: 'fit-status', 'data-testid': 'fit-status', class: 'status' }),
        el('p', { id: 'fit-gallery', 'data-testid': 'fit-gallery', class: 'muted' }),
        el('div', { class: 'row' }, [
          el('button', { type: 'button', id: 'download-model', 'data-testid': 'download-model', onclick: () => downloadModel() }, 'Download model (.bpgg)'),
        ]),
      ]),
    ]),
    el('section', { class: 'step results', id: 'results' }, [
      el('h2', {}, [el('span', { class: 'step-n' }, '3'), 'Check new images']),
      dropZone({ label: 'Drop new images to check', hint: 'or a folder; they are scored with the fitted model and stay in this page', testid: 'drop-query', onFiles: (f) => addQueries(f) }),
      el('div', { class: 'result-bar' }, [
        el('label', { class: 'threshold', title: 'Map values at or above it are defect: the masks (live, in the page)' }, [
          'Mask threshold ',
          el('input', { type: 'range', id: 'threshold', 'data-testid': 'threshold', min: 0, max: 1, step: 'any', oninput: (e) => setThreshold(Number(e.target.value)) }),
          el('output', { id: 'threshold-value', 'data-testid': 'threshold-value' }),
        ]),
        el('label', { class: 'threshold', title: 'Images whose score is at or above it are defective: the badges (live, in the page)' }, [
          'Verdict threshold ',
          el('input', { type: 'range', id: 'image-threshold', 'data-testid': 'image-threshold', min: 0, max: 1, step: 'any', oninput: (e) => setThreshold(Number(e.target.value), 'image') }),
          el('output', { id: 'image-threshold-value', 'data-testid': 'image-threshold-value' }),
        ]),
        el('button', { type: 'button', id: 'threshold-reset', title: 'Back to the thresholds the fit chose', onclick: () => {
          const t = modelThresholds(current.project.model);
          setThreshold(t.pixel);
          setThreshold(t.image, 'image');
        } }, 'Model’s thresholds'),
        el('label', { class: 'inline' }, ['Sort ', el('select', { id: 'sort', 'data-testid': 'sort', onchange: (e) => { current.sort = e.target.value; renderResults(true); } }, [
          el('option', { value: 'score-desc' }, 'score, highest first'),
          el('option', { value: 'score-asc' }, 'score, lowest first'),
          el('option', { value: 'name' }, 'name'),
          el('option', { value: 'added' }, 'order added'),
        ])]),
        el('label', { class: 'inline' }, [el('input', { type: 'checkbox', id: 'show-heat', checked: true, onchange: (e) => { current.showHeat = e.target.checked; renderResults(false); } }), ' heat map']),
        el('span', { class: 'legend', title: 'Map value: low → high', style: `background:${RAMP_CSS}` }),
        el('span', { class: 'spacer' }),
        el('button', { type: 'button', id: 'export-csv', 'data-testid': 'export-csv', onclick: () => exportCsv() }, 'Export CSV'),
        el('button', { type: 'button', id: 'clear-results', onclick: () => { results.set(id, []); renderResults(true); } }, 'Clear'),
      ]),
      el('p', { id: 'result-summary', 'data-testid': 'result-summary', class: 'status' }),
      el('div', { class: 'gallery', id: 'gallery', 'data-testid': 'gallery' }),
    ]),
  ]));
}

// ---------------------------------------------------------------- examples

async function uploadExamples(role, files) {
  const { id } = current;
  current.pendingExamples += files.length;
  renderExamples();
  let done = 0;
  const errors = [];
  const created = [];
  for (const file of files) {
    try {
      const image = await api.upload(id, role, file);
      rememberName(image.id, file.name);
      created.push(image);
      done++;
    } catch (err) {
      errors.push(`${file.name}: ${err.message}`);
    }
    current.pendingExamples--;
  }
  if (current?.id !== id) return;
  await refreshExamples();
  if (done) toast(`${done} ${role === 'defect' ? 'defect' : 'good'} image${done === 1 ? '' : 's'} added${role === 'defect' ? ': click each to paint the defect' : ''}`);
  if (errors.length) toast(`Not added: ${errors.join('; ')}`, 'error');
  if (role === 'defect' && created.length === 1 && files.length === 1) openPainter(created[0]);
}

async function refreshExamples() {
  try {
    await reloadProject();
  } catch (err) {
    fail('Could not reload the project', err);
  }
  renderExamples();
  renderFitStatus();
}

function renderExamples() {
  const defects = current.images.filter((i) => i.role === 'defect');
  const normals = current.images.filter((i) => i.role === 'normal');
  const unmasked = defects.filter((i) => !i.has_mask).length;
  $('#defect-count').textContent = `${defects.length}${unmasked ? `, ${unmasked} without mask` : ''}`;
  $('#normal-count').textContent = String(normals.length);
  $('#uploading').textContent = current.pendingExamples ? `Uploading ${current.pendingExamples}…` : '';
  $('#defect-thumbs').replaceChildren(...defects.map(exampleThumb), ...(defects.length ? [] : [el('p', { class: 'empty small' }, 'No defect examples yet.')]));
  $('#normal-thumbs').replaceChildren(...normals.map(exampleThumb), ...(normals.length ? [] : [el('p', { class: 'empty small' }, 'No good examples yet.')]));
}

/** The thumbnail of an example, with the mask painted over it for defect images. */
function exampleThumb(image) {
  const canvas = el('canvas', { width: 96, height: 96, class: 'thumb-canvas' });
  const isDefect = image.role === 'defect';
  const label = labelOf(image);
  const thumb = el('figure', {
    class: `thumb ${isDefect && !image.has_mask ? 'needs-mask' : ''}`,
    'data-testid': 'example',
    'data-role': image.role,
    'data-has-mask': String(image.has_mask),
    'data-image-id': image.id,
    title: `${label} · ${image.width}×${image.height}${isDefect ? ' · click to paint the defect' : ''}`,
  }, [
    el('button', { type: 'button', class: 'thumb-open', 'aria-label': isDefect ? `Paint the defect of ${label}` : label, onclick: () => (isDefect ? openPainter(image) : null) }, canvas),
    isDefect && !image.has_mask ? el('span', { class: 'badge warn' }, 'no mask') : null,
    el('figcaption', {}, label),
    el('div', { class: 'thumb-actions' }, [
      el('button', { type: 'button', class: 'link', title: isDefect ? 'Make it a good example' : 'Make it a defect example', onclick: () => changeRole(image, isDefect ? 'normal' : 'defect') }, isDefect ? '→ good' : '→ defect'),
      el('button', { type: 'button', class: 'link danger', title: 'Remove this example', 'aria-label': `Remove ${label}`, onclick: () => removeExample(image) }, 'remove'),
    ]),
  ]);
  drawThumb(image, canvas);
  return thumb;
}

async function exampleBlob(image) {
  let url = current.thumbs.get(image.id);
  if (!url) {
    url = api.imageBlob(current.id, image.id);
    current.thumbs.set(image.id, url);
  }
  return url;
}

async function drawThumb(image, canvas) {
  try {
    const img = await decodeImage(await exampleBlob(image), labelOf(image));
    const s = Math.min(96 / img.naturalWidth, 96 / img.naturalHeight);
    const w = Math.round(img.naturalWidth * s);
    const h = Math.round(img.naturalHeight * s);
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0, w, h);
    if (image.role === 'defect' && image.has_mask) {
      const mask = await decodeImage(await api.maskBlob(current.id, image.id), `mask of ${labelOf(image)}`);
      const tint = document.createElement('canvas');
      tint.width = w;
      tint.height = h;
      const t = tint.getContext('2d');
      t.drawImage(mask, 0, 0, w, h);
      const d = t.getImageData(0, 0, w, h);
      for (let i = 0; i < d.data.length; i += 4) {
        const on = d.data[i] > 127;
        d.data[i] = 255;
        d.data[i + 1] = 48;
        d.data[i + 2] = 48;
        d.data[i + 3] = on ? 140 : 0;
      }
      t.putImageData(d, 0, 0);
      ctx.drawImage(tint, 0, 0);
    }
  } catch (err) {
    canvas.replaceWith(el('span', { class: 'no-preview' }, err.message.includes('TIFF') ? 'TIFF' : 'no preview'));
  }
}

async function openPainter(image) {
  const { id } = current;
  let img;
  let initial = null;
  try {
    img = await decodeImage(await exampleBlob(image), labelOf(image));
    if (image.has_mask) initial = await decodeImage(await api.maskBlob(id, image.id), `mask of ${labelOf(image)}`);
  } catch (err) {
    fail('Cannot open the painter', err);
    return;
  }
  const saved = await paintMask({
    image: img,
    initial,
    title: labelOf(image),
    save: (png) => api.putMask(id, image.id, png),
  });
  if (saved && current?.id === id) {
    toast(`Mask of ${labelOf(image)} saved`);
    await refreshExamples();
  }
}

async function changeRole(image, role) {
  try {
    await api.setRole(current.id, image.id, role);
    await refreshExamples();
  } catch (err) {
    fail('Could not change the role', err);
  }
}

async function removeExample(image) {
  if (!window.confirm(`Remove ${labelOf(image)} from the examples?`)) return;
  try {
    await api.deleteImage(current.id, image.id);
    current.thumbs.delete(image.id);
    await refreshExamples();
  } catch (err) {
    fail('Could not remove the example', err);
  }
}

// ---------------------------------------------------------------- fit

function renderFitStatus() {
  const p = current.project;
  const unmasked = current.images.filter((i) => i.role === 'defect' && !i.has_mask);
  const warning = $('#fit-warning');
  warning.textContent = unmasked.length
    ? `${unmasked.length} defect image${unmasked.length === 1 ? ' has' : 's have'} no mask yet (${unmasked.map(labelOf).join(', ')}): click ${unmasked.length === 1 ? 'it' : 'each'} to paint the defect, or make ${unmasked.length === 1 ? 'it' : 'them'} good examples.`
    : '';
  const button = $('#fit-button');
  button.disabled = unmasked.length > 0 || current.images.length === 0 || current.fitting;
  const used = new Set(p.model?.support_ids ?? []);
  const fresh = current.images.filter((i) => !used.has(i.id)).length;
  const removed = p.model ? p.model.support_ids.filter((s) => !current.images.some((i) => i.id === s)).length : 0;
  button.textContent = current.fitting ? 'Fitting…' : p.model ? (fresh || removed ? `Fit again (${fresh + removed} change${fresh + removed === 1 ? '' : 's'})` : 'Fit again') : 'Fit';
  button.classList.toggle('attention', Boolean(p.model && (fresh || removed)));
  $('#download-model').disabled = !p.model;
  if (!current.fitting) {
    $('#fit-status').textContent = p.model
      ? `Model: ${p.model.scoring} on ${p.model.defects} defect + ${p.model.normals} good images, threshold ${formatScore(p.model.threshold)} (${p.model.threshold_rule})${p.model.image_threshold === undefined ? '' : `, verdict threshold ${formatScore(p.model.image_threshold)}`}, fitted in ${formatMs(p.model.ms)}.`
      : current.images.length ? 'Not fitted yet.' : 'Add examples, then fit.';
  }
}

// The side shown in the size field for a model config's `size`: `256` (long side), `"256x256"`
// (the width of an exact size); anything else (native, a scale) shows the default side.
function sideOf(size) {
  if (typeof size === 'number') return size;
  const m = typeof size === 'string' ? /^(\d+)x\d+$/.exec(size) : null;
  return m ? Number(m[1]) : 256;
}

async function doFit() {
  const { id } = current;
  // The square working size of the library's default (N x N), at the chosen side.
  const side = Number($('#opt-size').value);
  const options = { scoring: $('#opt-scoring').value, size: `${side}x${side}` };
  const checkpoint = $('#opt-checkpoint').value;
  if (checkpoint) options.checkpoint = checkpoint;
  current.fitting = true;
  renderFitStatus();
  const status = $('#fit-status');
  const started = performance.now();
  const tick = setInterval(() => { status.textContent = `Fitting… ${formatMs(performance.now() - started)}`; }, 100);
  status.textContent = 'Fitting…';
  $('#fit-gallery').textContent = '';
  delete $('#fit-gallery').dataset.ms;
  try {
    const summary = await api.fit(id, options);
    clearInterval(tick);
    if (current?.id !== id) return;
    current.fitting = false;
    await reloadProject();
    current.verdictMoved = false;
    ({ pixel: current.threshold, image: current.imageThreshold } = modelThresholds(summary));
    renderFitStatus();
    renderExamples();
    toast(`Fitted in ${formatMs(summary.ms)}`);
    const list = results.get(id);
    if (list.length) {
      await scoreAll(list);
      if (current?.id !== id) return;
      const total = performance.now() - started;
      const gallery = $('#fit-gallery');
      gallery.textContent = `From Fit to a filled gallery of ${list.length} image${list.length === 1 ? '' : 's'}: ${formatMs(total)}.`;
      gallery.dataset.ms = String(Math.round(total));
    }
  } catch (err) {
    clearInterval(tick);
    if (current?.id !== id) return;
    current.fitting = false;
    renderFitStatus();
    status.textContent = '';
    $('#fit-warning').textContent = `The fit failed: ${err.message}`;
  }
}

async function downloadModel() {
  try {
    const blob = await api.modelBlob(current.id);
    const file = current.project.name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+|\.+$/g, '') || 'model';
    download(blob, `${file}.bpgg`);
  } catch (err) {
    fail('Could not download the model', err);
  }
}

// ---------------------------------------------------------------- results

let nextResult = 0;

function addQueries(files) {
  const list = results.get(current.id);
  const fresh = files.map((file) => ({ key: nextResult++, name: file.name, file, status: 'waiting' }));
  list.push(...fresh);
  renderResults(true);
  if (current.project.model) scoreAll(fresh);
}

/** Scores `list` with the current model (a few requests at once; the service batches them). */
async function scoreAll(list) {
  const { id } = current;
  for (const r of list) {
    r.status = 'pending';
    r.map = null;
    r.heat = null;
    r.range = null;
  }
  renderResults(true);
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const r = list[next++];
      try {
        const [map, img] = await Promise.all([api.predictMap(id, r.file), r.img ?? decodeImage(r.file, r.name).catch(() => null)]);
        r.map = map;
        r.img = img;
        r.status = 'done';
        // The service says at which image threshold it judged the image (X-Image-Threshold):
        // the model's verdict threshold, unless the user has moved that slider.
        if (Number.isFinite(map.imageThreshold) && current?.id === id) {
          current.servedImageThreshold ??= {};
          if (current.servedImageThreshold[map.model] === undefined) {
            current.servedImageThreshold[map.model] = map.imageThreshold;
            if (!current.verdictMoved && map.model === current.project.model?.model_sha256) {
              current.imageThreshold = map.imageThreshold;
            }
          }
        }
        r.error = null;
      } catch (err) {
        r.status = 'error';
        r.error = err.message;
      }
      if (current?.id === id) updateCard(r);
    }
  };
  await Promise.all(Array.from({ length: PREDICT_CONCURRENCY }, worker));
  if (current?.id === id) renderResults(true);
}

/** The colour range shared by every map in the gallery (so colours compare across images). */
function galleryRange(list) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of list) {
    if (!r.map) continue;
    r.range ??= range(r.map.data);
    lo = Math.min(lo, r.range[0]);
    hi = Math.max(hi, r.range[1]);
  }
  return [lo, hi];
}

function setThreshold(value, which = 'pixel') {
  if (!Number.isFinite(value)) return;
  if (which === 'image') {
    current.imageThreshold = value;
    current.verdictMoved = true;
  }
  else current.threshold = value;
  if (!current.frame) {
    current.frame = requestAnimationFrame(() => {
      current.frame = null;
      renderResults(false);
      current.largeView?.render();
    });
  }
}

function sorted(list) {
  const by = {
    'score-desc': (a, b) => (b.map?.score ?? -Infinity) - (a.map?.score ?? -Infinity),
    'score-asc': (a, b) => (a.map?.score ?? Infinity) - (b.map?.score ?? Infinity),
    name: (a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }),
    added: (a, b) => a.key - b.key,
  }[current.sort];
  return [...list].sort(by);
}

/** Redraws the gallery; `rebuild` re-creates the cards (order or content changed). */
function renderResults(rebuild) {
  if (!current || !$('#gallery')) return;
  const list = results.get(current.id);
  const model = current.project.model;
  const [lo, hi] = galleryRange(list);
  const slider = $('#threshold');
  if (Number.isFinite(lo) && Number.isFinite(hi)) {
    const t = current.threshold ?? model?.threshold ?? lo;
    const min = Math.min(lo, t);
    const max = Math.max(hi, t);
    slider.min = String(min);
    slider.max = String(max);
    slider.step = String((max - min) / 1000 || 0.001);
    slider.value = String(t);
    slider.disabled = false;
  } else {
    slider.disabled = true;
  }
  const scores = list.filter((r) => r.map).map((r) => r.map.score);
  const imageSlider = $('#image-threshold');
  if (scores.length) {
    const t = current.imageThreshold ?? Math.min(...scores);
    const min = Math.min(t, ...scores);
    const max = Math.max(t, ...scores);
    imageSlider.min = String(min);
    imageSlider.max = String(max);
    imageSlider.step = String((max - min) / 1000 || 0.001);
    imageSlider.value = String(t);
    imageSlider.disabled = false;
  } else {
    imageSlider.disabled = true;
  }
  $('#threshold-value').textContent = current.threshold === null ? '–' : formatScore(current.threshold);
  $('#image-threshold-value').textContent = current.imageThreshold === null ? '–' : formatScore(current.imageThreshold);
  const fitted = modelThresholds(model);
  $('#threshold-reset').disabled = !model || (current.threshold === fitted.pixel && current.imageThreshold === fitted.image);
  const gallery = $('#gallery');
  if (rebuild) {
    for (const r of list) {
      if (r.map && (!r.heat || r.heatRange?.[0] !== lo || r.heatRange?.[1] !== hi)) {
        r.heat = heatLayer(r.map, lo, hi);
        r.heatRange = [lo, hi];
      }
    }
    if (!list.length) {
      gallery.replaceChildren(el('p', { class: 'empty' }, model
        ? 'Drop images of new parts above: each gets a heat map, a score and a verdict.'
        : 'Fit a model first (step 2); images dropped above wait for it.'));
    } else {
      gallery.replaceChildren(...sorted(list).map(resultCard));
    }
  }
  for (const r of list) if (r.card) drawCard(r);
  const done = list.filter((r) => r.map);
  const defective = done.filter((r) => r.map.score >= current.imageThreshold).length;
  const pending = list.filter((r) => r.status === 'pending').length;
  const waiting = list.filter((r) => r.status === 'waiting').length;
  const errors = list.filter((r) => r.status === 'error').length;
  const parts = [];
  if (done.length) parts.push(`${done.length} scored: ${defective} defective, ${done.length - defective} good at verdict threshold ${formatScore(current.imageThreshold)}`);
  if (pending) parts.push(`scoring ${pending}…`);
  if (waiting) parts.push(`${waiting} waiting for a model`);
  if (errors) parts.push(`${errors} failed`);
  $('#result-summary').textContent = parts.join(' · ');
  $('#export-csv').disabled = !done.length;
  $('#clear-results').disabled = !list.length;
}

function resultCard(r) {
  const canvas = el('canvas', { class: 'result-canvas', 'data-testid': 'result-canvas' });
  const score = el('span', { class: 'score', 'data-testid': 'result-score' });
  const badge = el('span', { class: 'badge', 'data-testid': 'result-badge' });
  const area = el('span', { class: 'area muted', 'data-testid': 'result-area' });
  const note = el('span', { class: 'note' });
  const card = el('figure', { class: 'result', 'data-testid': 'result', tabindex: 0, title: `${r.name}: click for the large view`, onclick: () => openLarge(r), onkeydown: (e) => { if (e.key === 'Enter') openLarge(r); } }, [
    canvas,
    el('figcaption', {}, [el('span', { class: 'name' }, r.name), el('span', { class: 'line' }, [badge, score, area]), note]),
  ]);
  r.card = { card, canvas, score, badge, area, note };
  return card;
}

function updateCard(r) {
  if (!r.card) return;
  const list = results.get(current.id);
  const [lo, hi] = galleryRange(list);
  if (r.map && !r.heat) {
    r.heat = heatLayer(r.map, lo, hi);
    r.heatRange = [lo, hi];
  }
  drawCard(r);
}

const CARD_W = 220;
const CARD_H = 220;

function drawCard(r) {
  const { card, canvas, score, badge, area, note } = r.card;
  card.dataset.status = r.status;
  note.textContent = r.support ? `added as a ${r.support === 'defect' ? 'defect' : 'good'} example` : '';
  if (r.status !== 'done') {
    canvas.width = CARD_W;
    canvas.height = CARD_H;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#e9ecef';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#6c757d';
    ctx.font = '13px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.fillText({ waiting: 'waiting for a model', pending: 'scoring…', error: 'failed' }[r.status] ?? '', CARD_W / 2, CARD_H / 2 + 4);
    badge.textContent = r.status === 'error' ? 'error' : '';
    badge.className = `badge ${r.status === 'error' ? 'bad' : ''}`;
    score.textContent = '';
    area.textContent = r.error ?? '';
    return;
  }
  const { map } = r;
  // Every card has the same box; the image is fitted inside it (any aspect ratio).
  if (canvas.width !== CARD_W || canvas.height !== CARD_H) {
    canvas.width = CARD_W;
    canvas.height = CARD_H;
  }
  const s = Math.min(CARD_W / map.width, CARD_H / map.height);
  const w = map.width * s;
  const h = map.height * s;
  const x = (CARD_W - w) / 2;
  const y = (CARD_H - h) / 2;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#22272e';
  ctx.fillRect(0, 0, CARD_W, CARD_H);
  ctx.imageSmoothingEnabled = true;
  if (r.img) ctx.drawImage(r.img, x, y, w, h);
  if (current.showHeat && r.heat) ctx.drawImage(r.heat, x, y, w, h);
  r.maskCanvas ??= Object.assign(document.createElement('canvas'), { width: map.width, height: map.height });
  const px = drawMask(map, current.threshold, r.maskCanvas);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(r.maskCanvas, x, y, w, h);
  const defective = map.score >= current.imageThreshold;
  badge.textContent = defective ? 'DEFECT' : 'OK';
  badge.className = `badge ${defective ? 'bad' : 'good'}`;
  score.textContent = `score ${formatScore(map.score)}`;
  score.dataset.score = String(map.score);
  r.areaPx = px;
  area.textContent = `${((100 * px) / (map.width * map.height)).toFixed(1)}% of the image`;
  area.dataset.px = String(px);
  card.classList.toggle('defective', defective);
}

function exportCsv() {
  const list = sorted(results.get(current.id)).filter((r) => r.map);
  const quote = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const rows = [['file', 'image_score', 'defective', 'image_threshold', 'threshold', 'defect_area_px', 'defect_area_fraction', 'width', 'height', 'model_sha256'].join(',')];
  for (const r of list) {
    const { map } = r;
    let px = 0;
    for (let i = 0; i < map.data.length; i++) if (map.data[i] >= current.threshold) px++;
    rows.push([quote(r.name), map.score, map.score >= current.imageThreshold, current.imageThreshold, current.threshold, px, (px / (map.width * map.height)).toFixed(6), map.width, map.height, map.model].join(','));
  }
  const file = current.project.name.replace(/[^A-Za-z0-9._-]+/g, '_') || 'results';
  download(new Blob([`${rows.join('\n')}\n`], { type: 'text/csv' }), `${file}-results.csv`);
}

// ---------------------------------------------------------------- large view and corrections

function openLarge(start) {
  const list = () => sorted(results.get(current.id)).filter((r) => r.status === 'done');
  let r = start;
  if (r.status !== 'done') return;
  const canvas = el('canvas', { class: 'large-canvas', 'data-testid': 'large-canvas' });
  const readout = el('p', { class: 'readout', 'data-testid': 'readout' }, 'Move the pointer over the image to read the map.');
  const title = el('strong');
  const verdict = el('span', { class: 'badge' });
  const error = el('p', { class: 'error', role: 'alert' });
  const defectButton = el('button', { type: 'button', class: 'primary', 'data-testid': 'mark-defect', title: 'Paint the defect; the image becomes a defect example (D)', onclick: () => markDefect() }, 'This is a defect…');
  const goodButton = el('button', { type: 'button', class: 'primary good', 'data-testid': 'mark-good', title: 'The image becomes a good example (G)', onclick: () => markGood() }, 'This is good');
  const layers = { heat: current.showHeat, mask: true };
  const toggle = (name, label, key) => el('label', { class: 'inline', title: `${label} (${key})` }, [
    el('input', { type: 'checkbox', 'data-layer': name, checked: layers[name], onchange: (e) => { layers[name] = e.target.checked; render(); } }),
    ` ${label}`,
  ]);
  const wrap = el('div', { class: 'large-wrap' }, canvas);
  const root = el('div', { class: 'modal large', role: 'dialog', 'aria-modal': 'true', 'data-testid': 'large-view' }, [
    el('div', { class: 'painter-bar' }, [
      title, verdict,
      el('span', { class: 'spacer' }),
      toggle('heat', 'heat map', 'H'),
      toggle('mask', 'mask', 'M'),
      el('button', { type: 'button', title: 'Previous (←)', onclick: () => step(-1) }, '← Previous'),
      el('button', { type: 'button', title: 'Next (→)', onclick: () => step(1) }, 'Next →'),
      el('button', { type: 'button', 'data-testid': 'close-large', onclick: () => close() }, 'Close'),
    ]),
    wrap,
    el('div', { class: 'painter-foot' }, [
      readout,
      el('span', { class: 'spacer' }),
      el('span', { class: 'muted' }, 'Wrong? Correct it, then Fit again:'),
      defectButton,
      goodButton,
      error,
    ]),
  ]);
  let geometry = null;
  const render = () => {
    const { map } = r;
    const box = wrap.getBoundingClientRect();
    const s = Math.min(box.width / map.width, box.height / map.height);
    const w = Math.max(1, Math.floor(map.width * s));
    const h = Math.max(1, Math.floor(map.height * s));
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    geometry = { s };
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr * s, 0, 0, dpr * s, 0, 0);
    ctx.imageSmoothingEnabled = s < 2;
    if (r.img) ctx.drawImage(r.img, 0, 0, map.width, map.height);
    if (layers.heat && r.heat) ctx.drawImage(r.heat, 0, 0);
    r.maskCanvas ??= Object.assign(document.createElement('canvas'), { width: map.width, height: map.height });
    drawMask(map, current.threshold, r.maskCanvas);
    ctx.imageSmoothingEnabled = false;
    if (layers.mask) ctx.drawImage(r.maskCanvas, 0, 0);
    const defective = map.score >= current.imageThreshold;
    title.textContent = `${r.name} · score ${formatScore(map.score)} (verdict threshold ${formatScore(current.imageThreshold)}) · mask threshold ${formatScore(current.threshold)}`;
    verdict.textContent = defective ? 'DEFECT' : 'OK';
    verdict.className = `badge ${defective ? 'bad' : 'good'}`;
    defectButton.disabled = Boolean(r.support);
    goodButton.disabled = Boolean(r.support);
    error.textContent = r.support ? `Added as a ${r.support === 'defect' ? 'defect' : 'good'} example: Fit again to use it.` : '';
  };
  canvas.addEventListener('pointermove', (e) => {
    if (!geometry) return;
    const b = canvas.getBoundingClientRect();
    const x = Math.floor((e.clientX - b.left) / geometry.s);
    const y = Math.floor((e.clientY - b.top) / geometry.s);
    const { map } = r;
    if (x < 0 || y < 0 || x >= map.width || y >= map.height) return;
    const v = map.data[y * map.width + x];
    readout.textContent = `x ${x}, y ${y}: map value ${v.toFixed(4)} — ${v >= current.threshold ? 'above' : 'below'} the mask threshold ${formatScore(current.threshold)}`;
  });
  const step = (d) => {
    const l = list();
    const i = l.indexOf(r);
    if (i < 0 || !l.length) return;
    r = l[(i + d + l.length) % l.length];
    render();
  };
  const onKey = (e) => {
    if (document.querySelector('.modal.painter')) return;
    if (e.key === 'Escape') close();
    else if (e.key === 'ArrowLeft') step(-1);
    else if (e.key === 'ArrowRight') step(1);
    else if (e.key.toLowerCase() === 'h' || e.key.toLowerCase() === 'm') {
      const input = root.querySelector(`[data-layer="${e.key.toLowerCase() === 'h' ? 'heat' : 'mask'}"]`);
      input.checked = !input.checked;
      input.dispatchEvent(new Event('change'));
    } else if (e.key.toLowerCase() === 'd' && !defectButton.disabled) markDefect();
    else if (e.key.toLowerCase() === 'g' && !goodButton.disabled) markGood();
    else return;
    e.preventDefault();
  };
  const close = () => {
    window.removeEventListener('keydown', onKey);
    window.removeEventListener('resize', render);
    root.remove();
    current.largeView = null;
    renderResults(true);
  };
  const markGood = async () => {
    error.textContent = '';
    try {
      const image = await api.upload(current.id, 'normal', r.file);
      rememberName(image.id, r.name);
      r.support = 'normal';
      toast(`${r.name} added as a good example: Fit again to use it`);
      await refreshExamples();
      render();
    } catch (err) {
      error.textContent = `Not added: ${err.message}`;
    }
  };
  const markDefect = async () => {
    error.textContent = '';
    const { id } = current;
    const img = r.img;
    if (!img) {
      error.textContent = 'The browser cannot show this image, so it cannot be painted here.';
      return;
    }
    // The painter starts from the predicted mask at the current threshold: correct it, or clear
    // it and paint the missed defect.
    let imageId = null;
    const saved = await paintMask({
      image: img,
      initial: maskImage(r.map, current.threshold),
      title: r.name,
      save: async (png) => {
        if (!imageId) {
          const image = await api.upload(id, 'defect', r.file);
          imageId = image.id;
          rememberName(image.id, r.name);
        }
        await api.putMask(id, imageId, png);
      },
    });
    if (imageId) {
      r.support = 'defect';
      await refreshExamples();
    }
    if (saved) toast(`${r.name} added as a defect example: Fit again to use it`);
    render();
  };
  document.body.append(root);
  window.addEventListener('keydown', onKey);
  window.addEventListener('resize', render);
  current.largeView = { render };
  render();
}

// Unexpected failures are shown, not swallowed.
window.addEventListener('unhandledrejection', (e) => {
  const err = e.reason;
  toast(err instanceof ApiError || err instanceof Error ? err.message : String(err), 'error');
});

route();
