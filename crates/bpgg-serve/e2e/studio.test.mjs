// End-to-end test of the bpgg studio in real headless Chromium (Debian's `chromium`, driven by
// puppeteer-core: no browser download) against a real `bpgg serve` on an ephemeral loopback
// port with a temporary data dir. It acts like a user: creates a project, uploads three defect
// images, paints their masks with mouse events (brush, lasso, polygon, zoom and pan, undo),
// uploads good images, fits, drops query images, reads the scores from the page, moves the mask
// and verdict threshold sliders and checks the shown masks and badges change, corrects two
// results (one good, one defect) and fits again, downloads the model and the CSV, renames and
// deletes the project, answers the token dialog of a service with a token, and saves
// screenshots. It fails on any console error, page error, failed request or HTTP error answer.
//
//   node studio.test.mjs [--bpgg PATH] [--chromium PATH] [--shots DIR] [--measure] [--live-assets]
//
// --live-assets: the page's files come from ../assets instead of the binary (while editing).
// --measure: 5 + 5 examples and 20 query images, and prints the time from pressing Fit to a
// filled gallery as the page measures it (for the README; nothing is asserted about it).

import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, mkdirSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const BPGG = resolve(arg('--bpgg', process.env.BPGG_BIN ?? join(here, '../../../target/debug/bpgg')));
const CHROMIUM = arg('--chromium', process.env.CHROMIUM ?? '/usr/bin/chromium');
const MEASURE = process.argv.includes('--measure');
const LIVE = process.argv.includes('--live-assets');
const work = mkdtempSync(join(tmpdir(), 'bpgg-studio-e2e-'));
const SHOTS = resolve(arg('--shots', join(work, 'screenshots')));
const DEFECTS = MEASURE ? 5 : 3;
const NORMALS = MEASURE ? 5 : 4;
const QUERIES = MEASURE ? 20 : 12;
const started = Date.now();
const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...a);

for (const [what, path] of [['bpgg binary', BPGG], ['chromium', CHROMIUM]]) {
  if (!existsSync(path)) {
    console.error(`studio e2e: no ${what} at ${path} (build it with \`cargo build -p bpgg-cli\`; Debian: apt-get install chromium)`);
    process.exit(1);
  }
}
mkdirSync(SHOTS, { recursive: true });

// ---------------------------------------------------------------- data and server

const data = join(work, 'data');
execFileSync(BPGG, ['data', 'synth', data, '--size', '128', '--train-good', '8', '--test-good', '10', '--per-type', '4', '--seed', '7'], { stdio: 'ignore' });
const cat = join(data, 'synthetic_tile');
// Every image under a name that says what it is (good_003.png, crack_001.png), as a user's
// files would be named; the ground truth stays where it is.
const flat = join(work, 'images');
mkdirSync(flat);
const origin = new Map();
const list = (dir) => readdirSync(join(cat, dir)).filter((f) => f.endsWith('.png')).sort().map((f) => {
  const kind = dir.split('/').at(-1);
  const to = join(flat, `${dir.startsWith('train') ? 'train_' : ''}${kind}_${f}`);
  copyFileSync(join(cat, dir, f), to);
  origin.set(to, join(cat, dir, f));
  return to;
});
const kinds = readdirSync(join(cat, 'test')).filter((k) => k !== 'good').sort();
const byKind = Object.fromEntries(kinds.map((k) => [k, list(join('test', k))]));
// Defect examples: one of each kind in turn; the queries are the other images.
const defectFiles = Array.from({ length: DEFECTS }, (_, i) => byKind[kinds[i % kinds.length]][Math.floor(i / kinds.length)]);
const gtOf = (file) => {
  const from = origin.get(file);
  return join(cat, 'ground_truth', from.split('/').at(-2), from.split('/').at(-1).replace('.png', '_mask.png'));
};
const normalFiles = list('train/good').slice(0, NORMALS);
const queryDefects = kinds.flatMap((k) => byKind[k]).filter((f) => !defectFiles.includes(f));
const queryGood = list('test/good');
const queryFiles = [...queryGood.slice(0, Math.ceil(QUERIES / 2)), ...queryDefects.slice(0, Math.floor(QUERIES / 2))];
assert.equal(queryFiles.length, QUERIES, 'enough synthetic query images');

