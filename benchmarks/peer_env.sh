#!/usr/bin/env bash
# Builds the peers' environment for benchmarks/side_by_side.py: Captum and ferret, as their users install
# them, in .peer-venv (never part of the main install or of CI).
#
# ferret-xai 0.4.2 pins transformers<5, captum<0.8 and numpy<2 but runs with this project's versions, so it
# is installed without its dependencies, followed by what it imports at run time; torch, transformers,
# captum and numpy are held at the main environment's versions by a constraints file.
#
# Usage: benchmarks/peer_env.sh [PYTHON [MAIN_VENV]]   (then: .venv/bin/python benchmarks/side_by_side.py)
# MAIN_VENV (default .venv) is the attention-audit environment whose versions are held.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
main=${2:-.venv}
venv=.peer-venv
held=$(mktemp)
"$main/bin/python" -m pip freeze | grep -iE '^(torch|transformers|tokenizers|captum|numpy|scipy|pandas|pyarrow|safetensors|huggingface-hub|datasets|scikit-learn)==' \
  | sed 's/^torch==2.13.0+cpu$/torch==2.13.0/' > "$held"
$python -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet -c "$held" transformers captum numpy scipy pandas pyarrow datasets scikit-learn
"$venv/bin/pip" install --quiet --no-deps ferret-xai==0.4.2
"$venv/bin/pip" install --quiet -c "$held" seaborn opencv-python-headless lime shap pytreebank overrides spacy \
  sentencepiece jsonnet pytorch-ignite protobuf scikit-image
"$venv/bin/pip" install --quiet --no-deps thermostat-datasets==1.1.0
"$venv/bin/python" -c "import ferret, captum, transformers; print('peers ready:', ferret.__version__ if hasattr(ferret, '__version__') else 'ferret', captum.__version__, transformers.__version__)"
rm -f "$held"
