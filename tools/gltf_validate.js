// Validates a glTF/GLB file with the Khronos glTF validator; prints its JSON report on stdout.
// usage: node tools/gltf_validate.js FILE.glb
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const file = process.argv[2];
const data = new Uint8Array(fs.readFileSync(file));
validator
  .validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 100,
    externalResourceFunction: (uri) =>
      new Promise((resolve, reject) => {
        fs.readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)), (err, buf) =>
          err ? reject(err.toString()) : resolve(new Uint8Array(buf)));
      }),
  })
  .then((report) => {
    process.stdout.write(JSON.stringify(report, null, 1));
  })
  .catch((err) => {
    process.stderr.write(String(err) + "\n");
    process.exit(2);
  });
