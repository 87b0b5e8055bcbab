/// <reference types="vitest" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API to a local `fsctl serve` (INFRACORE_CONSOLE, default 127.0.0.1:7070).
const target = `http://${process.env.INFRACORE_CONSOLE ?? "127.0.0.1:7070"}`;

export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/api": { target, changeOrigin: false } } },
  build: {
    target: "es2021",
    sourcemap: false,
    chunkSizeWarningLimit: 700,
    rollupOptions: {
      output: {
        manualChunks: {
          react: ["react", "react-dom", "react-router-dom"],
          echarts: ["echarts/core", "echarts/charts", "echarts/components", "echarts/renderers"],
        },
      },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
