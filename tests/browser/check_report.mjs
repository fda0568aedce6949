// Opens a saelab study report (report.html) in headless Chromium and checks
// what a reader needs: no console errors, no request leaving the file, every
// figure drawn with a non-zero size, Table 1 present with its rows.
// Optionally saves a screenshot of the page's top.
//
// usage: node check_report.mjs REPORT.html [--screenshot OUT.png [--scroll-to ID]] [--min-table1-rows N]
// Prints one JSON line with what it found; exits 1 with the reasons when a
// check fails. Chromium: $CHROMIUM or /usr/bin/chromium (Debian package).
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import path from "node:path";

const args = process.argv.slice(2);
const report = path.resolve(args[0] ?? "");
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const shot = opt("--screenshot");
const scrollTo = opt("--scroll-to");
const minRows = Number(opt("--min-table1-rows") ?? 1);
const url = pathToFileURL(report).href;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  const consoleErrors = [];
  const requests = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("request", (r) => { if (r.url() !== url) requests.push(r.url()); });
  await page.goto(url, { waitUntil: "load" });
  const found = await page.evaluate(() => {
    const figs = [...document.querySelectorAll("figure svg")].map((s) => {
      const b = s.getBoundingClientRect();
      return { w: b.width, h: b.height, shapes: s.querySelectorAll("path,circle,rect").length };
    });
    const t1 = [...document.querySelectorAll("h3")].find((h) => h.textContent.startsWith("Table 1"));
    let table1 = null;
    for (let e = t1?.nextElementSibling; e; e = e.nextElementSibling) {
      if (e.tagName === "TABLE") { table1 = e; break; }
      if (e.tagName === "H3" || e.tagName === "H2") break;
    }
    const rows = table1 ? [...table1.querySelectorAll("tbody tr")].map((r) => r.cells[0].textContent) : [];
    return { figures: figs, table1Rows: rows, sections: [...document.querySelectorAll("h2")].map((h) => h.id) };
  });
  if (consoleErrors.length) failures.push(`console errors: ${consoleErrors.join(" | ")}`);
  if (requests.length) failures.push(`requests left the file: ${requests.join(", ")}`);
  if (!found.figures.length) failures.push("no figures");
  found.figures.forEach((f, i) => {
    if (!(f.w > 0 && f.h > 0)) failures.push(`figure ${i} has size ${f.w}x${f.h}`);
    if (f.shapes < 3) failures.push(`figure ${i} draws nothing (${f.shapes} shapes)`);
  });
  if (found.table1Rows.length < minRows) failures.push(`Table 1 has ${found.table1Rows.length} rows, expected ≥ ${minRows}`);
  if (shot) {
    if (scrollTo) await page.evaluate((id) => document.getElementById(id)?.scrollIntoView(), scrollTo);
    await page.screenshot({ path: shot, fullPage: false });
  }
  console.log(JSON.stringify({ figures: found.figures.length, table1Rows: found.table1Rows, sections: found.sections, consoleErrors, requests }));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
