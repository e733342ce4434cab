# lowbit — every target installs what it needs first (a project virtual environment in .venv).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU build available on these machines before the package's own
# range is resolved; otherwise pip would pull a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test test-all demo bench accuracy lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_CPU)" || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e ".[test]"
	@# Fashion-MNIST from Debian where apt works (root, Debian); otherwise lowbit falls back to digits.
	-@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || echo "note: dataset-fashion-mnist not installed (apt failed); demos fall back to digits"; fi
	touch $(STAMP)

test: install
	$(PY) -m pytest -n 2 -q

test-all: install
	$(PY) -m pytest -n 2 -q -m ""

demo: install
	$(VENV)/bin/lowbit demo

bench: install
	$(VENV)/bin/lowbit bench

accuracy: install
	$(VENV)/bin/lowbit report accuracy

clean:
	rm -rf build
