# Two commands do all set-up on a fresh machine:  `make run`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch by default (the CUDA build is several GB). On a GPU machine use e.g.
#   make run TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
DEMO_DOMAIN ?= ALPS
DEMO_ROOT ?= data/cordex
DEMO_YEARS ?= 3
DEMO_MARKER := $(DEMO_ROOT)/.demo_$(DEMO_DOMAIN)_$(DEMO_YEARS)y.ok
RUN_ROOT ?= runs
# Test worker processes (pytest-xdist); each test runs single-threaded (OMP_NUM_THREADS=1).
TEST_WORKERS ?= 2
# The demo: a small SpaGAN, 3 short epochs on CPU, validated during training on 32 days spread over the
# validation year (training.val_days; the final evaluation scores the whole year; sample maps at the last
# epoch, plot_every_epochs=3), then the interpolation baseline (bilinear: no training) and the evaluation of the GAN
# against it on the same days. Real experiments use config.yml as it is.
DEMO_SET ?= --set data.root=$(DEMO_ROOT) --set data.domain=$(DEMO_DOMAIN) \
	--set 'data.train_years=[1961-1962]' --set 'data.val_years=[1963]' \
	--set model.generator.filters=32 --set 'model.generator.upsample_channels=[32,32,16]' \
	--set 'model.discriminator.hr_channels=[16,32,32,32,16]' --set 'model.discriminator.lr_channels=[32,32]' \
	--set training.epochs=3 --set training.batch_size=8 --set training.max_steps_per_epoch=20 \
	--set training.schedule.warmup_epochs=0 --set training.val_members=3 --set training.val_days=32 \
	--set logging.plot_every_epochs=3 --set run.root=$(RUN_ROOT) --set device=cpu
DEMO_MEMBERS ?= 3

.PHONY: venv data run test lint clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(PY) -m pip install --quiet -e ".[dev,dashboard]"
	touch $@

venv: $(VENV)/.installed

$(DEMO_MARKER): | $(VENV)/.installed
	$(PY) -m ml_benchmark_spategan.synthetic --domain $(DEMO_DOMAIN) --out $(DEMO_ROOT) --years $(DEMO_YEARS) --seed 0
	touch $@

data: $(DEMO_MARKER)

run: $(VENV)/.installed $(DEMO_MARKER)
	@set -euo pipefail; \
	$(PY) training_v2.py --config config.yml $(DEMO_SET) | tee $(VENV)/last_run.log; \
	run_dir=$$(sed -n 's/^run folder: //p' $(VENV)/last_run.log | tail -n 1); \
	$(PY) training_v2.py --config config.yml $(DEMO_SET) --set model.name=bilinear --set run.name=bilinear \
		| tee $(VENV)/last_baseline.log; \
	base_dir=$$(sed -n 's/^run folder: //p' $(VENV)/last_baseline.log | tail -n 1); \
	$(PY) evaluation/evaluate.py "$$run_dir" --split val --members $(DEMO_MEMBERS) --baseline "$$base_dir"; \
	echo; $(PY) -m ml_benchmark_spategan.visualization.run_report "$$run_dir" --split val; \
	echo; echo "note: the demo GAN trains 60 steps on CPU: enough for dry areas and distinct members, not for skill;"; \
	echo "      its scores above are not a result. Skill of every model at equal budget:"; \
	echo "      benchmarks/README.md (bench_skill.py); real experiments use config.yml as it is."

# The dashboard's browser test drives headless Chromium; install Debian's when absent (else it is skipped).
test: $(VENV)/.installed
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing chromium + chromedriver for the dashboard's browser test"; \
	  { apt-get install -y -qq chromium chromium-driver || sudo -n apt-get install -y -qq chromium chromium-driver; } \
	    >/dev/null 2>&1 || echo "could not install chromium (no root?): the browser test will be skipped"; }
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
