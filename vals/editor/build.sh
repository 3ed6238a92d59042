#!/bin/sh
# Rebuild the committed editor bundle: static/vals/codemirror-<@codemirror/view version>.js
set -eu
cd "$(dirname "$0")"

npm ci --no-audit --no-fund

version=$(node -p 'JSON.parse(require("fs").readFileSync("node_modules/@codemirror/view/package.json")).version')
out_dir=../../static/vals
out="$out_dir/codemirror-$version.js"

# Only one bundle is kept; templates point at the versioned name.
for old in "$out_dir"/codemirror-*.js; do
  [ -e "$old" ] && [ "$old" != "$out" ] && rm -v "$old"
done

./node_modules/.bin/esbuild src/index.js \
  --bundle --minify --format=iife --target=es2020 \
  --define:VERSION="\"$version\"" \
  --legal-comments=none \
  --banner:js="/*! ValEditor, CodeMirror 6 (@codemirror/view $version) and @lezer, MIT licensed: https://codemirror.net. Built by vals/editor/build.sh; do not edit. */" \
  --outfile="$out"

echo "Built $out"
echo "Templates load it as {% static 'vals/codemirror-$version.js' %}"
