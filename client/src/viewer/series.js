/**
 * A series as the viewer shows it: its DICOMweb metadata, its images in canonical order and the
 * Cornerstone3D image ids (WADO-RS frame URLs) of those images.
 */

import { imageLoader, Enums as csEnums } from '@cornerstonejs/core';
import { wadors } from '@cornerstonejs/dicom-image-loader';

/**
 * One series of a case, as `GET /api/cases/{case_id}/imaging` lists it for this user. Both
 * audiences' copies of a series share the alias; the UIDs are those of this user's copy.
 * @typedef {object} SeriesInfo
 * @property {string} alias
 * @property {string} study_instance_uid
 * @property {string} series_instance_uid
 * @property {string} modality
 * @property {string} description
 * @property {number | null} number
 * @property {number} instances
 * @property {boolean} burned_in
 * @property {boolean} [withheld] (internal users' list) external participants do not get this series
 */

/**
 * DICOM JSON of one instance (PS3.18 F.2), keyed by tag ("00200013").
 * @typedef {Record<string, {vr: string, Value?: unknown[], BulkDataURI?: string}>} DicomJson
 */

/**
 * One image of the canonical order: an instance and one of its frames.
 * @typedef {object} ImageRef
 * @property {DicomJson} instance
 * @property {number} frame 1-based
 */

const DICOM_JSON = 'application/dicom+json';

/**
 * @param {DicomJson} instance
 * @param {string} tag
 * @returns {unknown[]}
 */
function values(instance, tag) {
  return instance[tag]?.Value ?? [];
}

/**
 * @param {DicomJson} instance
 * @param {string} tag
 * @returns {number | null}
 */
function numberOf(instance, tag) {
  const value = Number(values(instance, tag)[0]);
  return values(instance, tag).length > 0 && Number.isFinite(value) ? value : null;
}

/**
 * @param {DicomJson} instance
 * @param {string} tag
 * @returns {string}
 */
export function stringOf(instance, tag) {
  const value = values(instance, tag)[0];
  return value === undefined || value === null ? '' : String(value);
}

/**
 * Where an instance lies along its slice normal (ImagePositionPatient · (row × column)), or null
 * when it has no geometry.
 * @param {DicomJson} instance
 */
function positionAlongNormal(instance) {
  const o = values(instance, '00200037').map(Number);
  const p = values(instance, '00200032').map(Number);
  if (o.length !== 6 || p.length !== 3 || [...o, ...p].some((v) => !Number.isFinite(v))) return null;
  const normal = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
  return p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
}

/**
 * Missing values sort after present ones.
 * @param {number | null} a
 * @param {number | null} b
 */
function compareMaybe(a, b) {
  if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
  return a - b;
}

/**
 * The canonical image order of a series, identical for every copy of it (the wire names images by
 * their index in it): instances by InstanceNumber, then by position along the slice normal, then
 * each multi-frame instance expanded by frame number. Ties keep the server's order; UIDs, which
 * differ between copies, never take part.
 * @param {DicomJson[]} instances
 * @returns {ImageRef[]}
 */
export function canonicalOrder(instances) {
  const keyed = instances.map((instance) => ({
    instance,
    number: numberOf(instance, '00200013'),
    position: positionAlongNormal(instance),
  }));
  keyed.sort((a, b) => compareMaybe(a.number, b.number) || compareMaybe(a.position, b.position));
  return keyed.flatMap(({ instance }) => {
    const frames = Math.max(1, numberOf(instance, '00280008') ?? 1);
    return Array.from({ length: frames }, (_, i) => ({ instance, frame: i + 1 }));
  });
}

export class Series {
  /**
   * @param {SeriesInfo} info
   * @param {ImageRef[]} images in canonical order
   */
  constructor(info, images) {
    this.info = info;
    this.images = images;
    const base = `${window.location.origin}/dicom-web/studies/${info.study_instance_uid}/series/${info.series_instance_uid}`;
    /** @type {string[]} Cornerstone3D image ids, index i = i-th image of the canonical order */
    this.imageIds = images.map(({ instance, frame }) =>
      `wadors:${base}/instances/${stringOf(instance, '00080018')}/frames/${frame}`);
    for (const [i, { instance, frame }] of images.entries()) {
      if (frame === 1) wadors.metaDataManager.add(this.imageIds[i], /** @type {any} */ (instance));
    }
    this._prefetched = false;
  }

  /**
   * Fetch a series' metadata from our DICOMweb (same origin; the session cookie goes along).
   * @param {SeriesInfo} info
   * @returns {Promise<Series>}
   */
  static async load(info) {
    const url = `/dicom-web/studies/${encodeURIComponent(info.study_instance_uid)}/series/${encodeURIComponent(info.series_instance_uid)}/metadata`;
    const response = await fetch(url, { headers: { Accept: DICOM_JSON }, credentials: 'same-origin' });
    if (!response.ok) throw new Error(`series ${info.alias}: metadata request failed (HTTP ${response.status})`);
    /** @type {DicomJson[]} */
    const instances = await response.json();
    const images = canonicalOrder(instances);
    if (images.length === 0) throw new Error(`series ${info.alias} has no images`);
    return new Series(info, images);
  }

  get alias() {
    return this.info.alias;
  }

  get length() {
    return this.imageIds.length;
  }

  /** The frame of reference of this copy (it differs between the original and its copies). */
  get frameOfReferenceUID() {
    return stringOf(this.images[0].instance, '00200052');
  }

  /** @param {number} index */
  clampIndex(index) {
    return Math.min(this.length - 1, Math.max(0, Math.round(index) || 0));
  }

  /**
   * The index of an image id of this series, or -1.
   * @param {string} imageId
   */
  indexOf(imageId) {
    return this.imageIds.indexOf(imageId);
  }

  /**
   * Load every image into Cornerstone3D's cache, at prefetch priority, so scrolling never shows a
   * blank frame. Once per series.
   */
  prefetch() {
    if (this._prefetched) return;
    this._prefetched = true;
    for (const imageId of this.imageIds) {
      imageLoader.loadAndCacheImage(imageId, { priority: 5, requestType: csEnums.RequestType.Prefetch })
        .catch(() => { this._prefetched = false; }); // a failed image is retried on the next prefetch
    }
  }
}
