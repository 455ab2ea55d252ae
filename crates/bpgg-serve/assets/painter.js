// The mask painter: a canvas over the image with a brush, an eraser, a lasso/polygon fill,
// zoom and pan, undo/redo, clear and the mask's opacity. `paintMask` opens it full-window and
// resolves with the mask as a 0/255 PNG Blob (Save) or null (Cancel).

import { el } from './ui.js';

// Undo steps kept: at most 40, and at most ~256 MB of snapshots for large images.
const MAX_UNDO = 40;
const MAX_UNDO_BYTES = 256 * 1024 * 1024;
const MASK_COLOR = 'rgb(255, 48, 48)';

/**
 * Opens the painter on `image` (a decoded HTMLImageElement or ImageBitmap) with the mask
 * `initial` (an image of the same size whose white pixels are defect, or null).
 * `title` names the image; `save(blob)` stores the PNG and may throw (its message is shown and
 * the painter stays open).
 */
export function paintMask({ image, initial, title, save }) {
  return new Promise((resolve) => {
    const painter = new Painter(image, initial, title, save, resolve);
    painter.open();
  });
}

class Painter {
  constructor(image, initial, title, save, done) {
    this.image = image;
    this.w = image.naturalWidth || image.width;
    this.h = image.naturalHeight || image.height;
    this.saveFn = save;
    this.done = done;
    this.tool = 'brush';
    this.size = Math.max(4, Math.round(Math.min(this.w, this.h) / 25));
    this.opacity = 0.55;
    this.scale = 1;
    this.ox = 0;
    this.oy = 0;
    this.undo = [];
    this.redo = [];
    this.pointer = null; // last pointer position, CSS px inside the canvas
    this.stroke = null; // {kind: 'paint'|'pan'|'lasso', ...}
    this.poly = null; // polygon being clicked (image coordinates)
    this.space = false;
    this.dirty = false;

    this.mask = document.createElement('canvas');
    this.mask.width = this.w;
    this.mask.height = this.h;
    this.mctx = this.mask.getContext('2d', { willReadFrequently: true });
    if (initial) this.loadInitial(initial);
    this.build(title);
  }

  loadInitial(initial) {
    // White pixels of the stored mask become painted pixels.
    const tmp = document.createElement('canvas');
    tmp.width = this.w;
    tmp.height = this.h;
    const t = tmp.getContext('2d', { willReadFrequently: true });
    t.drawImage(initial, 0, 0, this.w, this.h);
    const src = t.getImageData(0, 0, this.w, this.h).data;
    const out = this.mctx.createImageData(this.w, this.h);
    for (let i = 0; i < src.length; i += 4) {
      if (src[i] > 127) {
        out.data[i] = 255;
        out.data[i + 1] = 48;
        out.data[i + 2] = 48;
        out.data[i + 3] = 255;
      }
    }
    this.mctx.putImageData(out, 0, 0);
  }

  build(title) {
    const tool = (name, label, key) =>
      el('button', { type: 'button', class: 'tool', 'data-tool': name, title: `${label} (${key})`, onclick: () => this.setTool(name) }, [
        label, el('kbd', {}, key),
      ]);
    this.sizeInput = el('input', { type: 'range', min: 1, max: 200, value: this.size, 'aria-label': 'Brush size', oninput: (e) => this.setSize(Number(e.target.value)) });
    this.sizeLabel = el('span', { class: 'num' });
    this.opacityInput = el('input', {
      type: 'range', min: 0, max: 100, value: Math.round(this.opacity * 100), 'aria-label': 'Mask opacity',
      oninput: (e) => { this.opacity = Number(e.target.value) / 100; this.render(); },
    });
    this.undoButton = el('button', { type: 'button', title: 'Undo (Ctrl+Z)', onclick: () => this.doUndo() }, 'Undo');
    this.redoButton = el('button', { type: 'button', title: 'Redo (Ctrl+Y)', onclick: () => this.doRedo() }, 'Redo');
    this.status = el('span', { class: 'painter-status' });
    this.error = el('p', { class: 'error', role: 'alert' });
    this.canvas = el('canvas', { class: 'painter-canvas', 'aria-label': `Mask of ${title}` });
    this.wrap = el('div', { class: 'painter-wrap' }, [this.canvas]);
    this.saveButton = el('button', { type: 'button', class: 'primary', onclick: () => this.doSave() }, 'Save mask');
    this.root = el('div', { class: 'modal painter', role: 'dialog', 'aria-modal': 'true', 'aria-label': `Paint the defect: ${title}` }, [
      el('div', { class: 'painter-bar' }, [
        el('strong', {}, `Paint the defect — ${title}`),
        el('div', { class: 'tools' }, [tool('brush', 'Brush', 'B'), tool('eraser', 'Eraser', 'E'), tool('lasso', 'Lasso', 'L')]),
        el('label', { class: 'inline' }, ['Size ', this.sizeInput, this.sizeLabel]),
        el('label', { class: 'inline' }, ['Opacity ', this.opacityInput]),
        this.undoButton,
        this.redoButton,
        el('button', { type: 'button', title: 'Remove the whole mask', onclick: () => this.doClear() }, 'Clear'),
        el('button', { type: 'button', title: 'Fit the image to the window (0)', onclick: () => { this.fitView(); this.render(); } }, 'Fit view'),
        el('span', { class: 'spacer' }),
        el('button', { type: 'button', onclick: () => this.close(null) }, 'Cancel'),
        this.saveButton,
      ]),
      this.wrap,
      el('div', { class: 'painter-foot' }, [
        this.status,
        el('span', { class: 'muted' }, 'Paint over the whole defect. Wheel: zoom · Space+drag or right-drag: pan · [ ]: size · Ctrl+Z / Ctrl+Y'),
        this.error,
      ]),
    ]);
    this.setSize(this.size);
    this.setTool('brush');
  }

