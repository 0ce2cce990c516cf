# metricaug: every target creates or reuses the virtual environment in $(VENV).
# A user with CUDA overrides the torch pin, e.g.  make demo TORCH_SPEC="torch==2.13.0 --index-url ..."
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.metricaug-installed

CORPUS      ?= demo
OUT         ?= data/stores
DEMO_DIR    ?= data/demo-corpus
JOBS        ?= -1
SEED        ?= 0
MIXES       ?= audio
METRICS     ?= stoi pesq fwsnrseg
# corpus roots for `make superset CORPUS=...`
MSP_ROOT    ?=
MELD_ROOT   ?=
EMODB_ROOT  ?=
RAVDESS_ROOT ?=
ASED_ROOT   ?=
IEMOCAP_ROOT ?=
CREMA_D_ROOT ?=
CSV_ROOT    ?=
MUSAN_ROOT  ?=
ESC50_ROOT  ?=
ROOT_demo   := $(DEMO_DIR)
ROOT_msp    = $(MSP_ROOT)
ROOT_meld   = $(MELD_ROOT)
ROOT_emodb  = $(EMODB_ROOT)
ROOT_ravdess = $(RAVDESS_ROOT)
ROOT_ased   = $(ASED_ROOT)
ROOT_iemocap = $(IEMOCAP_ROOT)
ROOT_crema_d = $(CREMA_D_ROOT)
ROOT_csv    = $(CSV_ROOT)
CORPUS_ROOT = $(ROOT_$(CORPUS))
NOISE_ARGS  = $(if $(MUSAN_ROOT),--noise-root $(MUSAN_ROOT)) $(if $(ESC50_ROOT),--unseen-root $(ESC50_ROOT))
STORE       = $(OUT)/$(CORPUS)

EPOCHS      ?= 100
DEMO_EPOCHS ?= 20
STRATEGY    ?= metricaug
TRAIN_ARGS  ?=
RUNS        ?= runs
METRIC      ?= stoi
QUANT       ?= gmm
SEEDS       ?= 3
# pytest processes of `make test` (pytest-xdist; each module stays in one process)
TEST_PROCESSES ?= 2

.PHONY: venv test demo superset testsets fixed-snr copypaste verify score train reproduce report clean-demo bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,frontends]"
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

$(DEMO_DIR)/msp: | $(STAMP)
	$(BIN)/prep demo-corpus $(DEMO_DIR) --seed $(SEED)

superset: $(STAMP) $(if $(filter demo,$(CORPUS)),$(DEMO_DIR)/msp)
	@test -n "$(CORPUS_ROOT)" || { echo "error: set the corpus root, e.g. make superset CORPUS=msp MSP_ROOT=/data/MSP-Podcast MUSAN_ROOT=/data/musan" >&2; exit 2; }
	$(BIN)/prep superset --corpus $(CORPUS) --root $(CORPUS_ROOT) $(if $(MUSAN_ROOT),--noise-root $(MUSAN_ROOT)) --out $(OUT) --jobs $(JOBS) --seed $(SEED) --mixes $(MIXES)

testsets: $(STAMP) $(if $(filter demo,$(CORPUS)),$(DEMO_DIR)/msp)
	@test -n "$(CORPUS_ROOT)" || { echo "error: set the corpus root, e.g. make testsets CORPUS=msp MSP_ROOT=... MUSAN_ROOT=... ESC50_ROOT=..." >&2; exit 2; }
	$(BIN)/prep testsets --corpus $(CORPUS) --root $(CORPUS_ROOT) $(NOISE_ARGS) --out $(OUT) --jobs $(JOBS) --seed $(SEED) --mixes $(MIXES)

verify: $(STAMP)
	$(BIN)/prep verify $(STORE)

score: $(STAMP)
	@for m in $(METRICS); do $(BIN)/prep score $(STORE) --metric $$m --quant all || exit $$?; done

