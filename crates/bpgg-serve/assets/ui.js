// Small DOM helpers shared by the studio's modules.

/** An element: `el('button', {class: 'x', onclick: f}, ['text', child])`. */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const c of Array.isArray(children) ? children : [children]) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** A message at the bottom of the window; errors stay until closed. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const close = el('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×');
  const item = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, [el('span', {}, message), close]);
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 4000);
  return item;
}

export function formatMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatScore(v) {
  return Number.isFinite(v) ? v.toFixed(3) : '–';
}

/** Decodes an image Blob; rejects with a message naming `name` when the browser cannot. */
export function decodeImage(blob, name) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error(`${name}: the browser cannot show this image (${blob.type || 'unknown type'}; TIFF has no preview in browsers)`));
    };
    img.src = url;
  });
}

/** Saves a Blob as a file through the browser's download. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Image files among dropped or picked files (by type or extension). */
export function imageFiles(files) {
  return [...files].filter((f) => /^image\/(png|jpeg|tiff)$/.test(f.type) || /\.(png|jpe?g|tiff?)$/i.test(f.name));
}

/** Files of a drop, folders included (walked recursively). */
export async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const out = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      out.push(await new Promise((res, rej) => entry.file(res, rej)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e);
      }
    }
  };
  for (const e of entries) await walk(e);
  return out;
}

/** A drop zone with a file picker and a folder picker; `onFiles(files)` gets image files. */
export function dropZone({ label, hint, onFiles, testid }) {
  const pick = el('input', { type: 'file', multiple: true, accept: 'image/png,image/jpeg,image/tiff,.png,.jpg,.jpeg,.tif,.tiff', hidden: true, 'data-testid': testid ? `${testid}-input` : null });
  const folder = el('input', { type: 'file', multiple: true, webkitdirectory: true, hidden: true });
  const send = (files) => {
    const images = imageFiles(files);
    const skipped = files.length - images.length;
    if (skipped > 0) toast(`${skipped} file(s) skipped: not PNG, JPEG or TIFF`, 'warn');
    if (images.length) onFiles(images);
  };
  pick.addEventListener('change', () => { send([...pick.files]); pick.value = ''; });
  folder.addEventListener('change', () => { send([...folder.files]); folder.value = ''; });
  const zone = el('div', { class: 'drop', 'data-testid': testid }, [
    el('strong', {}, label),
    el('span', { class: 'muted' }, hint),
    el('span', { class: 'drop-actions' }, [
      el('button', { type: 'button', onclick: () => pick.click() }, 'Choose files'),
      el('button', { type: 'button', onclick: () => folder.click() }, 'Choose a folder'),
    ]),
    pick,
    folder,
  ]);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    send(await droppedFiles(e.dataTransfer));
  });
  return zone;
}