  open() {
    document.body.append(this.root);
    this.onKey = (e) => this.key(e, true);
    this.onKeyUp = (e) => this.key(e, false);
    this.onResize = () => { this.resize(); this.render(); };
    window.addEventListener('keydown', this.onKey, true);
    window.addEventListener('keyup', this.onKeyUp, true);
    window.addEventListener('resize', this.onResize);
    const c = this.canvas;
    c.addEventListener('pointerdown', (e) => this.down(e));
    c.addEventListener('pointermove', (e) => this.move(e));
    c.addEventListener('pointerup', (e) => this.up(e));
    c.addEventListener('pointercancel', () => { this.stroke = null; this.render(); });
    c.addEventListener('pointerleave', () => { if (!this.stroke) { this.pointer = null; this.render(); } });
    c.addEventListener('dblclick', (e) => { e.preventDefault(); this.closePolygon(e.altKey); });
    c.addEventListener('contextmenu', (e) => e.preventDefault());
    c.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
    this.resize();
    this.fitView();
    this.render();
    this.saveButton.focus();
  }

  close(result) {
    window.removeEventListener('keydown', this.onKey, true);
    window.removeEventListener('keyup', this.onKeyUp, true);
    window.removeEventListener('resize', this.onResize);
    this.root.remove();
    this.done(result);
  }

  // ---- view

  resize() {
    const r = this.wrap.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.cw = Math.max(1, r.width);
    this.ch = Math.max(1, r.height);
    this.canvas.width = Math.round(this.cw * dpr);
    this.canvas.height = Math.round(this.ch * dpr);
    this.canvas.style.width = `${this.cw}px`;
    this.canvas.style.height = `${this.ch}px`;
  }

  fitView() {
    this.scale = Math.min(this.cw / this.w, this.ch / this.h) * 0.96;
    this.ox = (this.cw - this.w * this.scale) / 2;
    this.oy = (this.ch - this.h * this.scale) / 2;
  }

  /** Image coordinates of a pointer event. */
  at(e) {
    const r = this.canvas.getBoundingClientRect();
    const sx = e.clientX - r.left;
    const sy = e.clientY - r.top;
    return { sx, sy, x: (sx - this.ox) / this.scale, y: (sy - this.oy) / this.scale };
  }

