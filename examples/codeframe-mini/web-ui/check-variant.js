// Fails the build for the `frontend-build-fail` variant (see codeframe_mini/variant.py).
const fs = require("fs");
const path = require("path");
const file = path.join(__dirname, "..", "codeframe_mini", "VARIANT");
if (fs.existsSync(path.join(__dirname, "FAIL_BUILD"))) {
  console.error("codeframe-mini: frontend build fails on purpose (FAIL_BUILD present)");
  process.exit(1);
}
const variant = (process.env.CODEFRAME_MINI_VARIANT || fs.readFileSync(file, "utf8")).trim();
if (variant === "frontend-build-fail") {
  console.error("codeframe-mini: frontend build fails on purpose (variant frontend-build-fail)");
  process.exit(1);
}
