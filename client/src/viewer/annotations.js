/**
 * The viewer's annotations: Cornerstone3D's annotation state read out as view state, and view
 * state written back into it. On the wire an annotation names its series by alias and its image by
 * index; here it is tied to this user's copy (image id and frame of reference), because the copies'
 * UIDs differ while their geometry is the same.
 */

import { metaData } from '@cornerstonejs/core';
import { annotation as csAnnotation } from '@cornerstonejs/tools';
import { ANNOTATION_TOOLS } from './setup.js';
import { tidy } from './state.js';

/** @typedef {import('./series.js').Series} Series */
/** @typedef {import('./state.js').Annotation} Annotation */
/** @typedef {import('./state.js').AnnotationTool} AnnotationTool */
/** @typedef {import('./state.js').WorldPoint} WorldPoint */
/** @typedef {import('@cornerstonejs/tools').Types.Annotation} CsAnnotation */

/**
 * Where the viewer's series are.
 * @typedef {object} SeriesLookup
 * @property {(alias: string) => Series | null} byAlias the loaded series of an alias
 * @property {(imageId: string) => {series: Series, index: number} | null} byImageId
 */

const MAX_POINTS = 8;
const MAX_TEXT = 200;

/**
 * @param {number[]} a
 * @param {number[]} b
 * @returns {WorldPoint}
 */
function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

/**
 * @param {string} tool
 * @returns {tool is AnnotationTool}
 */
function isOurTool(tool) {
  return /** @type {readonly string[]} */ (ANNOTATION_TOOLS).includes(tool);
}

export class Annotations {
  /** @param {SeriesLookup} lookup */
  constructor(lookup) {
    this._lookup = lookup;
  }

  /**
   * The annotations on this viewer's images, as view state (ordered by id, so that every
   * participant lists them alike).
   * @returns {Annotation[]}
   */
  read() {
    /** @type {Annotation[]} */
    const out = [];
    for (const a of this._ours()) {
      const place = this._lookup.byImageId(a.metadata?.referencedImageId ?? '');
      const points = a.data.handles?.points ?? [];
      if (!place || !a.annotationUID || points.length < 2) continue;
      /** @type {Annotation} */
      const item = {
        id: a.annotationUID,
        tool: /** @type {AnnotationTool} */ (a.metadata?.toolName),
        series: place.series.alias,
        index: place.index,
        points: points.slice(0, MAX_POINTS).map((p) => /** @type {WorldPoint} */ ([tidy(p[0]), tidy(p[1]), tidy(p[2])])),
      };
      const label = a.data.label;
      if (item.tool === 'ArrowAnnotate' && label) item.text = String(label).slice(0, MAX_TEXT);
      out.push(item);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Make Cornerstone3D's annotations on this viewer's images exactly `list`. Annotations on a
   * series this user does not have are left out.
   * @param {Annotation[]} list
   */
  apply(list) {
    const wanted = new Map(list.map((a) => [a.id, a]));
    for (const a of this._ours()) {
      if (a.annotationUID && !wanted.has(a.annotationUID)) csAnnotation.state.removeAnnotation(a.annotationUID);
    }
    for (const item of list) {
      const series = this._lookup.byAlias(item.series);
      if (!series || !isOurTool(item.tool)) continue;
      const index = series.clampIndex(item.index);
      const imageId = series.imageIds[index];
      const existing = csAnnotation.state.getAnnotation(item.id);
      if (existing && existing.metadata?.referencedImageId === imageId) {
        this._update(existing, item);
      } else {
        if (existing) csAnnotation.state.removeAnnotation(item.id);
        csAnnotation.state.addAnnotation(this._create(item, series, imageId, index), series.frameOfReferenceUID);
      }
    }
  }

  /** Remove every annotation on this viewer's images (the viewer is closing). */
  clear() {
    for (const a of this._ours()) {
      if (a.annotationUID) csAnnotation.state.removeAnnotation(a.annotationUID);
    }
  }

  /** @returns {CsAnnotation[]} */
  _ours() {
    return csAnnotation.state.getAllAnnotations().filter((a) =>
      isOurTool(a.metadata?.toolName ?? '') && this._lookup.byImageId(a.metadata?.referencedImageId ?? '') !== null);
  }

  /**
   * @param {CsAnnotation} existing
   * @param {Annotation} item
   */
  _update(existing, item) {
    const handles = existing.data.handles ?? (existing.data.handles = {});
    const before = JSON.stringify([handles.points, existing.data.label ?? '']);
    const label = item.text ?? '';
    if (before === JSON.stringify([item.points, label])) return;
    handles.points = item.points.map((p) => /** @type {WorldPoint} */ ([...p]));
    existing.data.label = label;
    existing.invalidated = true;
  }

  /**
   * An annotation as the tools make it, on this user's copy of the image.
   * @param {Annotation} item
   * @param {Series} series
   * @param {string} imageId
   * @param {number} index
   * @returns {CsAnnotation}
   */
  _create(item, series, imageId, index) {
    const plane = metaData.get('imagePlaneModule', imageId) ?? {};
    const row = plane.rowCosines ?? [1, 0, 0];
    const column = plane.columnCosines ?? [0, 1, 0];
    return /** @type {CsAnnotation} */ ({
      annotationUID: item.id,
      highlighted: false,
      invalidated: true,
      isLocked: false,
      isVisible: true,
      metadata: {
        toolName: item.tool,
        FrameOfReferenceUID: series.frameOfReferenceUID,
        referencedImageId: imageId,
        viewPlaneNormal: cross(column, row),
        viewUp: [-column[0], -column[1], -column[2]],
        sliceIndex: index,
      },
      data: {
        handles: {
          points: item.points.map((p) => [...p]),
          activeHandleIndex: null,
          textBox: {
            hasMoved: false,
            worldPosition: [0, 0, 0],
            worldBoundingBox: { topLeft: [0, 0, 0], topRight: [0, 0, 0], bottomLeft: [0, 0, 0], bottomRight: [0, 0, 0] },
          },
        },
        cachedStats: {},
        label: item.text ?? '',
      },
    });
  }
}
