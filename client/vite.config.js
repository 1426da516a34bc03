import { viteCommonjs } from '@originjs/vite-plugin-commonjs';
import { defineConfig } from 'vite';

// The server serves dist/ at "/" and the API on the same origin. `npm run dev`
// proxies /api, DICOMweb and the live session's socket.io to a local
// `python -m server demo --port 8099`.
export default defineConfig({
  base: '/',
  // dicom-parser (used by the DICOM image loader) is CommonJS.
  plugins: [viteCommonjs()],
  optimizeDeps: {
    // The image loader starts its decode worker with `new URL(..., import.meta.url)`, which
    // pre-bundling would break.
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: ['dicom-parser'],
  },
  worker: { format: 'es' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Cornerstone3D (vtk.js) is one large chunk, loaded only on pages with a viewer.
    chunkSizeWarningLimit: 6000,
    rolldownOptions: {
      onLog(level, log, handler) {
        // The codecs' Emscripten glue (fs, path) and xmlbuilder2 (url) name Node modules on branches
        // a browser never takes.
        if (log.plugin === 'rolldown:vite-resolve' && /^Module "(fs|path|url)" has been externalized/.test(log.message)) return;
        handler(level, log);
      },
    },
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8099',
      '/dicom-web': 'http://127.0.0.1:8099',
      '/socket.io': { target: 'ws://127.0.0.1:8099', ws: true },
    },
  },
});