fixed-snr: $(STAMP) $(if $(filter demo,$(CORPUS)),$(DEMO_DIR)/msp)
	@test -n "$(CORPUS_ROOT)" || { echo "error: set the corpus root, e.g. make fixed-snr CORPUS=msp MSP_ROOT=... MUSAN_ROOT=..." >&2; exit 2; }
	$(BIN)/prep fixed-snr --corpus $(CORPUS) --root $(CORPUS_ROOT) $(if $(MUSAN_ROOT),--noise-root $(MUSAN_ROOT)) --out $(OUT) --jobs $(JOBS) --seed $(SEED) --mixes $(MIXES)

copypaste: $(STAMP) $(if $(filter demo,$(CORPUS)),$(DEMO_DIR)/msp)
	@test -n "$(CORPUS_ROOT)" || { echo "error: set the corpus root, e.g. make copypaste CORPUS=msp MSP_ROOT=... MUSAN_ROOT=..." >&2; exit 2; }
	$(BIN)/prep copypaste --corpus $(CORPUS) --root $(CORPUS_ROOT) $(if $(MUSAN_ROOT),--noise-root $(MUSAN_ROOT)) --out $(OUT) --jobs $(JOBS) --seed $(SEED) --mixes $(MIXES)

# One training run (STRATEGY: see 'trainer run --help'); its folder RUNS/<corpus>-<strategy or
# metric-quant>-h<H>-s<seed> is named by trainer run; run again to continue where it stopped.
train: $(STAMP)
	$(BIN)/trainer run --data $(STORE) --strategy $(STRATEGY) --metric $(METRIC) --quant $(QUANT) --max-epochs $(EPOCHS) --seed $(SEED) --runs $(RUNS) --resume $(TRAIN_ARGS)

# The paper's whole grid on one corpus: None, Fixed SNR, CopyPaste and MetricAug x 3 metrics x
# 2 quantizers, SEEDS seeds each, then the report. Every step resumes: run it again after a stop.
reproduce: $(STAMP)
	$(MAKE) --no-print-directory superset testsets fixed-snr copypaste verify score CORPUS=$(CORPUS)
	@for seed in $$(seq 0 $$(($(SEEDS) - 1))); do \
	  for s in none fixed-snr copypaste; do \
	    $(MAKE) --no-print-directory train CORPUS=$(CORPUS) STRATEGY=$$s SEED=$$seed || exit $$?; done; \
	  for m in $(METRICS); do for q in gmm uniform; do \
	    $(MAKE) --no-print-directory train CORPUS=$(CORPUS) STRATEGY=metricaug METRIC=$$m QUANT=$$q SEED=$$seed || exit $$?; \
	  done; done; done
	$(MAKE) --no-print-directory report CORPUS=$(CORPUS)

report: $(STAMP)
	$(BIN)/trainer report $(RUNS)/$(CORPUS)-* --out report/$(CORPUS)
	@echo "report: report/$(CORPUS)/table2.md, table3.md and the plots beside them"

# The main job end to end on the built-in demo corpus.
demo: $(STAMP)
	$(MAKE) --no-print-directory superset testsets fixed-snr verify score CORPUS=demo
	@for s in none fixed-snr metricaug; do \
	  $(MAKE) --no-print-directory train CORPUS=demo STRATEGY=$$s EPOCHS=$(DEMO_EPOCHS) TRAIN_ARGS="--val-per-level 50 -q $(TRAIN_ARGS)" || exit $$?; done
	$(MAKE) --no-print-directory report CORPUS=demo
	@echo "demo store: $(OUT)/demo (levels and plots in $(OUT)/demo/levels); runs: $(RUNS)/demo-*; report: report/demo/"

clean-demo:
	rm -rf $(DEMO_DIR) $(OUT)/demo $(RUNS)/demo-* report/demo

bench: $(STAMP)
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/superset.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/trainer_io.py --store $(STORE)
