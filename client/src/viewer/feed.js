/**
 * What a presenting viewer sends: view-state patches and laser-pointer positions, each coalesced
 * to at most one per animation frame (≤ 60 Hz) however fast the user moves.
 */

import { diffState, emptyState } from './state.js';

/** @typedef {import('./state.js').ViewState} ViewState */
/** @typedef {import('./state.js').ViewPatch} ViewPatch */
/** @typedef {import('./state.js').WorldPoint} WorldPoint */

export class Feed {
  /** @param {() => ViewState} read the viewer's current state */
  constructor(read) {
    this._read = read;
    this.on = false;
    /** @type {ViewState | null} the state the last patch brought listeners to */
    this._sent = null;
    /** @type {Set<(patch: ViewPatch) => void>} */
    this._patchListeners = new Set();
    /** @type {Set<(cell: number, point: WorldPoint | null) => void>} */
    this._pointerListeners = new Set();
    this._patchFrame = 0;
    this._pointerFrame = 0;
    /** @type {[number, WorldPoint | null] | null} */
    this._pointer = null;
  }

  /**
   * Start (or stop) sending. Starting takes the current state as what listeners already have, so
   * only later changes go out.
   * @param {boolean} on
   */
  set(on) {
    if (on) this._sent = this._read();
    this.on = on;
  }

  /** The listeners have the current state (e.g. a snapshot was loaded): send only what changes next. */
  settle() {
    if (this.on) this._sent = this._read();
  }

  /**
   * @param {(patch: ViewPatch) => void} callback
   * @returns {() => void} unsubscribe
   */
  onPatch(callback) {
    this._patchListeners.add(callback);
    return () => this._patchListeners.delete(callback);
  }

  /**
   * @param {(cell: number, point: WorldPoint | null) => void} callback
   * @returns {() => void} unsubscribe
   */
  onPointer(callback) {
    this._pointerListeners.add(callback);
    return () => this._pointerListeners.delete(callback);
  }

  /** Something may have changed: at the next frame, send what did (only changed keys and cells). */
  changed() {
    if (!this.on || this._patchFrame) return;
    this._patchFrame = requestAnimationFrame(() => {
      this._patchFrame = 0;
      if (!this.on) return;
      const state = this._read();
      const patch = diffState(this._sent ?? emptyState(), state);
      this._sent = state;
      if (patch) for (const listener of this._patchListeners) listener(patch);
    });
  }

  /**
   * The pointer is over `cell` at `point` (null: it left); the last position of a frame is sent.
   * @param {number} cell
   * @param {WorldPoint | null} point
   */
  pointer(cell, point) {
    if (!this.on) return;
    this._pointer = [cell, point];
    if (this._pointerFrame) return;
    this._pointerFrame = requestAnimationFrame(() => {
      this._pointerFrame = 0;
      const next = this._pointer;
      this._pointer = null;
      if (next && this.on) for (const listener of this._pointerListeners) listener(next[0], next[1]);
    });
  }

  close() {
    this.on = false;
    cancelAnimationFrame(this._patchFrame);
    cancelAnimationFrame(this._pointerFrame);
    this._patchListeners.clear();
    this._pointerListeners.clear();
  }
}