  render() {
    const ctx = this.canvas.getContext('2d');
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#1d2126';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr * this.scale, 0, 0, dpr * this.scale, dpr * this.ox, dpr * this.oy);
    ctx.imageSmoothingEnabled = this.scale < 2;
    ctx.drawImage(this.image, 0, 0, this.w, this.h);
    ctx.globalAlpha = this.opacity;
    ctx.drawImage(this.mask, 0, 0);
    ctx.globalAlpha = 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const toScreen = (p) => [this.ox + p.x * this.scale, this.oy + p.y * this.scale];
    const path = this.stroke?.kind === 'lasso' ? this.stroke.points : this.poly;
    if (path && path.length) {
      ctx.beginPath();
      path.forEach((p, i) => (i ? ctx.lineTo(...toScreen(p)) : ctx.moveTo(...toScreen(p))));
      if (this.poly && this.pointer && !this.stroke) ctx.lineTo(this.pointer.sx, this.pointer.sy);
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1.5;
      ctx.setLineDash([5, 4]);
      ctx.stroke();
      ctx.setLineDash([]);
      if (this.poly) {
        const [fx, fy] = toScreen(this.poly[0]);
        ctx.strokeRect(fx - 4, fy - 4, 8, 8);
      }
    }
    if (this.pointer && (this.tool === 'brush' || this.tool === 'eraser') && this.stroke?.kind !== 'pan') {
      ctx.beginPath();
      ctx.arc(this.pointer.sx, this.pointer.sy, Math.max(1, (this.size * this.scale) / 2), 0, Math.PI * 2);
      ctx.strokeStyle = this.tool === 'eraser' ? '#9fd3ff' : '#fff';
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    // Where the image is on the canvas (read by the end-to-end test to paint at image points).
    this.canvas.dataset.scale = String(this.scale);
    this.canvas.dataset.ox = String(this.ox);
    this.canvas.dataset.oy = String(this.oy);
    this.undoButton.disabled = this.undo.length === 0;
    this.redoButton.disabled = this.redo.length === 0;
    this.status.textContent = `${this.w}×${this.h} px · zoom ${Math.round(this.scale * 100)}%`;
  }

  // ---- tools

  setTool(name) {
    if (name !== 'lasso') this.poly = null;
    this.tool = name;
    for (const b of this.root.querySelectorAll('[data-tool]')) {
      b.classList.toggle('active', b.dataset.tool === name);
      b.setAttribute('aria-pressed', String(b.dataset.tool === name));
    }
    this.canvas.style.cursor = name === 'lasso' ? 'crosshair' : 'none';
    this.render?.();
  }

  setSize(size) {
    this.size = Math.min(400, Math.max(1, Math.round(size)));
    this.sizeInput.value = String(Math.min(200, this.size));
    this.sizeLabel.textContent = `${this.size} px`;
    if (this.canvas && this.cw) this.render();
  }

  snapshot() {
    this.undo.push(this.mctx.getImageData(0, 0, this.w, this.h));
    const limit = Math.max(3, Math.min(MAX_UNDO, Math.floor(MAX_UNDO_BYTES / (this.w * this.h * 4))));
    while (this.undo.length > limit) this.undo.shift();
    this.redo = [];
    this.dirty = true;
  }

  doUndo() {
    if (!this.undo.length) return;
    this.redo.push(this.mctx.getImageData(0, 0, this.w, this.h));
    this.mctx.putImageData(this.undo.pop(), 0, 0);
    this.dirty = true;
    this.render();
  }

  doRedo() {
    if (!this.redo.length) return;
    this.undo.push(this.mctx.getImageData(0, 0, this.w, this.h));
    this.mctx.putImageData(this.redo.pop(), 0, 0);
    this.dirty = true;
    this.render();
  }

  doClear() {
    this.snapshot();
    this.mctx.clearRect(0, 0, this.w, this.h);
    this.poly = null;
    this.render();
  }

  paintTo(p, erase) {
    const m = this.mctx;
    m.globalCompositeOperation = erase ? 'destination-out' : 'source-over';
    m.strokeStyle = MASK_COLOR;
    m.fillStyle = MASK_COLOR;
    m.lineCap = 'round';
    m.lineJoin = 'round';
    m.lineWidth = this.size;
    const last = this.stroke.last;
    if (last) {
      m.beginPath();
      m.moveTo(last.x, last.y);
      m.lineTo(p.x, p.y);
      m.stroke();
    } else {
      m.beginPath();
      m.arc(p.x, p.y, this.size / 2, 0, Math.PI * 2);
      m.fill();
    }
    m.globalCompositeOperation = 'source-over';
    this.stroke.last = { x: p.x, y: p.y };
  }

  fillPolygon(points, erase) {
    if (points.length < 3) return;
    this.snapshot();
    const m = this.mctx;
    m.globalCompositeOperation = erase ? 'destination-out' : 'source-over';
    m.fillStyle = MASK_COLOR;
    m.beginPath();
    points.forEach((p, i) => (i ? m.lineTo(p.x, p.y) : m.moveTo(p.x, p.y)));
    m.closePath();
    m.fill();
    m.globalCompositeOperation = 'source-over';
  }

  closePolygon(erase) {
    if (this.poly && this.poly.length >= 3) this.fillPolygon(this.poly, erase);
    this.poly = null;
    this.render();
  }

  // ---- pointer

  down(e) {
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    const p = this.at(e);
    this.pointer = p;
    if (e.button === 1 || e.button === 2 || this.space) {
      this.stroke = { kind: 'pan', sx: p.sx, sy: p.sy, ox: this.ox, oy: this.oy };
      this.canvas.style.cursor = 'grabbing';
      return;
    }
    if (e.button !== 0) return;
    if (this.tool === 'lasso') {
      this.stroke = { kind: 'lasso', points: [p], start: p, erase: e.altKey };
    } else {
      this.snapshot();
      this.stroke = { kind: 'paint', erase: this.tool === 'eraser', last: null };
      this.paintTo(p, this.stroke.erase);
    }
    this.render();
  }

  move(e) {
    const p = this.at(e);
    this.pointer = p;
    const s = this.stroke;
    if (s?.kind === 'pan') {
      this.ox = s.ox + (p.sx - s.sx);
      this.oy = s.oy + (p.sy - s.sy);
    } else if (s?.kind === 'paint') {
      // Coalesced events keep fast strokes continuous.
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of events.length ? events : [e]) this.paintTo(this.at(ev), s.erase);
    } else if (s?.kind === 'lasso') {
      s.points.push(p);
    }
    this.render();
  }

