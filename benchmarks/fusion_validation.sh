# Issue 19 on the GPU device, VALIDATION only: the redundant task's cross_attention under the
# `balanced` and `pretrained-balanced` recipes (gradient_modulation) beside the unimodal
# ensemble, `frozen`, `joint` and `pretrained`, seeds 0-4, 1,200 steps. Each study also evaluates
# on test at its end; only the validation fields of results.jsonl come back ($OUT/val.jsonl), so
# nothing is chosen on the test split. Needs .whl/ (benchmarks/prepare_device.sh), carried:
#   run: bash benchmarks/fusion_validation.sh      (two phases of at most 280 s each)
cat >/tmp/v.py<<'P'
import json,pathlib,sys
K=("config","seed","steps","recipe","seconds","val","val_curve","started_from")
for p in sorted(pathlib.Path(sys.argv[1]).glob("*/results.jsonl")):
    for l in p.read_text().splitlines():
        r=json.loads(l);print(json.dumps({"study":p.parent.name,**{k:r[k] for k in K if k in r},"split":"val"}))
P
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site OMP_NUM_THREADS=1
R=/tmp/r; mkdir -p "$R"
st() { n=$1; shift; timeout 280 python3 -m deepseek multimodal study --task redundant --steps 1200 --device cuda \
  --out "$R/$n" "$@" >"$R/$n.log" 2>"$R/$n.err"; echo "$n $? $(date +%T)" >>"$OUT/env.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv >"$OUT/env.txt"; date +%T >>"$OUT/env.txt"
for s in 0 1 2 3 4; do
  st u$s --seed $s --config vision --config audio --config text --recipe frozen &
  st b$s --seed $s --config cross_attention --recipe balanced &
  st j$s --seed $s --config cross_attention --recipe joint &
done; wait
for s in 0 1 2 3 4; do
  U="--unimodal-runs $R/u$s/runs"
  st f$s --seed $s --config late --config cross_attention --recipe frozen $U &
  st pb$s --seed $s --config cross_attention --recipe pretrained-balanced $U &
  st p$s --seed $s --config cross_attention --recipe pretrained $U &
done; wait
python3 /tmp/v.py "$R" >"$OUT/val.jsonl"; cat "$OUT/env.txt"
# the device tool returns at most 8 files: each study's stderr goes back in one archive
tar czf "$OUT/err.tgz" -C "$R" $(cd "$R" && ls *.err)
