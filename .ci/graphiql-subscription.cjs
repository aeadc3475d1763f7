// In headless Chromium (every other host unresolvable), opens GraphiQL, then drives the
// page's own fetcher: a story created over REST is watched with the `storyUpdated`
// subscription through /graphql/ws (graphql-ws in the browser) until it completes.
// Usage: node graphiql-subscription.cjs <playwright-core dir> <base url> <screenshot>
const path = require("path");
const { chromium } = require(path.join(process.argv[2], "node_modules", "playwright-core"));
const base = process.argv[3];

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    ],
  });
  const page = await browser.newPage();
  const foreign = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("ws://127.0.0.1") && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) foreign.push(r.url()); });
  await page.goto(base + "/graphql", { waitUntil: "networkidle" });
  await page.waitForSelector(".graphiql-container");
  const seen = await page.evaluate(async () => {
    const post = async (p, body, token) => {
      const headers = { "content-type": "application/json" };
      if (token) headers.authorization = "Bearer " + token;
      const r = await fetch(p, { method: "POST", headers, body: JSON.stringify(body) });
      return r.json();
    };
    await post("/api/v1/users", { user_id: "browser-check", password: "password123", name: "민준", age: 7, guardian_consent: true });
    const token = (await post("/api/v1/auth/token", { user_id: "browser-check", password: "password123" })).data.access_token;
    const story = (await post("/api/v1/stories", { user_preferences: { theme: "바다", characters: ["고래"], length: "short" } }, token)).data.id;
    const results = window.jjongalGraphiQL.fetcher(
      { query: "subscription Watch($id: ID!) { storyUpdated(id: $id) { status chapters { chapterNumber } } }", variables: { id: story }, operationName: "Watch" },
      { headers: { Authorization: "Bearer " + token } },
    );
    const statuses = [];
    for await (const result of results) {
      if (result.errors) return { errors: result.errors };
      statuses.push(result.data.storyUpdated.status);
    }
    return { statuses };
  });
  await page.screenshot({ path: process.argv[4] });
  await browser.close();
  if (foreign.length) throw new Error("requests to other hosts: " + foreign.join(", "));
  if (!seen.statuses || seen.statuses[seen.statuses.length - 1] !== "completed") {
    throw new Error("the subscription did not follow the story to completion: " + JSON.stringify(seen));
  }
  console.log("ok   /graphql: a storyUpdated subscription over /graphql/ws saw " + seen.statuses.join(" → "));
})().catch((e) => { console.error("FAIL " + e.message); process.exit(1); });