const server = spawn(BPGG, ['serve', '--data-dir', join(work, 'store'), '--bind', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
let serverOut = '';
server.stdout.on('data', (d) => { serverOut += d; });
server.stderr.on('data', (d) => { serverOut += d; });
const base = await new Promise((res, rej) => {
  const timer = setTimeout(() => rej(new Error(`bpgg serve printed no URL in 30 s:\n${serverOut}`)), 30000);
  server.stdout.on('data', () => {
    const m = serverOut.match(/listening on (http:\/\/[0-9.:]+)/);
    if (m) {
      clearTimeout(timer);
      res(m[1]);
    }
  });
  server.on('exit', (code) => rej(new Error(`bpgg serve exited (${code}):\n${serverOut}`)));
});
log('server', base, 'data', work);

// ---------------------------------------------------------------- browser

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  userDataDir: join(work, 'profile'),
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  defaultViewport: { width: 1440, height: 900 },
  protocolTimeout: 120000,
});
const problems = [];
const page = await browser.newPage();
page.setDefaultTimeout(60000);
page.on('console', (m) => {
  if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  if (process.env.STUDIO_E2E_DEBUG) log(`console.${m.type()}: ${m.text()}`);
});
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`); });
// Confirmations are accepted; a prompt gets `promptAnswer`.
let promptAnswer = null;
page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(promptAnswer ?? d.defaultValue()) : d.accept()));
const downloads = join(work, 'downloads');
mkdirSync(downloads);
const cdp = await page.createCDPSession();
await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });

if (LIVE) {
  // Serve the studio's files from the source tree instead of the binary: iterate on the page
  // without rebuilding (what is tested in CI is always the embedded copy).
  const assets = join(here, '../assets');
  const types = { html: 'text/html', js: 'text/javascript', css: 'text/css', svg: 'image/svg+xml' };
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    const { pathname, hostname } = new URL(r.url());
    const file = pathname === '/' ? 'index.html' : pathname.startsWith('/assets/') ? pathname.slice(8) : null;
    if (file && /^[a-z.]+$/.test(file) && hostname === '127.0.0.1') {
      r.respond({ status: 200, contentType: types[file.split('.').at(-1)], body: readFileSync(join(assets, file)) });
    } else r.continue();
  });
}

const shot = async (name) => {
  await page.evaluate(() => window.scrollTo(0, 0));
  // The --measure run's screenshots go into the README: two thirds of the size keeps them small.
  const clip = MEASURE ? { x: 0, y: 0, width: 1440, height: 900, scale: 2 / 3 } : undefined;
  await page.screenshot({ path: join(SHOTS, `${name}.png`), clip });
  log('screenshot', name);
};
const testid = (id) => `[data-testid="${id}"]`;
const count = (sel) => page.$$eval(sel, (els) => els.length);
const waitFor = (fn, ...args) => page.waitForFunction(fn, { polling: 100 }, ...args);
// Fits and the gallery's predictions: a loaded machine and a debug build take their time.
const waitLong = (fn, ...args) => page.waitForFunction(fn, { polling: 200, timeout: 600000 }, ...args);
const text = (sel) => page.$eval(sel, (e) => e.textContent);

/** Bounding box of the white pixels of a mask PNG, and its pixels, decoded in the page. */
const maskPixels = (b64) => page.evaluate(async (b64) => {
  const img = new Image();
  img.src = `data:image/png;base64,${b64}`;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.width;
  c.height = img.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const on = [];
  for (let i = 0; i < c.width * c.height; i++) on.push(d[i * 4] > 127 ? 1 : 0);
  return { w: c.width, h: c.height, on };
}, b64);

/**
 * How well a painted mask matches the ground truth: the share of the defect it covers, and the
 * share of its pixels that lie on or within `near` pixels of the defect.
 */
const agreement = (painted, gt, near = 6) => {
  const { w, h } = gt;
  let covered = 0;
  let defect = 0;
  let onTarget = 0;
  let paintedPx = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (gt.on[i]) {
        defect++;
        covered += painted.on[i];
      }
      if (!painted.on[i]) continue;
      paintedPx++;
      let close = false;
      for (let dy = -near; dy <= near && !close; dy++) {
        for (let dx = -near; dx <= near && !close; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          close = yy >= 0 && yy < h && xx >= 0 && xx < w && gt.on[yy * w + xx] === 1;
        }
      }
      onTarget += close ? 1 : 0;
    }
  }
  return { coverage: defect ? covered / defect : 0, precision: paintedPx ? onTarget / paintedPx : 0 };
};

/** Screen position of image pixel (x, y) in the open painter. */
async function painterPoint(x, y) {
  const v = await page.$eval('.painter-canvas', (c) => {
    const r = c.getBoundingClientRect();
    return { left: r.left, top: r.top, scale: Number(c.dataset.scale), ox: Number(c.dataset.ox), oy: Number(c.dataset.oy) };
  });
  return { x: v.left + v.ox + (x + 0.5) * v.scale, y: v.top + v.oy + (y + 0.5) * v.scale };
}

/** Paints the ground truth's pixels with brush strokes: one stroke per run of a coarse grid. */
async function brushOver(gt, step) {
  for (let gy = 0; gy < gt.h; gy += step) {
    let run = null;
    for (let gx = 0; gx <= gt.w; gx += step) {
      let hit = false;
      for (let y = gy; y < Math.min(gt.h, gy + step) && !hit; y++) {
        for (let x = gx; x < Math.min(gt.w, gx + step) && !hit; x++) hit = gt.on[y * gt.w + x] === 1;
      }
      if (hit && !run) run = [gx, gx];
      else if (hit) run[1] = gx;
      if ((!hit || gx + step > gt.w) && run) {
        const cy = gy + step / 2;
        const a = await painterPoint(run[0] + step / 2, cy);
        const b = await painterPoint(run[1] + step / 2, cy);
        await page.mouse.move(a.x, a.y);
        await page.mouse.down();
        await page.mouse.move(b.x, b.y, { steps: 4 });
        await page.mouse.up();
        run = null;
      }
    }
  }
}

/** Drags the lasso around the ground truth's bounding box (a bit outside it). */
async function lassoAround(gt) {
  let [x0, y0, x1, y1] = [gt.w, gt.h, 0, 0];
  gt.on.forEach((v, i) => {
    if (!v) return;
    const x = i % gt.w;
    const y = Math.floor(i / gt.w);
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  });
  const pts = [[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x1 + 1, y1 + 1], [x0 - 1, y1 + 1], [x0 - 1, y0]];
  const first = await painterPoint(...pts[0]);
  await page.mouse.move(first.x, first.y);
  await page.mouse.down();
  for (const p of pts.slice(1)) {
    const s = await painterPoint(...p);
    await page.mouse.move(s.x, s.y, { steps: 6 });
  }
  await page.mouse.up();
}

const api = async (path) => {
  const r = await fetch(`${base}${path}`);
  assert.ok(r.ok, `${path}: ${r.status}`);
  return r;
};

let failed = null;
try {
  // -------------------------------------------------------------- project
  await page.goto(base, { waitUntil: 'networkidle0' });
  await page.waitForSelector('.projects .empty');
  assert.match(await text('.projects .empty'), /No projects yet/);
  await shot('01-projects-empty');
  await page.type(testid('new-project-name'), 'Synthetic tiles');
  await Promise.all([page.waitForFunction(() => location.hash.startsWith('#/p/')), page.keyboard.press('Enter')]);
  const projectId = await page.evaluate(() => decodeURIComponent(location.hash.slice(4)));
  await page.waitForSelector(testid('fit-button'));
  log('project', projectId);

  // -------------------------------------------------------------- defect examples and masks
  const defectInput = await page.$(testid('drop-defect-input'));
  await defectInput.uploadFile(...defectFiles);
  await waitFor((n) => document.querySelectorAll('[data-testid="example"][data-role="defect"]').length === n, DEFECTS);
  assert.equal(await count('[data-testid="example"][data-has-mask="false"]'), DEFECTS, 'new defect images have no mask');
  assert.ok(await page.$eval(testid('fit-button'), (b) => b.disabled), 'Fit is disabled while a defect image has no mask');
  assert.match(await text('#fit-warning'), /no mask yet/, 'defect images without mask are flagged before fitting');

  for (let i = 0; i < DEFECTS; i++) {
    const thumb = await page.$('[data-testid="example"][data-has-mask="false"] .thumb-open');
    const imageId = await thumb.evaluate((b) => b.closest('[data-image-id]').dataset.imageId);
    await thumb.click();
    await page.waitForSelector('.painter-canvas');
    const gt = await maskPixels(readFileSync(gtOf(defectFiles[i])).toString('base64'));
    if (i === 0) {
      await page.keyboard.press('l');
      await lassoAround(gt);
    } else {
      await page.keyboard.press(']');
      await page.keyboard.press(']');
      if (i === 2) {
        // Zoomed in on the defect and panned (right drag) before painting.
        const canvasBox = await (await page.$('.painter-canvas')).boundingBox();
        const before = await page.$eval('.painter-canvas', (c) => Number(c.dataset.scale));
        let [cx, cy, n] = [0, 0, 0];
        gt.on.forEach((v, k) => {
          if (v) {
            cx += k % gt.w;
            cy += Math.floor(k / gt.w);
            n++;
          }
        });
        const at = await painterPoint(cx / n, cy / n);
        await page.mouse.move(at.x, at.y);
        await page.mouse.wheel({ deltaY: -300 });
        // Drag the defect half way to the middle of the canvas.
        const mid = { x: canvasBox.x + canvasBox.width / 2, y: canvasBox.y + canvasBox.height / 2 };
        await page.mouse.down({ button: 'right' });
        await page.mouse.move((at.x + mid.x) / 2, (at.y + mid.y) / 2, { steps: 4 });
        await page.mouse.up({ button: 'right' });
        const after = await page.$eval('.painter-canvas', (c) => Number(c.dataset.scale));
        assert.ok(after > before * 1.2, `the wheel zooms in (${before} → ${after})`);
      }
      await brushOver(gt, 3);
      // A stray stroke far from the defect, undone with Ctrl+Z.
      const a = await painterPoint(2, 2);
      await page.mouse.click(a.x, a.y);
      await page.keyboard.down('Control');
      await page.keyboard.press('z');
      await page.keyboard.up('Control');
    }
    if (i === 1) await shot('02-painter');
    await page.click('.painter .primary');
    await page.waitForSelector('.painter', { hidden: true });
    await waitFor((id) => document.querySelector(`[data-image-id="${id}"]`)?.dataset.hasMask === 'true', imageId);
    const stored = await maskPixels(Buffer.from(await (await api(`/v1/projects/${projectId}/images/${imageId}/mask`)).arrayBuffer()).toString('base64'));
    const { coverage, precision } = agreement(stored, gt);
    log(`mask ${i + 1} (${i === 0 ? 'lasso' : i === 2 ? 'brush, zoomed and panned' : 'brush'}): covers ${(100 * coverage).toFixed(0)}% of the defect, ${(100 * precision).toFixed(0)}% of it on or next to the defect`);
    assert.ok(coverage > 0.8 && precision > 0.9, `the stored mask ${i + 1} is where the defect was painted`);
  }

  // -------------------------------------------------------------- good examples, fit
  await (await page.$(testid('drop-normal-input'))).uploadFile(...normalFiles);
  await waitFor((n) => document.querySelectorAll('[data-testid="example"][data-role="normal"]').length === n, NORMALS);
  assert.ok(!(await page.$eval(testid('fit-button'), (b) => b.disabled)), 'Fit is enabled once every defect image has a mask');

  // Queries dropped before the fit wait for the model.
  await (await page.$(testid('drop-query-input'))).uploadFile(...queryFiles);
  await waitFor((n) => document.querySelectorAll('[data-testid="result"][data-status="waiting"]').length === n, QUERIES);
  if (!MEASURE) {
    // The images are 128 px: a 128 px model (the README's --measure run keeps the default).
    await page.$eval(testid('opt-size'), (i) => { i.value = ''; });
    await page.type(testid('opt-size'), '128');
  }
  await page.click(testid('fit-button'));
  await waitLong(() => document.querySelector('[data-testid="fit-gallery"]')?.dataset.ms);
  const fitToGallery = Number(await page.$eval(testid('fit-gallery'), (e) => e.dataset.ms));
  const fitStatus = await text(testid('fit-status'));
  log('fit:', fitStatus);
  log(`from Fit to a filled gallery of ${QUERIES} images (${DEFECTS}+${NORMALS} examples): ${fitToGallery} ms`);
  assert.match(fitStatus, new RegExp(`on ${DEFECTS} defect \\+ ${NORMALS} good images`));
  assert.equal(await count('[data-testid="result"][data-status="done"]'), QUERIES, 'every query scored');

  // -------------------------------------------------------------- scores from the page
  const cards = () => page.$$eval('[data-testid="result"]', (els) => els.map((e) => ({
    name: e.querySelector('.name').textContent,
    score: Number(e.querySelector('[data-testid="result-score"]').dataset.score),
    badge: e.querySelector('[data-testid="result-badge"]').textContent,
    area: Number(e.querySelector('[data-testid="result-area"]').dataset.px),
  })));
  const before = await cards();
  assert.equal(before.length, QUERIES);
  for (const c of before) assert.ok(Number.isFinite(c.score), `${c.name} has a score`);
  const sortedDesc = before.every((c, i) => i === 0 || before[i - 1].score >= c.score);
  assert.ok(sortedDesc, 'the gallery is sorted by score, highest first');
  const goodNames = new Set(queryGood.map((f) => f.split('/').at(-1)));
  const isGood = (c) => goodNames.has(c.name);
  const mean = (a) => a.reduce((s, c) => s + c.score, 0) / a.length;
  const meanDefect = mean(before.filter((c) => !isGood(c)));
  const meanGood = mean(before.filter(isGood));
  log(`mean score: defect queries ${meanDefect.toFixed(3)}, good queries ${meanGood.toFixed(3)}`);
  assert.ok(meanDefect > meanGood, 'defect queries score higher than good ones on average');
  // The page's numbers are the service's: one image through the API directly.
  const probe = queryFiles[0].split('/').at(-1);
  const direct = await (await fetch(`${base}/v1/projects/${projectId}/predict`, { method: 'POST', body: readFileSync(queryFiles[0]), headers: { 'Content-Type': 'image/png' } })).json();
  assert.ok(Math.abs(before.find((c) => c.name === probe).score - direct.image_score) < 1e-6, 'the page shows the score the API gives');
  await shot('03-results');

  // -------------------------------------------------------------- threshold slider
  const pixels = () => page.$$eval('[data-testid="result-canvas"]', (cs) => cs.map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
    return h;
  }));
  const pixelsBefore = await pixels();
  const thresholdBefore = await text(testid('threshold-value'));
  const slider = await page.$(testid('threshold'));
  await slider.scrollIntoView();
  const box = await slider.boundingBox();
  await page.mouse.click(box.x + box.width * 0.15, box.y + box.height / 2);
  await waitFor((t) => document.querySelector('[data-testid="threshold-value"]').textContent !== t, thresholdBefore);
  await new Promise((r) => setTimeout(r, 200));
  const after = await cards();
  const pixelsAfter = await pixels();
  const areaOf = (cs) => Object.fromEntries(cs.map((c) => [c.name, c.area]));
  const a0 = areaOf(before);
  const grown = after.filter((c) => c.area > a0[c.name]).length;
  log(`threshold ${thresholdBefore} → ${await text(testid('threshold-value'))}: ${grown}/${QUERIES} masks grew`);
  assert.ok(grown > 0, 'a lower threshold grows the shown masks');
  assert.ok(after.every((c) => c.area >= a0[c.name]), 'no mask shrinks when the threshold is lowered');
  assert.notDeepEqual(pixelsAfter, pixelsBefore, 'the drawn overlays change with the threshold');
  assert.ok(after.filter((c) => c.badge === 'DEFECT').length >= before.filter((c) => c.badge === 'DEFECT').length);
  // The verdict threshold moves the badges: at its low end every image is defective.
  const verdict = await page.$(testid('image-threshold'));
  await verdict.scrollIntoView();
  const vbox = await verdict.boundingBox();
  await page.mouse.click(vbox.x + 2, vbox.y + vbox.height / 2);
  await waitFor((n) => [...document.querySelectorAll('[data-testid="result-badge"]')].filter((b) => b.textContent === 'DEFECT').length === n, QUERIES);
  const defectiveBefore = before.filter((c) => c.badge === 'DEFECT').length;
  log(`verdict threshold to its low end: ${defectiveBefore} → ${QUERIES} defective`);
  assert.ok(defectiveBefore < QUERIES, 'at the model\'s thresholds some images are good');
  await page.click('#threshold-reset');
  await waitFor((t) => document.querySelector('[data-testid="threshold-value"]').textContent === t, thresholdBefore);
  await waitFor((n) => [...document.querySelectorAll('[data-testid="result-badge"]')].filter((b) => b.textContent === 'DEFECT').length === n, defectiveBefore);

  // -------------------------------------------------------------- large view, corrections
  // The good query with the highest score: "this is good".
  const good = before.filter(isGood)[0];
  await page.evaluate((name) => [...document.querySelectorAll('[data-testid="result"]')].find((e) => e.querySelector('.name').textContent === name).click(), good.name);
  await page.waitForSelector(testid('large-view'));
  const lc = await (await page.$(testid('large-canvas'))).boundingBox();
  await page.mouse.move(lc.x + lc.width / 2, lc.y + lc.height / 2);
  await waitFor(() => /map value/.test(document.querySelector('[data-testid="readout"]').textContent));
  log('readout:', await text(testid('readout')));
  await shot('04-large-view');
  await page.click(testid('mark-good'));
  await waitFor((n) => document.querySelectorAll('[data-testid="example"][data-role="normal"]').length === n, NORMALS + 1);
  await page.click(testid('close-large'));

  // The defect query with the lowest score: "this is a defect", painted from the predicted mask.
  const missed = [...before].reverse().find((c) => !isGood(c));
  const missedFile = queryFiles.find((f) => f.endsWith(`/${missed.name}`));
  await page.evaluate((name) => [...document.querySelectorAll('[data-testid="result"]')].find((e) => e.querySelector('.name').textContent === name).click(), missed.name);
  await page.waitForSelector(testid('large-view'));
  await page.click(testid('mark-defect'));
  await page.waitForSelector('.painter-canvas');
  const gt = await maskPixels(readFileSync(gtOf(missedFile)).toString('base64'));
  // Start from an empty mask (Clear), click a polygon around the defect (Enter closes it),
  // then paint over the defect with the brush.
  await page.evaluate(() => [...document.querySelectorAll('.painter button')].find((b) => b.textContent === 'Clear').click());
  await page.keyboard.press('l');
  let [x0, y0, x1, y1] = [gt.w, gt.h, 0, 0];
  gt.on.forEach((v, k) => {
    if (!v) return;
    const [x, y] = [k % gt.w, Math.floor(k / gt.w)];
    [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
  });
  for (const [x, y] of [[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x1 + 1, y1 + 1], [x0 - 1, y1 + 1]]) {
    const pt = await painterPoint(x, y);
    await page.mouse.click(pt.x, pt.y);
  }
  await page.keyboard.press('Enter');
  await page.keyboard.press('b');
  await brushOver(gt, 3);
  await shot('05-correct-defect');
  await page.click('.painter .primary');
  await page.waitForSelector('.painter', { hidden: true });
  await waitFor((n) => document.querySelectorAll('[data-testid="example"][data-role="defect"][data-has-mask="true"]').length === n, DEFECTS + 1);
  const corrected = await page.evaluate((name) => [...document.querySelectorAll('[data-testid="example"][data-role="defect"]')]
    .find((e) => e.querySelector('figcaption').textContent === name)?.dataset.imageId, missed.name);
  assert.ok(corrected, `${missed.name} is a defect example`);
  const correctedMask = await maskPixels(Buffer.from(await (await api(`/v1/projects/${projectId}/images/${corrected}/mask`)).arrayBuffer()).toString('base64'));
  const filled = correctedMask.on.reduce((a, b) => a + b, 0);
  const polygonArea = (x1 - x0 + 3) * (y1 - y0 + 3);
  log(`corrected ${missed.name}: covers ${(100 * agreement(correctedMask, gt).coverage).toFixed(0)}% of the defect, ${filled} px painted (polygon box ${polygonArea} px)`);
  assert.ok(agreement(correctedMask, gt).coverage > 0.9, 'the corrected mask covers the defect');
  assert.ok(filled >= 0.8 * polygonArea, 'the clicked polygon was filled');
  // The box's corners are away from the defect: only the polygon painted them.
  for (const [x, y] of [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) {
    assert.equal(correctedMask.on[y * gt.w + x], 1, `polygon corner (${x}, ${y}) is in the mask`);
  }
  await page.click(testid('close-large'));

  // -------------------------------------------------------------- fit again
  assert.match(await text(testid('fit-button')), /Fit again \(2 changes\)/);
  const galleryBefore = await page.$eval(testid('fit-gallery'), (e) => e.textContent);
  await page.click(testid('fit-button'));
  await waitLong(() => document.querySelector('[data-testid="fit-gallery"]')?.dataset.ms && !document.querySelector('[data-testid="fit-button"]').disabled && /Fit again$/.test(document.querySelector('[data-testid="fit-button"]').textContent));
  const refit = await text(testid('fit-status'));
  log('refit:', refit, '·', await text(testid('fit-gallery')), '(was:', galleryBefore, ')');
  assert.match(refit, new RegExp(`on ${DEFECTS + 1} defect \\+ ${NORMALS + 1} good images`));
  assert.equal(await count('[data-testid="result"][data-status="done"]'), QUERIES, 'every query scored again');
  const model = await (await api(`/v1/projects/${projectId}/model/info`)).json();
  const shown = await page.$$eval('[data-testid="result"]', (els) => els.length);
  assert.equal(shown, QUERIES);
  await shot('06-refit');
  // The large view of the highest-scored result, with the map read under the pointer at the
  // middle of its mask.
  await page.click('[data-testid="result"]');
  await page.waitForSelector(testid('large-view'));
  const spot = await page.$eval(testid('large-canvas'), (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let [sx, sy, n] = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) {
      // The mask's fill and outline are drawn in (0, 255, 170).
      if (d[i] < 90 && d[i + 1] > 200) {
        const p = i / 4;
        sx += p % c.width;
        sy += Math.floor(p / c.width);
        n++;
      }
    }
    const r = c.getBoundingClientRect();
    const k = r.width / c.width;
    return n ? { x: r.left + (sx / n) * k, y: r.top + (sy / n) * k } : { x: r.left + r.width / 2, y: r.top + r.height / 2 };
  });
  await page.mouse.move(spot.x, spot.y);
  await waitFor(() => /above the mask threshold/.test(document.querySelector('[data-testid="readout"]').textContent));
  await shot('08-large-view-defect');
  await page.click(testid('close-large'));

  // -------------------------------------------------------------- exports
  await page.click(testid('download-model'));
  await page.click(testid('export-csv'));
  const waitFile = async (suffix) => {
    for (let i = 0; i < 200; i++) {
      const f = readdirSync(downloads).find((n) => n.endsWith(suffix));
      if (f) return join(downloads, f);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no ${suffix} file was downloaded`);
  };
  const modelFile = await waitFile('.bpgg');
  const served = Buffer.from(await (await api(`/v1/projects/${projectId}/model`)).arrayBuffer());
  assert.ok(readFileSync(modelFile).equals(served), 'the downloaded model is the service\'s model file');
  assert.equal(served.length, model.model_bytes);
  const csv = readFileSync(await waitFile('.csv'), 'utf8').trim().split('\n');
  assert.match(csv[0], /^file,image_score,defective,image_threshold,threshold,/);
  assert.equal(csv.length, QUERIES + 1, 'one CSV row per result');
  log(`downloaded ${modelFile.split('/').at(-1)} (${served.length} bytes) and a CSV of ${csv.length - 1} rows`);

  // -------------------------------------------------------------- back to the list
  await page.click('.brand');
  await page.waitForSelector(testid('project-card'));
  await shot('07-projects');
  // Rename, then delete (with its images and model).
  promptAnswer = 'Synthetic tiles, line 2';
  await page.evaluate(() => [...document.querySelectorAll('[data-testid="project-card"] button')].find((b) => b.textContent === 'Rename').click());
  await waitFor(() => /line 2/.test(document.querySelector('[data-testid="project-card"] h2')?.textContent));
  assert.equal((await (await api(`/v1/projects/${projectId}`)).json()).name, 'Synthetic tiles, line 2');
  await page.evaluate(() => [...document.querySelectorAll('[data-testid="project-card"] button')].find((b) => b.textContent === 'Delete').click());
  await page.waitForSelector('.projects .empty');
  assert.equal((await fetch(`${base}/v1/projects/${projectId}`)).status, 404, 'the deleted project is gone');
  log('renamed and deleted the project');

  // -------------------------------------------------------------- a service with a token
  // The page loads without the token, asks for it at the first 401, and then works.
  const token = 'e2e-secret-token';
  const guarded = spawn(BPGG, ['serve', '--data-dir', join(work, 'store-token'), '--bind', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BPGG_TOKEN: token } });
  try {
    let out = '';
    const url = await new Promise((res, rej) => {
      guarded.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/listening on (http:\/\/[0-9.:]+)/);
        if (m) res(m[1]);
      });
      guarded.on('exit', (code) => rej(new Error(`bpgg serve --token exited (${code}): ${out}`)));
    });
    const created = await fetch(`${url}/v1/projects`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: '{"name":"Behind a token"}' });
    assert.equal(created.status, 201);
    const seen = problems.length;
    await page.goto(url, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('#token-dialog[open]');
    await page.type('#token-input', 'wrong');
    await page.keyboard.press('Enter');
    await waitFor(() => document.querySelector('#token-dialog[open]') && /Refused/.test(document.querySelector('#token-error').textContent));
    await page.$eval('#token-input', (i) => { i.value = ''; });
    await page.type('#token-input', token);
    await page.keyboard.press('Enter');
    await page.waitForSelector(testid('project-card'));
    assert.match(await text(testid('project-card')), /Behind a token/);
    // The 401s of this phase are the point of it; nothing else may have gone wrong.
    const expected = problems.splice(seen).filter((p) => !/401/.test(p));
    assert.deepEqual(expected, [], 'only the expected 401s while the token was missing or wrong');
    log('token: asked for, a wrong one refused, the right one used');
  } finally {
    guarded.kill('SIGTERM');
  }

  if (MEASURE) {
    const weight = await page.evaluate(() => performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
      .filter((e) => e.name.startsWith(location.origin) && !e.name.includes('/v1/')).reduce((s, e) => s + e.decodedBodySize, 0));
    log(`page weight (HTML, JS, CSS, icon; uncompressed): ${weight} bytes`);
    writeFileSync(join(SHOTS, 'measure.json'), JSON.stringify({ defects: DEFECTS, normals: NORMALS, queries: QUERIES, fit_to_gallery_ms: fitToGallery, page_weight_bytes: weight }, null, 2));
  }
  assert.deepEqual(problems, [], 'no console error, page error, failed request or HTTP error');
} catch (e) {
  failed = e;
  await page.screenshot({ path: join(SHOTS, 'failure.png') }).catch(() => {});
  const shown = await page.$$eval('.toast, .error, .flag', (els) => els.map((e) => e.textContent).filter(Boolean)).catch(() => []);
  if (shown.length) console.error(`messages in the page:\n  ${shown.join('\n  ')}`);
} finally {
  await browser.close().catch(() => {});
  server.kill('SIGTERM');
  await new Promise((r) => (server.exitCode !== null ? r() : server.on('exit', r)));
}
if (failed) {
  console.error(`studio e2e FAILED after ${((Date.now() - started) / 1000).toFixed(1)} s: ${failed.stack ?? failed}`);
  if (problems.length) console.error(`problems seen:\n  ${problems.join('\n  ')}`);
  console.error(`server output:\n${serverOut}`);
  console.error(`screenshots and data: ${SHOTS} ${work}`);
  process.exit(1);
}
log(`studio e2e passed (${((Date.now() - started) / 1000).toFixed(1)} s); screenshots in ${SHOTS}`);
for (const d of ['data', 'store', 'profile', 'downloads']) rmSync(join(work, d), { recursive: true, force: true });
if (!SHOTS.startsWith(work)) rmSync(work, { recursive: true, force: true });
