// Copy-to-clipboard and download-as-text buttons for things shown once (recovery codes) or to paste
// into a terminal (a scan finding's fix).
import { useState } from "react";

async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain HTTP on a LAN address has no clipboard API: the old way still works from a click.
  const ta = document.createElement("textarea");
  ta.value = text;
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.appendChild(ta);
  ta.select();
  document.execCommand("copy");
  ta.remove();
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [done, setDone] = useState<"" | "ok" | "failed">("");
  return (
    <button type="button" className="btn small" onClick={() => {
      copyText(text).then(() => setDone("ok"), () => setDone("failed"));
      setTimeout(() => setDone(""), 2000);
    }}>{done === "ok" ? "Copied" : done === "failed" ? "Copy failed: select it" : label}</button>
  );
}

export function DownloadButton({ text, filename, label }: { text: string; filename: string; label: string }) {
  return (
    <button type="button" className="btn small" onClick={() => {
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = filename;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    }}>{label}</button>
  );
}
