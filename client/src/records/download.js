/**
 * Hands a file fetched by script to the browser's downloads, as a click on a link would.
 */

/**
 * @param {{blob: Blob, filename: string}} file
 */
export function saveFile({ blob, filename }) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has taken the blob by the time the click returns in every current browser;
  // a minute's grace costs only the memory, and a revoked URL too early costs the file.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
