/**
 * Cornerstone3D, started once per page: the rendering core, the DICOM image loader (WADO-RS, with
 * its decode workers) and the tools the viewer offers.
 */

import * as core from '@cornerstonejs/core';
import * as dicomImageLoader from '@cornerstonejs/dicom-image-loader';
import * as tools from '@cornerstonejs/tools';

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
  core.init();
  dicomImageLoader.init({
    maxWebWorkers: Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 2) / 2))),
  });
  tools.init();
  for (const Tool of TOOL_CLASSES) tools.addTool(Tool);
}
