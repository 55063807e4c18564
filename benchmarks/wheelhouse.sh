#!/usr/bin/env bash
# Download, here (with PyPI), the wheels a fresh GPU machine lacks, into wheelhouse/ (git-ignored),
# for benchmarks/accelerator.sh to install there without network.
#
#     bash benchmarks/wheelhouse.sh            # -> wheelhouse/*.whl, prints the total size
#
# The GPU image (see the device tool's KINDS.md) has jax/jaxlib (CUDA), flax, optax, chex, numpy,
# absl-py, attrs, wrapt, six, cloudpickle, tqdm, matplotlib and torch, but not distrax,
# tensorflow-probability (tfp-nightly), their small pure-python needs (decorator, gast), dm-tree
# (binary) or zuko (the PyTorch peer's flows). Everything is fetched with --no-deps, one by one, so
# nothing here can pull a jax, jaxlib or torch build over the machine's own. dm-tree is fetched for
# CPython 3.12 (the GPU image) and for this machine's Python (the --tiny rehearsal here).
set -euo pipefail
cd "$(dirname "$0")/.."
WH=wheelhouse
mkdir -p "$WH"
PIP=(python3 -m pip download --no-deps --only-binary=:all: -d "$WH" --no-cache-dir)
TFP=$(grep -E '^tfp-nightly==' constraints.txt | head -1)
: "${TFP:?constraints.txt pins no tfp-nightly}"

# pure-python wheels: any Python
for req in "distrax==0.1.9" "$TFP" "decorator" "gast" "zuko"; do
  echo "== $req"
  "${PIP[@]}" "$req" >/dev/null
done

# dm-tree (tfp's tree utilities) is a compiled extension: one wheel per CPython version
here=$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
for py in 312 "$here"; do
  echo "== dm-tree==0.1.10 (cp$py)"
  "${PIP[@]}" --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "dm-tree==0.1.10" >/dev/null
done

echo
ls -l "$WH"/*.whl | awk '{printf "%9d  %s\n", $5, $NF}'
du -ch "$WH"/*.whl | tail -1 | sed 's/total/total of wheelhouse\/ (travels with `carry: ["wheelhouse"]`)/'
