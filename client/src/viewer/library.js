/**
 * The series a viewer can show: this user's list for the case (their own copies), each loaded
 * from DICOMweb the first time it is needed, and found again by alias or by image id.
 */

import { Series } from './series.js';

/** @typedef {import('./series.js').SeriesInfo} SeriesInfo */

/**
 * @param {string} imageId "wadors:https://…/frames/1"
 * @returns {string} the URI without the loader scheme, as Cornerstone's tools may give it
 */
function uriOf(imageId) {
  return imageId.replace(/^[a-z]+:/i, '');
}

export class SeriesLibrary {
  /**
   * @param {(info: SeriesInfo) => Promise<Series>} [loader] how a series' metadata is loaded
   *   (the room's, which prefetch has often loaded already; default: from DICOMweb)
   */
  constructor(loader = (info) => Series.load(info)) {
    this._loader = loader;
    /** @type {SeriesInfo[]} */
    this.infos = [];
    /** @type {Map<string, Promise<Series | null>>} */
    this._loading = new Map();
    /** @type {Map<string, Series>} */
    this._loaded = new Map();
    /** @type {Map<string, {series: Series, index: number}>} */
    this._images = new Map();
  }

  /**
   * A new list for this user; series no longer in it, or now another copy, are forgotten.
   * @param {SeriesInfo[]} infos
   */
  setInfos(infos) {
    this.infos = infos;
    for (const alias of [...this._loading.keys()]) {
      const info = this.info(alias);
      const loaded = this._loaded.get(alias);
      if (!info || (loaded && loaded.info.series_instance_uid !== info.series_instance_uid)) this._forget(alias);
    }
  }

  /**
   * This user's copy of series `alias`, or null when they do not have it.
   * @param {string} alias
   */
  info(alias) {
    return this.infos.find((s) => s.alias === alias) ?? null;
  }

  /**
   * The loaded series `alias`, or null (not loaded yet, or not this user's).
   * @param {string} alias
   */
  loaded(alias) {
    return this._loaded.get(alias) ?? null;
  }

  /**
   * Series `alias` with its metadata, loaded once; null when this user does not have it or it
   * failed to load (a later call tries again).
   * @param {string} alias
   * @returns {Promise<Series | null>}
   */
  load(alias) {
    const info = this.info(alias);
    if (!info) return Promise.resolve(null);
    let loading = this._loading.get(alias);
    if (!loading) {
      loading = this._loader(info).then((series) => {
        this._loaded.set(alias, series);
        for (const [index, imageId] of series.imageIds.entries()) this._images.set(uriOf(imageId), { series, index });
        return series;
      }, (error) => {
        console.warn('SeriesLibrary(%s) not loaded: %s', alias, error);
        this._loading.delete(alias);
        return null;
      });
      this._loading.set(alias, loading);
    }
    return loading;
  }

  /**
   * The series and index of an image id of a loaded series, or null.
   * @param {string} imageId
   */
  place(imageId) {
    return this._images.get(uriOf(imageId)) ?? null;
  }

  /** @param {string} alias */
  _forget(alias) {
    const series = this._loaded.get(alias);
    for (const imageId of series?.imageIds ?? []) this._images.delete(uriOf(imageId));
    this._loading.delete(alias);
    this._loaded.delete(alias);
  }
}