  up(e) {
    const s = this.stroke;
    this.stroke = null;
    if (s?.kind === 'pan') this.setTool(this.tool);
    if (s?.kind === 'lasso') {
      const moved = s.points.reduce((d, q) => Math.max(d, Math.hypot(q.sx - s.start.sx, q.sy - s.start.sy)), 0);
      const p = this.at(e);
      if (moved > 6) {
        // A drag: fill what it went around.
        this.poly = null;
        this.fillPolygon(s.points, s.erase);
      } else if (!this.poly) {
        this.poly = [p];
      } else {
        const [f] = this.poly;
        const first = { sx: this.ox + f.x * this.scale, sy: this.oy + f.y * this.scale };
        if (this.poly.length >= 3 && Math.hypot(p.sx - first.sx, p.sy - first.sy) < 8) this.closePolygon(s.erase);
        else this.poly.push(p);
      }
    }
    this.render();
  }

  wheel(e) {
    e.preventDefault();
    const p = this.at(e);
    const factor = Math.exp(-e.deltaY * 0.0015);
    const scale = Math.min(40, Math.max(0.05, this.scale * factor));
    this.ox = p.sx - p.x * scale;
    this.oy = p.sy - p.y * scale;
    this.scale = scale;
    this.render();
  }

  key(e, isDown) {
    if (e.target instanceof HTMLInputElement && e.target.type !== 'range') return;
    if (e.code === 'Space') {
      this.space = isDown;
      e.preventDefault();
      return;
    }
    if (!isDown) return;
    const ctrl = e.ctrlKey || e.metaKey;
    const k = e.key.toLowerCase();
    let handled = true;
    if (ctrl && k === 'z' && !e.shiftKey) this.doUndo();
    else if (ctrl && (k === 'y' || (k === 'z' && e.shiftKey))) this.doRedo();
    else if (ctrl && k === 's') this.doSave();
    else if (ctrl) handled = false;
    else if (k === 'b') this.setTool('brush');
    else if (k === 'e') this.setTool('eraser');
    else if (k === 'l') this.setTool('lasso');
    else if (e.key === '[') this.setSize(this.size / 1.25 - 1);
    else if (e.key === ']') this.setSize(this.size * 1.25 + 1);
    else if (e.key === '0') { this.fitView(); this.render(); }
    else if (e.key === 'Enter' && this.poly) this.closePolygon(e.altKey);
    else if (e.key === 'Escape') {
      if (this.poly) { this.poly = null; this.render(); }
      else if (!this.dirty || window.confirm('Close the painter and lose the changes?')) this.close(null);
    } else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  // ---- save

  /** The mask as a 0/255 grayscale PNG and its number of defect pixels. */
  async encode() {
    const src = this.mctx.getImageData(0, 0, this.w, this.h).data;
    const out = new ImageData(this.w, this.h);
    let painted = 0;
    for (let i = 0; i < src.length; i += 4) {
      const v = src[i + 3] > 127 ? 255 : 0;
      painted += v ? 1 : 0;
      out.data[i] = v;
      out.data[i + 1] = v;
      out.data[i + 2] = v;
      out.data[i + 3] = 255;
    }
    const c = document.createElement('canvas');
    c.width = this.w;
    c.height = this.h;
    c.getContext('2d').putImageData(out, 0, 0);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    return { blob, painted };
  }

  async doSave() {
    this.error.textContent = '';
    const { blob, painted } = await this.encode();
    if (painted === 0) {
      this.error.textContent = 'The mask is empty: paint over the defect first (or Cancel).';
      return;
    }
    this.saveButton.disabled = true;
    this.saveButton.textContent = 'Saving…';
    try {
      await this.saveFn(blob);
      this.close(blob);
    } catch (err) {
      this.error.textContent = `The mask was not saved: ${err.message}`;
      this.saveButton.disabled = false;
      this.saveButton.textContent = 'Save mask';
    }
  }
}
