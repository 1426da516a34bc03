/**
 * What the mouse does in a viewer's cells: one Cornerstone3D tool group. The wheel scrolls, the
 * middle button pans, the right button zooms; the left button does the tool chosen in the
 * toolbar. Measurements stay editable whichever tool is chosen.
 */

import * as csTools from '@cornerstonejs/tools';
import { ANNOTATION_TOOLS } from './setup.js';

/** @typedef {import('./toolbar.js').MouseTool} MouseTool */
/** @typedef {import('./prompt.js').TextPrompt} TextPrompt */
/** @typedef {(text: string | null) => void} Done */

const { MouseBindings } = csTools.Enums;

export class MouseTools {
  /**
   * @param {string} id unique on the page
   * @param {TextPrompt} prompt asks for an arrow's text
   */
  constructor(id, prompt) {
    this.id = id;
    const group = csTools.ToolGroupManager.createToolGroup(id);
    if (!group) throw new Error(`MouseTools(${id}): a tool group of this id exists already`);
    this._group = group;
    for (const name of ['WindowLevel', 'Pan', 'Zoom', 'StackScroll', 'Length', 'Angle', 'EllipticalROI']) group.addTool(name);
    group.addTool('ArrowAnnotate', {
      getTextCallback: (/** @type {Done} */ done) => prompt.ask('', done),
      changeTextCallback: (/** @type {any} */ annotation, /** @type {unknown} */ _event, /** @type {Done} */ done) =>
        prompt.ask(annotation?.data?.label ?? '', done),
    });
    group.setToolActive('StackScroll', { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    group.setToolActive('Pan', { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    group.setToolActive('Zoom', { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    for (const name of ANNOTATION_TOOLS) group.setToolPassive(name);
  }

  /**
   * @param {string} viewportId
   * @param {string} engineId
   */
  add(viewportId, engineId) {
    this._group.addViewport(viewportId, engineId);
  }

  /**
   * @param {string} viewportId
   * @param {string} engineId
   */
  remove(viewportId, engineId) {
    this._group.removeViewports(engineId, viewportId);
  }

  /**
   * The left button's tool; 'Pointer' leaves it to the viewer's laser pointer.
   * @param {MouseTool} tool
   */
  setPrimary(tool) {
    const previous = this._group.getActivePrimaryMouseButtonTool();
    if (previous) this._group.setToolPassive(previous);
    if (tool !== 'Pointer') this._group.setToolActive(tool, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  }

  destroy() {
    csTools.ToolGroupManager.destroyToolGroup(this.id);
  }
}
