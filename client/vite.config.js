import { defineConfig } from 'vite';

// The server serves dist/ at "/" and the API on the same origin. `npm run dev`
// proxies /api and the live session's socket.io to a local `python -m server demo --port 8099`.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8099',
      '/socket.io': { target: 'ws://127.0.0.1:8099', ws: true },
    },
  },
});
