// Loads a page in the system Chromium (headless, driven by playwright-core) and takes screenshots on
// demand, for the viewer's test (tests/test_visual.py).
// usage: node tools/screenshot.js URL OUT_PREFIX
// After the page has loaded it prints "ready"; then each stdin line "shot MS" waits MS milliseconds and
// writes OUT_PREFIX_K.png (K = 0, 1, ...; a 1280x720 page) and prints "shot K"; "quit" (or the end of
// stdin) closes the browser. The browser: $CHROMIUM, else /usr/bin/chromium; a fresh profile folder.
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

const [url, prefix] = process.argv.slice(2);

(async () => {
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), "eyefast-chromium-"));
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(url, { waitUntil: "load", timeout: 120000 });
    process.stdout.write("ready\n");
    let k = 0;
    for await (const line of readline.createInterface({ input: process.stdin })) {
      const [cmd, ms] = line.trim().split(/\s+/);
      if (cmd === "quit") break;
      if (cmd !== "shot") continue;
      await page.waitForTimeout(parseInt(ms || "0", 10));
      await page.screenshot({ path: `${prefix}_${k}.png` });
      process.stdout.write(`shot ${k}\n`);
      k += 1;
    }
  } finally {
    await ctx.close();
    fs.rmSync(userData, { recursive: true, force: true });
  }
  process.exit(0);
})().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exit(2);
});
