/**
 * Cornerstone3D, started once per page: the rendering core, the DICOM image loader (WADO-RS, with
 * its decode workers) and the tools the viewer offers.
 */

import * as core from '@cornerstonejs/core';
import * as dicomImageLoader from '@cornerstonejs/dicom-image-loader';
import * as tools from '@cornerstonejs/tools';
import { waitedFrames } from './waiting.js';

/**
 * What the viewer asks our DICOMweb for each frame: JPEG-LS lossless (the server transcodes
 * whatever was stored, once, and keeps it), else the frame as stored (a lossy one gains nothing
 * from a lossless re-encoding). Cornerstone's loader would ask `transfer-syntax=*` alone, and the
 * native copy of a CT series is two to three times the size of its JPEG-LS one.
 */
export const FRAME_ACCEPT = 'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80, '
  + 'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.5';

/**
 * Frames as they arrive: a `frame` event with `{imageId, bytes}` for each frame request the
 * image loader completes (prefetch paces itself by them).
 */
export const frameTransfers = new EventTarget();
/**
 * Image ids being prefetched, with the rate (bit/s) the server should pace each reply at: sent
 * as `X-Eboard-Pace`, so a frame reaches a thin link as an even flow, not a burst that fills
 * its queue and drops the board's audio and video with it.
 * @type {Map<string, number>}
 */
export const pacedRequests = new Map();
/**
 * The paced requests on their way, by image id: aborted when a viewer needs that image now
 * (`Prefetch.promote`), so it is fetched again unpaced instead of arriving at a prefetch's pace.
 * @type {Map<string, XMLHttpRequest>}
 */
export const pacedTransfers = new Map();
/**
 * Paced requests that have gone out (`send()` called). One aborted before that ends silently
 * (no readystatechange, no error): the image loader's promise for it would never settle, and
 * the viewer waiting for that image would wait for ever. @type {WeakSet<XMLHttpRequest>}
 */
export const sentTransfers = new WeakSet();
/** Paced requests aborted for a viewer (`Prefetch.promote`). @type {WeakSet<XMLHttpRequest>} */
export const abortedTransfers = new WeakSet();
// Cornerstone's cache drops a failed load and throws its error on, where nobody catches it: for
// a request we aborted ourselves that is not an error worth a report.
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason instanceof XMLHttpRequest && abortedTransfers.has(event.reason)) event.preventDefault();
});
/** The header that names a reply's pace; the server refuses rates below 64 kbit/s. */
export const PACE_HEADER = 'X-Eboard-Pace';
const MIN_PACE = 64_000;

/** The annotation tools the view state can carry (schemas/view-state.json), by their cs3d names. */
export const ANNOTATION_TOOLS = /** @type {const} */ (['Length', 'Angle', 'EllipticalROI', 'ArrowAnnotate']);

const TOOL_CLASSES = [
  tools.WindowLevelTool,
  tools.PanTool,
  tools.ZoomTool,
  tools.StackScrollTool,
  tools.LengthTool,
  tools.AngleTool,
  tools.EllipticalROITool,
  tools.ArrowAnnotateTool,
];

// Cornerstone3D keeps its own page-wide registries (loaders, cache, tools); starting it twice
// throws, so the one start is remembered here.
/** @type {Promise<void> | null} */
let started = null;

/** Start Cornerstone3D if this page has not yet; resolves when it is ready. */
export function startCornerstone() {
  started ??= start();
  return started;
}

async function start() {
  // One WebGL context per viewer is plenty for four cells, and browsers allow only ~16 a page.
  // init() merges what it is given into its defaults, so a part of the configuration is enough.
  const configuration = { rendering: { webGlContextCount: 1 } };
  core.init(/** @type {core.Types.Cornerstone3DConfig} */ (/** @type {unknown} */ (configuration)));
  // Without a GPU, Cornerstone's own CPU drawing of stack images is ~4x faster than emulated
  // WebGL (headless Chromium with SwiftShader: 8-20 ms against 55-68 ms a change).
  if (softwareWebGl()) core.setUseCPURendering(true);
  dicomImageLoader.init({
    maxWebWorkers: Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 2) / 2))),
    beforeSend: (/** @type {XMLHttpRequest} */ xhr, /** @type {string} */ imageId) => {
      /** @type {Record<string, string>} */
      const headers = { Accept: FRAME_ACCEPT };
      const pace = pacedRequests.get(imageId);
      if (pace) {
        headers[PACE_HEADER] = String(Math.max(MIN_PACE, Math.round(pace)));
        pacedTransfers.set(imageId, xhr);
        xhr.addEventListener('loadstart', () => sentTransfers.add(xhr), { once: true });
        xhr.addEventListener('loadend', () => {
          if (pacedTransfers.get(imageId) === xhr) pacedTransfers.delete(imageId);
        });
      } else {
        waitedFrames.add(xhr);
      }
      return headers;
    },
    onloadend: (/** @type {ProgressEvent} */ event, /** @type {unknown} */ params) => {
      const detail = { imageId: String(/** @type {{imageId?: string}} */ (params)?.imageId ?? ''), bytes: event.loaded };
      frameTransfers.dispatchEvent(new CustomEvent('frame', { detail }));
    },
  });
  tools.init();
  for (const Tool of TOOL_CLASSES) tools.addTool(Tool);
}

/**
 * Give back the WebGL contexts of a rendering engine that is being destroyed. Cornerstone deletes
 * its vtk.js windows but the browser keeps their contexts until garbage collection, and a page
 * that opens viewers one after another runs into the browser's limit ("Too many active WebGL
 * contexts"). Reaches into the engine's context pool, so it is tried, not relied on.
 * @param {core.RenderingEngine} engine
 * @returns {() => void} call after `engine.destroy()`
 */
export function webglReleaser(engine) {
  /** @type {HTMLCanvasElement[]} */
  const canvases = [];
  const pool = /** @type {any} */ (engine).contextPool;
  for (const window of pool?.getAllContexts?.() ?? []) {
    const canvas = window?.getOpenGLRenderWindow?.()?.getCanvas?.();
    if (canvas instanceof HTMLCanvasElement) canvases.push(canvas);
  }
  return () => {
    for (const canvas of canvases) {
      const gl = canvas.getContext('webgl2') ?? canvas.getContext('webgl');
      gl?.getExtension('WEBGL_lose_context')?.loseContext();
    }
  };
}

/** Whether this browser's WebGL is emulated on the CPU (no GPU: SwiftShader, llvmpipe), or absent. */
function softwareWebGl() {
  const canvas = document.createElement('canvas');
  const gl = canvas.getContext('webgl2') ?? canvas.getContext('webgl');
  if (!gl) return true;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software/i.test(renderer);
}
