#!/usr/bin/env bash
# The README's first command (`qstar eval --n 40`) with an older commit and with this checkout,
# alternating old, new, old, new; prints wall and CPU time of each. Run alone on the machine,
# from the repository root, inside the project's venv (the old build reuses its packages).
#   bash bench/first_command_ab.sh 72684a4 [repeats]
set -euo pipefail
OLD=${1:?usage: first_command_ab.sh OLD_COMMIT [REPEATS]}; REPEATS=${2:-2}
ROOT=$(pwd); NEW_PY=$(command -v python); WORK=$(mktemp -d)
git worktree add -q -f "$WORK/src" "$OLD"
python -m venv "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/zz_project_venv.pth"
pip install -q --no-deps --no-build-isolation "$WORK/src" -t "$WORK/old"
cp -r "$WORK/old/qstar_native" "$SITE/"
cd "$WORK"  # not the checkout: the old interpreter must not import this tree's package
for i in $(seq "$REPEATS"); do
  for who in old new; do
    py=$([ "$who" = old ] && echo "$WORK/venv/bin/python" || echo "$NEW_PY")
    /usr/bin/time -f "$who run $i: wall %e s, user %U s, sys %S s, max RSS %M KB" \
      "$py" -m qstar_native eval --n 40 > "$WORK/$who-$i.txt" 2> "$WORK/$who-$i.err" || { tail "$WORK/$who-$i.err"; exit 1; }
    tail -1 "$WORK/$who-$i.err"
  done
done
git -C "$ROOT" worktree remove --force "$WORK/src"
echo "tables: $WORK/{old,new}-*.txt"
