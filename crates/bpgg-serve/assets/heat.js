// Drawing a prediction in the page from its float map: the heat layer (colour by value) and
// the mask at any threshold (fill and outline), with no round trip to the service.

// A perceptual dark-to-bright ramp (dark purple → red → yellow), 5 stops.
const STOPS = [
  [0.0, [20, 11, 52]],
  [0.25, [101, 21, 110]],
  [0.5, [188, 55, 84]],
  [0.75, [249, 142, 9]],
  [1.0, [252, 255, 164]],
];

const RAMP = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < STOPS.length - 2 && t > STOPS[k + 1][0]) k++;
    const [t0, c0] = STOPS[k];
    const [t1, c1] = STOPS[k + 1];
    const f = (t - t0) / (t1 - t0);
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = c0[c] + (c1[c] - c0[c]) * f;
  }
  return lut;
})();

/** CSS gradient of the ramp (for the legend). */
export const RAMP_CSS = `linear-gradient(90deg, ${STOPS.map(([t, c]) => `rgb(${c.join(',')}) ${t * 100}%`).join(', ')})`;

/** Smallest and largest value of a map. */
export function range(data) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** The heat layer of a map (a canvas of the map's size): value → colour, low values faint. */
export function heatLayer(map, lo, hi) {
  const c = document.createElement('canvas');
  c.width = map.width;
  c.height = map.height;
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(map.width, map.height);
  const span = hi > lo ? hi - lo : 1;
  const d = img.data;
  for (let i = 0; i < map.data.length; i++) {
    const t = Math.min(1, Math.max(0, (map.data[i] - lo) / span));
    const k = Math.round(t * 255) * 3;
    d[i * 4] = RAMP[k];
    d[i * 4 + 1] = RAMP[k + 1];
    d[i * 4 + 2] = RAMP[k + 2];
    // Low values stay clear so the part shows through; high values are nearly opaque.
    d[i * 4 + 3] = t < 0.2 ? 0 : Math.round(210 * ((t - 0.2) / 0.8) ** 1.3);
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/**
 * The mask at `threshold` drawn into `target` (a canvas of the map's size): a light fill and
 * a bright outline. Returns the number of mask pixels.
 */
export function drawMask(map, threshold, target) {
  const { width: w, height: h, data } = map;
  const ctx = target.getContext('2d');
  const img = ctx.createImageData(w, h);
  const d = img.data;
  let area = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!(data[i] >= threshold)) continue;
      area++;
      const edge =
        x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
        !(data[i - 1] >= threshold) || !(data[i + 1] >= threshold) ||
        !(data[i - w] >= threshold) || !(data[i + w] >= threshold);
      const o = i * 4;
      if (edge) {
        d[o] = 0;
        d[o + 1] = 255;
        d[o + 2] = 170;
        d[o + 3] = 255;
      } else {
        d[o] = 0;
        d[o + 1] = 255;
        d[o + 2] = 170;
        d[o + 3] = 45;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  return area;
}

/** The mask at `threshold` as a white-on-transparent image (to start the painter from). */
export function maskImage(map, threshold) {
  const c = document.createElement('canvas');
  c.width = map.width;
  c.height = map.height;
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(map.width, map.height);
  for (let i = 0; i < map.data.length; i++) {
    if (map.data[i] >= threshold) {
      img.data[i * 4] = 255;
      img.data[i * 4 + 1] = 255;
      img.data[i * 4 + 2] = 255;
      img.data[i * 4 + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
